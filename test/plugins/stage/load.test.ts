// The load stage says when a large share of the training rows is longer than max_length (they are
// ignored in training, as nanoVLM), with the share and the max_length that keeps them (issue 20,
// item 10) — before training, not as one early warning line among the steps.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { Registry } from '../../../core/registry.ts';
import type { RunContext } from '../../../core/types.ts';
import builtins from '../../../plugins/index.ts';
import loadStage from '../../../plugins/stage/load.ts';
import { useTestBackend } from '../../helpers/backend.ts';
import { TINY_MODEL, writeFolderDataset } from '../../helpers/tiny-run.ts';

const root = mkdtempSync(join(tmpdir(), 'vlm-load-'));
after(() => rmSync(root, { recursive: true, force: true }));
before(async () => {
  await useTestBackend();
  await writeFolderDataset(join(root, 'data'));
  // half the rows have answers far longer than max_length 96 (bytes tokenizer: one token a byte)
  const rows = [0, 1, 2, 3].map((i) => JSON.stringify({ image: `${i}.png`, question: 'Describe it.', answer: i % 2 ? 'x'.repeat(150) : 'red' }));
  writeFileSync(join(root, 'data', 'data.jsonl'), rows.join('\n') + '\n');
});

async function load(train: unknown[]): Promise<{ lines: string[]; ctx: RunContext }> {
  const lines: string[] = [];
  const recipe = { model: TINY_MODEL, data: { train, val: [], eval: [] } };
  const ctx = {
    recipe, recipePath: '', recipeDir: root, runDir: root, backend: tf.getBackend(), registry: new Registry(builtins),
    log: { info: (m: string) => lines.push(m), warn: (m: string) => lines.push(`warning: ${m}`), debug() {} },
    signal: new AbortController().signal, seed: 0, datasets: { train: [], val: [], eval: [] },
    metrics() {}, evalResults: [], artifacts: {}, facts: {}, flags: {},
  } as unknown as RunContext;
  const stage = loadStage.create({}, {} as never);
  await (await stage).run(ctx, () => {});
  ctx.model?.dispose();
  return { lines, ctx };
}

test('half the rows longer than max_length: a warning with the share and the max_length that keeps them', async () => {
  const { lines } = await load([{ use: 'folder', path: 'data' }]);
  const w = lines.filter((l) => l.startsWith('warning:'));
  assert.equal(w.length, 1, lines.join('\n'));
  assert.match(w[0], /data\.train\[0\] \(data\): 2 of the first 4 samples \(50%\) are longer than model\.decoder\.max_length 96 tokens and will be ignored in training; max_length (\d+) would keep them all/);
  const keep = Number(/max_length (\d+) would keep/.exec(w[0])![1]);
  assert.ok(keep > 150 && keep < 200, String(keep));
});

test('short rows: no warning', async () => {
  const { lines } = await load([{ use: 'synthetic-shapes', split: 'train', count: 8, format: 'open', image_size: 32 }]);
  assert.deepEqual(lines.filter((l) => l.startsWith('warning:')), []);
});
