// `vlm bench` and `vlm memory` end to end on the tiny benchmark recipe (few steps: behaviour,
// not speed): the JSON keys scripts rely on, the table header, the memory sweep with its PNG,
// and the clean stop at the first out-of-memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { useTestBackend } from '../../helpers/backend.ts';
import { REPO_ROOT } from '../../helpers/shared.ts';
import { cli } from '../../../core/cli.ts';
import builtins from '../../../plugins/index.ts';

const TINY = join(REPO_ROOT, 'recipes', 'bench', 'tiny.yaml');

function capture() {
  let text = '';
  return { stream: { write: (s: string) => ((text += s), true) }, text: () => text };
}

test('vlm bench --json writes the documented keys and prints a table with backend and threads', async (t) => {
  const backend = await useTestBackend();
  const dir = mkdtempSync(join(tmpdir(), 'vlm-bench-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = capture();
  const err = capture();
  const json = join(dir, 'b.json');
  const code = await cli(['bench', TINY, '--steps', '2', '--warmup', '1', '--gen-tokens', '3', '--backend', backend, '--json', json], {
    builtins,
    stdout: out.stream,
    stderr: err.stream,
  });
  assert.equal(code, 0, err.text());
  const r = JSON.parse(readFileSync(json, 'utf8'));
  assert.equal(r.backend, backend);
  assert.equal(r.threads, 1);
  for (const k of ['median', 'min', 'max']) assert.ok(r.train_step_ms[k] > 0, `train_step_ms.${k}`);
  assert.ok(r.train_step_ms.min <= r.train_step_ms.median && r.train_step_ms.median <= r.train_step_ms.max);
  assert.ok(r.tokens_per_s > 0);
  assert.equal(r.tokens_per_step, 3 * 12 - 3 + 3 * 4); // 3 rows x 12 text positions, row 0 has 3 padded, + 4 image tokens per row
  assert.ok(r.generate.kv_cache.tokens_per_s > 0 && r.generate.no_cache.tokens_per_s > 0);
  assert.equal(r.generate.new_tokens, 3);
  assert.ok(r.peak_rss_bytes > 0 && r.peak_tfjs_bytes > 0);
  assert.equal(r.live_tensors.before, r.live_tensors.after, 'no tensor leaked by the timed steps');
  assert.match(out.text(), new RegExp(`backend ${backend}, 1 thread`));
  assert.match(out.text(), /train step ms, median \(min-max\)/);
});

test('vlm bench --kv-only times generation with the KV cache only (no full-recompute runs)', async (t) => {
  const backend = await useTestBackend();
  const dir = mkdtempSync(join(tmpdir(), 'vlm-bench-kv-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = capture();
  const err = capture();
  const json = join(dir, 'b.json');
  const code = await cli(['bench', TINY, '--steps', '1', '--warmup', '0', '--gen-tokens', '3', '--gen-runs', '1', '--kv-only', '--backend', backend, '--json', json], { builtins, stdout: out.stream, stderr: err.stream });
  assert.equal(code, 0, err.text());
  const r = JSON.parse(readFileSync(json, 'utf8'));
  assert.ok(r.generate.kv_cache.tokens_per_s > 0);
  assert.equal(r.generate.no_cache, null);
  assert.match(out.text(), /generate tok\/s, no cache +-\n/);
});

test('vlm bench rejects a bad --steps with a user error', async () => {
  const err = capture();
  const code = await cli(['bench', TINY, '--steps', '0'], { builtins, stdout: capture().stream, stderr: err.stream });
  assert.equal(code, 1);
  assert.match(err.text(), /--steps must be an integer >= 1/);
});

test('vlm memory: a row per batch size, a PNG plot, and a clean stop at the first OOM', async (t) => {
  const backend = await useTestBackend();
  const dir = mkdtempSync(join(tmpdir(), 'vlm-memory-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const png = join(dir, 'm.png');
  const json = join(dir, 'm.json');
  const out = capture();
  const err = capture();
  let code = await cli(['memory', TINY, '--batch-sizes', '1,2', '--backend', backend, '--png', png, '--json', json], { builtins, stdout: out.stream, stderr: err.stream });
  assert.equal(code, 0, err.text());
  const { rows } = JSON.parse(readFileSync(json, 'utf8'));
  assert.deepEqual(rows.map((r: { batch_size: number }) => r.batch_size), [1, 2]);
  for (const r of rows) {
    assert.equal(r.status, 'ok');
    assert.ok(r.peak_rss_bytes > r.peak_tfjs_bytes && r.peak_tfjs_bytes > 0);
  }
  assert.ok(rows[1].peak_tfjs_bytes > rows[0].peak_tfjs_bytes, 'batch 2 needs more tensor memory than batch 1');
  const meta = await sharp(png).metadata();
  assert.equal(meta.format, 'png');
  assert.match(out.text(), /batch\s+peak RSS\s+peak tfjs/);

  // a 1 MiB budget: the first size is already out of memory; the sweep stops there, exit 0
  const out2 = capture();
  code = await cli(['memory', TINY, '--batch-sizes', '1,2,4', '--backend', backend, '--limit-mib', '1', '--png', png, '--json', json], { builtins, stdout: out2.stream, stderr: capture().stream });
  assert.equal(code, 0);
  const again = JSON.parse(readFileSync(json, 'utf8')).rows;
  assert.equal(again.length, 1);
  assert.equal(again[0].status, 'oom');
  assert.match(out2.text(), /oom: peak RSS/);
  assert.ok(existsSync(png));
});
