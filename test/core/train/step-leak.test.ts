// Nothing leaks (issue 7): the live tensor count, and the wasm backend's buffer count, are flat
// across 1000 training steps of the `tiny` benchmark model (recipes/bench/tiny.yaml: the fixture
// tiny config, batch 3, length 12, random weights) with the train stage's own step
// (core/train/step.ts trainStep: forward, loss, backward, gradient clipping, AdamW, schedule);
// and those steps train: the loss on the repeated batch goes down. The long run (10,000 steps +
// RSS) is bench/soak.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../../helpers/backend.ts';
import { REPO_ROOT } from '../../helpers/shared.ts';
import { installFastKernels } from '../../../core/kernels/index.ts';
import { createRegistry } from '../../../core/registry.ts';
import { resolveRecipe } from '../../../core/recipe/index.ts';
import { buildComponents, buildOptimizer } from '../../../core/build.ts';
import { benchBatch } from '../../../core/benchmark.ts';
import { trainStep } from '../../../core/train/step.ts';
import builtins from '../../../plugins/index.ts';

const STEPS = Number(process.env.VLM_LEAK_STEPS ?? 1000);
const quiet = { info() {}, warn() {}, debug() {} };

test(`live tensors are flat across ${STEPS} training steps of tiny, and the loss goes down`, async () => {
  installFastKernels(await useTestBackend());
  const registry = createRegistry(builtins);
  const r = await resolveRecipe(join(REPO_ROOT, 'recipes', 'bench', 'tiny.yaml'), { registry });
  const start = tf.memory();
  const { model } = await buildComponents(r.data, registry, { recipe: r.data, recipeDir: r.dir, seed: 0, log: quiet });
  const { optimizer } = await buildOptimizer(r.data, registry, { recipe: r.data, recipeDir: r.dir, seed: 0, log: quiet }, model);
  const schedule = await registry.create('schedule', { use: 'cosine-warmup' }, { recipe: r.data, recipeDir: r.dir, seed: 0, log: quiet, yamlPath: 'schedule' });
  const host = benchBatch(model, 3, 0);
  const losses: number[] = [];
  const step = async (i: number) => losses.push((await trainStep(model, optimizer, [host], { maxGradNorm: 1.0, schedule, step: i, totalSteps: STEPS }))!.loss);
  await step(0); // the optimizer creates its moment tensors on the first step
  const first = tf.memory();
  const samples: number[] = [];
  for (let i = 1; i < STEPS; i++) {
    await step(i);
    if (i % 100 === 0) samples.push(tf.memory().numTensors);
  }
  const last = tf.memory();
  assert.equal(last.numTensors, first.numTensors, `live tensors after step 1: ${first.numTensors}, after step ${STEPS}: ${last.numTensors} (every 100: ${samples.join(', ')})`);
  assert.ok(samples.every((n) => n === first.numTensors), `live tensors sampled every 100 steps: ${samples.join(', ')}`);
  assert.equal(last.numDataBuffers, first.numDataBuffers, 'backend buffers');
  assert.equal(last.numBytes, first.numBytes, 'tensor bytes');
  // and it trains: the step's loss on the repeated batch went down (the last ten against the first)
  assert.equal(losses.length, STEPS);
  assert.ok(losses.every(Number.isFinite), 'every loss finite');
  const tail = losses.slice(-Math.min(10, STEPS)).reduce((a, b) => a + b, 0) / Math.min(10, STEPS);
  assert.ok(tail < 0.5 * losses[0], `loss at step 1: ${losses[0]}, mean of the last ten: ${tail} (expected less than half)`);
  optimizer.dispose();
  model.dispose();
  assert.equal(tf.memory().numTensors, start.numTensors, 'everything disposed at the end');
});
