// Parity with nanoVLM v0.1 (PyTorch) on ../shared/fixtures/nanovlm/<case>: every tensor of the case's
// expected.safetensors (vision_out, mp_out, decoder_hidden and logits at valid positions, loss, every
// grad.* and grad_norm, cos/sin, greedy tokens with and without the KV cache, after_adamw.*) and the
// Hub-backbone outputs (vit_out, lm_hidden, lm_logits_orig_vocab), through the same code as `vlm compare`.
// Tolerances are the fixture README's (see core/commands/compare.ts). Runs every case folder present.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FIXTURES, needsShared } from '../../helpers/shared.ts';
import { compareFixture, formatTable, main } from '../../../core/commands/compare.ts';
import { readSafetensorsHeader } from '../../../core/weights/safetensors.ts';
import { fixtureCases, setup } from '../../helpers/model.ts';

const cases = fixtureCases();

test('fixture cases are present', needsShared('fixtures', 'nanovlm', 'tiny'), () => {
  assert.ok(cases.includes('tiny'), `cases found: ${cases.join(', ')}`);
});

for (const name of cases) {
  const dir = join(FIXTURES, name);
  test(`nanoVLM parity, case ${name}: every expected tensor within the README tolerances`, needsShared('fixtures', 'nanovlm', name), async () => {
    const registry = await setup();
    const before = tf.memory().numTensors;
    const backbones = join(dir, 'hf-backbones');
    const rows = await compareFixture({
      model: dir,
      inputs: join(dir, 'inputs.safetensors'),
      expected: join(dir, 'expected.safetensors'),
      backbones: existsSync(join(backbones, 'expected.safetensors')) ? backbones : undefined,
      registry,
    });
    const table = formatTable(rows);
    const failed = rows.filter((r) => !r.pass);
    assert.equal(failed.length, 0, `failures:\n${table}`);

    // every tensor the expected files name was compared (nothing silently skipped)
    const names = new Set(rows.map((r) => r.name));
    const expected = [...readSafetensorsHeader(join(dir, 'expected.safetensors')).entries.keys()];
    for (const n of expected) assert.ok(names.has(n), `${n} was not compared`);
    for (const n of ['vision_out', 'mp_out', 'decoder_hidden', 'logits', 'loss', 'grad_norm', 'greedy_tokens', 'cos', 'sin']) {
      if (expected.includes(n)) assert.ok(names.has(n));
    }
    if (expected.includes('greedy_tokens')) {
      const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      const nImage = (cfg.vit_img_size / cfg.vit_patch_size) ** 2 / cfg.mp_pixel_shuffle_factor ** 2;
      const header = readSafetensorsHeader(join(dir, 'expected.safetensors')).entries;
      const total = nImage + header.get('logits')!.shape[1] + header.get('greedy_tokens')!.shape[1] - 1;
      if (total <= cfg.lm_max_position_embeddings) assert.ok(names.has('greedy_tokens (kv cache)'), 'greedy tokens with the KV cache were compared');
    }
    const grads = expected.filter((n) => n.startsWith('grad.'));
    assert.ok(grads.length > 0, 'the expected file has gradients');
    if (existsSync(join(backbones, 'expected.safetensors'))) {
      for (const n of readSafetensorsHeader(join(backbones, 'expected.safetensors')).entries.keys()) {
        if (n !== 'hf_input_ids') assert.ok(names.has(n), `backbone tensor ${n} was not compared`);
      }
    }
    // compare leaves no tensors behind except the optimizer's moment variables (disposed by it)
    assert.ok(tf.memory().numTensors - before <= 2 * grads.length, `leaked ${tf.memory().numTensors - before} tensors`);
  });
}

