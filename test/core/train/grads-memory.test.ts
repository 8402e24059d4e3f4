// The memory work of issue 7: variableGradsLean (core/train/grads.ts) gives exactly tf.variableGrads'
// values while freeing the tape as it goes, and the wasm Identity / same-dtype Cast kernels
// (core/kernels/) share the input buffer instead of copying it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../../helpers/backend.ts';
import { REPO_ROOT } from '../../helpers/shared.ts';
import { installFastKernels } from '../../../core/kernels/index.ts';
import { variableGradsLean } from '../../../core/train/grads.ts';
import { createRegistry } from '../../../core/registry.ts';
import { resolveRecipe } from '../../../core/recipe/index.ts';
import { buildComponents } from '../../../core/build.ts';
import { benchBatch } from '../../../core/benchmark.ts';
import builtins from '../../../plugins/index.ts';

const backend = await useTestBackend();
installFastKernels(backend);
const wasmOnly = backend === 'wasm' ? {} : { skip: `wasm kernels (test backend is ${backend})` };
const quiet = { info() {}, warn() {}, debug() {} };

function sameArrays(a: tf.Tensor, b: tf.Tensor, what: string): void {
  assert.deepEqual(a.shape, b.shape, `${what}: shape`);
  const x = a.dataSync();
  const y = b.dataSync();
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) assert.fail(`${what}[${i}]: ${x[i]} vs ${y[i]}`);
}

test('variableGradsLean: a graph with reuse, broadcasting, a custom gradient returning dy itself, and a variable off the path', () => {
  const a = tf.variable(tf.tensor2d([[0.5, -1, 2], [1.5, 0.25, -0.75]]), true, 'lean_a');
  const b = tf.variable(tf.tensor1d([0.1, -0.2, 0.3]), true, 'lean_b');
  const unused = tf.variable(tf.scalar(3), true, 'lean_unused');
  const passThrough = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
    save([x]);
    return { value: tf.mul(x, 1), gradFunc: (dy: tf.Tensor) => dy }; // dy itself (straight-through)
  }) as never) as (x: tf.Tensor) => tf.Tensor;
  const f = () =>
    tf.tidy(() => {
      const h = tf.add(a, b); // broadcast b
      const g = passThrough(tf.mul(h, h)); // h used twice
      return tf.sum(tf.mul(tf.sigmoid(g), tf.add(h, a))) as tf.Scalar; // a used twice
    });
  const before = tf.memory().numTensors;
  const ref = tf.variableGrads(f, [a, b, unused]);
  const lean = variableGradsLean(f, [a, b, unused]);
  assert.deepEqual(Object.keys(lean.grads).sort(), Object.keys(ref.grads).sort());
  sameArrays(lean.value, ref.value, 'value');
  for (const k of Object.keys(ref.grads)) sameArrays(lean.grads[k], ref.grads[k], `grad ${k}`);
  tf.dispose([ref.value, lean.value, ...Object.values(ref.grads), ...Object.values(lean.grads)]);
  assert.equal(tf.memory().numTensors, before, 'nothing left behind');
  tf.dispose([a, b, unused]);
});

test('variableGradsLean on the tiny VLM: the same loss and gradients as tf.variableGrads, no tensor left', async () => {
  const registry = createRegistry(builtins);
  const r = await resolveRecipe(join(REPO_ROOT, 'recipes', 'bench', 'tiny.yaml'), { registry });
  const { model } = await buildComponents(r.data, registry, { recipe: r.data, recipeDir: r.dir, seed: 0, log: quiet });
  const h = benchBatch(model, 3, 0);
  const batch = {
    images: tf.tensor4d(h.images, [h.batchSize, 3, h.imageSize, h.imageSize]),
    inputIds: tf.tensor2d(h.inputIds, [h.batchSize, h.seqLen], 'int32'),
    attentionMask: tf.tensor2d(h.attentionMask, [h.batchSize, h.seqLen], 'int32'),
    targets: tf.tensor2d(h.targets, [h.batchSize, h.seqLen], 'int32'),
  };
  const vars = [...model.params.values()];
  const f = () => model.loss(model.forward(batch.inputIds, batch.images, batch.attentionMask, { training: true }), batch.targets);
  const before = tf.memory().numTensors;
  const ref = tf.variableGrads(f, vars);
  const lean = variableGradsLean(f, vars);
  sameArrays(lean.value, ref.value, 'loss');
  assert.equal(Object.keys(lean.grads).length, vars.length);
  for (const v of vars) sameArrays(lean.grads[v.name], ref.grads[v.name], `grad ${v.name}`);
  tf.dispose([ref.value, lean.value, ...Object.values(ref.grads), ...Object.values(lean.grads)]);
  assert.equal(tf.memory().numTensors, before, 'live tensors');
  tf.dispose(Object.values(batch));
  model.dispose();
});

test('wasm Identity and same-dtype Cast share the buffer (reference-counted), other casts convert', wasmOnly, () => {
  const b = tf.backend() as unknown as { dataIdMap: { get(d: object): { memoryOffset: number; refCount: number } } };
  const x = tf.tensor1d([1.5, -2.25, 3]);
  const c = x.clone();
  const f = tf.cast(x, 'float32');
  assert.equal(b.dataIdMap.get(c.dataId).memoryOffset, b.dataIdMap.get(x.dataId).memoryOffset, 'clone shares the buffer');
  assert.equal(f.dataId, x.dataId, 'same-dtype cast shares the buffer');
  x.dispose();
  assert.deepEqual([...c.dataSync()], [1.5, -2.25, 3], 'the clone outlives the original');
  const i = tf.cast(c, 'int32');
  assert.notEqual(i.dataId, c.dataId);
  assert.deepEqual([...i.dataSync()], [1, -2, 3]);
  tf.dispose([c, f, i]);
  const v = tf.variable(tf.tensor1d([1, 2]));
  const saved = v.clone();
  v.assign(tf.tensor1d([7, 8]));
  assert.deepEqual([...saved.dataSync()], [1, 2], 'a clone of a variable keeps the value it had (assign swaps buffers)');
  tf.dispose([v, saved]);
});
