// Parity with nanoVLM v0.1 (PyTorch) on the webgpu backend (core/webgpu.ts; lavapipe in CI), at the
// same tolerances as wasm (the fixture README's, core/commands/compare.ts): activations, logits,
// loss, every gradient and the gradient norm, one AdamW step, greedy tokens with and without the
// KV cache (`vlm compare --backend webgpu`), and core/generate.ts's generation (the tensor path
// with the KV cache, as `vlm generate` runs it on a GPU) giving nanoVLM's greedy tokens.
// Skips without a WebGPU adapter (test/helpers/webgpu.ts), except in CI.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FIXTURES, needsShared } from '../../helpers/shared.ts';
import { needsWebGpu } from '../../helpers/webgpu.ts';
import { compareFixture, formatTable } from '../../../core/commands/compare.ts';
import { generate } from '../../../core/generate.ts';
import { initRuntime } from '../../../core/runtime.ts';
import { Registry } from '../../../core/registry.ts';
import { loadCheckpoint } from '../../../core/weights/model-folder.ts';
import { readSafetensors, readSafetensorsHeader } from '../../../core/weights/safetensors.ts';
import vision from '../../../plugins/vision/index.ts';
import projector from '../../../plugins/projector/index.ts';
import decoder from '../../../plugins/decoder/index.ts';
import optimizer from '../../../plugins/optimizer/index.ts';
import { fixtureCases } from '../../helpers/model.ts';

const gpu = await needsWebGpu();
const registry = new Registry([...vision, ...projector, ...decoder, ...optimizer]);
const skipFor = (name: string) => (gpu.skip ? gpu : needsShared('fixtures', 'nanovlm', name));

before(async () => {
  if (!gpu.skip) await initRuntime('webgpu');
});

for (const name of fixtureCases()) {
  const dir = join(FIXTURES, name);
  test(`webgpu: nanoVLM parity, case ${name}: every expected tensor within the README tolerances`, skipFor(name), async () => {
    assert.equal(tf.getBackend(), 'webgpu');
    const before = tf.memory().numTensors;
    const rows = await compareFixture({ model: dir, inputs: join(dir, 'inputs.safetensors'), expected: join(dir, 'expected.safetensors'), registry });
    const failed = rows.filter((r) => !r.pass);
    assert.equal(failed.length, 0, `failures on webgpu:\n${formatTable(rows)}`);
    const names = new Set(rows.map((r) => r.name));
    const expected = [...readSafetensorsHeader(join(dir, 'expected.safetensors')).entries.keys()];
    for (const n of expected) assert.ok(names.has(n), `${n} was not compared`);
    assert.ok(expected.some((n) => n.startsWith('grad.')) && expected.some((n) => n.startsWith('after_adamw.')), 'gradients and the AdamW step are in the case');
    const grads = expected.filter((n) => n.startsWith('grad.')).length;
    assert.ok(tf.memory().numTensors - before <= 2 * grads, `leaked ${tf.memory().numTensors - before} tensors`);
  });
}

test('webgpu: generate() (KV cache and full recompute) gives nanoVLM greedy_tokens', skipFor('tiny'), async () => {
  const dir = join(FIXTURES, 'tiny');
  const model = await loadCheckpoint(dir, registry);
  const inputs = readSafetensors(join(dir, 'inputs.safetensors')).tensors;
  const want = readSafetensors(join(dir, 'expected.safetensors')).tensors.get('greedy_tokens')!;
  const int = (n: string) => Int32Array.from(inputs.get(n)!.data as BigInt64Array, Number);
  const [B, T] = inputs.get('input_ids')!.shape;
  const ids = tf.tensor2d(int('input_ids'), [B, T], 'int32');
  const mask = tf.tensor2d(int('attention_mask'), [B, T], 'int32');
  const images = tf.tensor(inputs.get('images')!.data as Float32Array, inputs.get('images')!.shape, 'float32') as unknown as tf.Tensor4D;
  const N = want.shape[1];
  const expected = Array.from({ length: B }, (_, b) => Array.from((want.data as BigInt64Array).subarray(b * N, (b + 1) * N), Number));
  try {
    const run = (useCache: boolean) => generate(model, { inputIds: ids, attentionMask: mask, images }, { greedy: true, maxNewTokens: N, stopAtEos: false, useCache });
    for (const useCache of [true, false]) assert.deepEqual(await run(useCache), expected, `useCache ${useCache}`);
    // the decoder keeps its generation weights after the first call; nothing else stays
    const before = tf.memory().numTensors;
    for (const useCache of [true, false]) await run(useCache);
    assert.equal(tf.memory().numTensors, before, 'generation leaves no tensor behind');
  } finally {
    tf.dispose([ids, mask, images]);
    model.dispose();
  }
});