test('vlm compare CLI prints the table and exits 0 / 1', needsShared('fixtures', 'nanovlm', 'tiny'), async () => {
  const registry = await setup();
  const dir = join(FIXTURES, 'tiny');
  let out = '';
  const stdout = { write: (s: string) => (out += s) };
  const code = await main(['--model', dir, '--inputs', join(dir, 'inputs.safetensors'), '--expected', join(dir, 'expected.safetensors')], { registry, stdout });
  assert.equal(code, 0, out);
  assert.match(out, /^name\s+shape\s+relL2\s+maxAbs\s+result/m);
  const logitsShape = readSafetensorsHeader(join(dir, 'expected.safetensors')).entries.get('logits')!.shape;
  assert.match(out, new RegExp(`^logits\\s+\\[${logitsShape.join(', ')}\\]\\s+\\S+\\s+\\S+\\s+pass`, 'm'));
  assert.match(out, /all \d+ comparisons pass/);

  // an impossible tolerance makes rows fail, named in the summary and exit code 1
  out = '';
  const bad = await main(['--model', dir, '--inputs', join(dir, 'inputs.safetensors'), '--expected', join(dir, 'expected.safetensors'), '--rtol', '1e-12'], { registry, stdout });
  assert.equal(bad, 1);
  assert.match(out, /comparisons FAILED: .*vision_out/);
});

test('vlm compare --backbones: each Hub-backbone tensor is compared once (no "unknown tensor" row), exit 0', needsShared('fixtures', 'nanovlm', 'tiny', 'hf-backbones'), async () => {
  const registry = await setup();
  const dir = join(FIXTURES, 'tiny');
  const hf = join(dir, 'hf-backbones');
  let out = '';
  const stdout = { write: (s: string) => (out += s) };
  // the expected file of the backbone comparison given as --expected too (the command)
  const code = await main(['--model', dir, '--inputs', join(dir, 'inputs.safetensors'), '--expected', join(hf, 'expected.safetensors'), '--backbones', hf], { registry, stdout });
  assert.equal(code, 0, out);
  assert.doesNotMatch(out, /unknown tensor name/);
  for (const name of ['vit_out', 'lm_hidden', 'lm_logits_orig_vocab']) assert.equal(out.match(new RegExp(`^${name}\\s`, 'gm'))?.length, 1, `${name} once:\n${out}`);
  assert.match(out, /all 3 comparisons pass/);
});

// Cases generated by an independent numpy float64 transcription of nanoVLM v0.1's forward pass
// (test/core/model/fixtures/make_variants.py): untied head, n_kv_heads = n_heads and = 1, dynamic RoPE
// scaling, attn_scaling != 1, pixel-shuffle factor 4, batch 1. Same comparison, same tolerances.
const VARIANTS = join(import.meta.dirname, 'fixtures', 'variants');
for (const v of ['v1', 'v2']) {
  test(`numpy-reference variant ${v}: forward tensors, loss, cos/sin, greedy tokens`, async () => {
    const registry = await setup();
    const dir = join(VARIANTS, v);
    const rows = await compareFixture({ model: dir, inputs: join(dir, 'inputs.safetensors'), expected: join(dir, 'expected.safetensors'), registry });
    assert.equal(rows.filter((r) => !r.pass).length, 0, formatTable(rows));
    const names = rows.map((r) => r.name);
    for (const n of ['vision_out', 'mp_out', 'decoder_hidden', 'logits', 'loss', 'cos', 'sin', 'greedy_tokens']) assert.ok(names.includes(n), n);
  });
}

// A fresh process, as a user types it: no --backend, so nothing else has started a tfjs backend
// first (the in-process tests above run after setup() did). It once failed with "backend 'wasm' has
// not yet been initialized" before the first tensor.
test('vlm compare in a fresh process without --backend starts the wasm backend itself', needsShared('fixtures', 'nanovlm', 'tiny'), async () => {
  const { spawnSync } = await import('node:child_process');
  const dir = join(FIXTURES, 'tiny');
  const r = spawnSync(process.execPath, ['bin/vlm.js', 'compare', '--model', dir, '--inputs', join(dir, 'inputs.safetensors'), '--expected', join(dir, 'expected.safetensors')], { encoding: 'utf8', timeout: 240_000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /all \d+ comparisons pass/);
});
