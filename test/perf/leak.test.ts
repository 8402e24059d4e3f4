// Nothing leaks (issue 7): the live tensor count, and the wasm backend's buffer count, are flat
// across 1000 training steps of the `tiny` benchmark model (recipes/bench/tiny.yaml: the fixture
// tiny config, batch 3, length 12, random weights) with the train stage's step: forward, loss,
// backward, gradient clipping, AdamW. The long run (10,000 steps + RSS) is bench/soak.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../helpers/backend.ts';
import { REPO_ROOT } from '../helpers/shared.ts';
import { installFastKernels } from '../../core/kernels.ts';
import { createRegistry } from '../../core/registry.ts';
import { resolveRecipe } from '../../core/recipe/index.ts';
import { buildComponents } from '../../core/build.ts';
import { benchBatch, createOptimizer, trainStep } from '../../core/commands/bench.ts';
import builtins from '../../plugins/index.ts';

const STEPS = Number(process.env.VLM_LEAK_STEPS ?? 1000);
const quiet = { info() {}, warn() {}, debug() {} };

test(`live tensors are flat across ${STEPS} training steps of tiny`, async () => {
  installFastKernels(await useTestBackend());
  const registry = createRegistry(builtins);
  const r = await resolveRecipe(join(REPO_ROOT, 'recipes', 'bench', 'tiny.yaml'), { registry });
  const start = tf.memory();
  const { model } = await buildComponents(r.data, registry, { recipe: r.data, recipeDir: r.dir, seed: 0, log: quiet });
  const optimizer = await createOptimizer(r.data, r.dir, model, registry, quiet);
  const host = benchBatch(model, 3, 0);
  const step = () => trainStep(model, optimizer, host, { maxGradNorm: 1.0, timeForward: false });
  step(); // the optimizer creates its moment tensors on the first step
  const first = tf.memory();
  const samples: number[] = [];
  for (let i = 1; i < STEPS; i++) {
    step();
    if (i % 100 === 0) samples.push(tf.memory().numTensors);
  }
  const last = tf.memory();
  assert.equal(last.numTensors, first.numTensors, `live tensors after step 1: ${first.numTensors}, after step ${STEPS}: ${last.numTensors} (every 100: ${samples.join(', ')})`);
  assert.ok(samples.every((n) => n === first.numTensors), `live tensors sampled every 100 steps: ${samples.join(', ')}`);
  assert.equal(last.numDataBuffers, first.numDataBuffers, 'backend buffers');
  assert.equal(last.numBytes, first.numBytes, 'tensor bytes');
  // and it trains: the loss went down on the repeated batch
  const loss = () => tf.tidy(() => {
    const t = { images: tf.tensor4d(host.images, [3, 3, 32, 32]), inputIds: tf.tensor2d(host.inputIds, [3, 12], 'int32'), attentionMask: tf.tensor2d(host.attentionMask, [3, 12], 'int32'), targets: tf.tensor2d(host.targets, [3, 12], 'int32') };
    return model.loss(model.forward(t.inputIds, t.images, t.attentionMask), t.targets).dataSync()[0];
  });
  assert.ok(Number.isFinite(loss()));
  optimizer.dispose();
  model.dispose();
  assert.equal(tf.memory().numTensors, start.numTensors, 'everything disposed at the end');
});
