// The train stage on the webgpu backend (core/webgpu.ts; lavapipe in CI), end to end in-process:
// gradient accumulation and clipping, validation loss, checkpoints and an exact resume. The same
// recipe first trains on wasm: every step's loss and gradient norm on webgpu agree with wasm's
// (float32 kernels in another order), the live tensor count stays flat, and an interrupted webgpu
// run resumed from its checkpoint continues step for step as the uninterrupted one.
// Skips without a WebGPU adapter (test/helpers/webgpu.ts), except in CI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initRuntime } from '../../../core/runtime.ts';
import { UserError } from '../../../core/errors.ts';
import { needsWebGpu } from '../../helpers/webgpu.ts';
import { runTrain, smallRecipe, tmpOut, writeRecipe } from '../../helpers/run.ts';

const gpu = await needsWebGpu();
const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

test('webgpu: training (accumulation, clipping, val loss) follows wasm step for step; checkpoints resume exactly', gpu, async () => {
  const recipe = writeRecipe(smallRecipe(tmpOut(), { max_steps: 6, checkpoint_every: 3, eval_every: 3, grad_accum: 2, batch_size: 2, max_grad_norm: 0.5 }));
  const evals = (r: Awaited<ReturnType<typeof runTrain>>) =>
    readFileSync(join(r.ctx.runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.type === 'eval');

  await initRuntime('wasm');
  const wasm = await runTrain(recipe);
  assert.equal(wasm.error, undefined, String(wasm.error));
  wasm.ctx.model!.dispose();

  await initRuntime('webgpu');
  assert.equal(tf.getBackend(), 'webgpu');
  const counts: number[] = [];
  const full = await runTrain(recipe, { onStep: () => counts.push(tf.memory().numTensors) });
  assert.equal(full.error, undefined, String((full.error as Error)?.stack));
  assert.equal(full.steps.length, 6);
  assert.ok(wasm.steps.some((s) => s.grad_norm > 0.5), 'clipping is active in this run (a gradient norm above max_grad_norm)');
  full.steps.forEach((s, i) => {
    assert.ok(rel(s.loss, wasm.steps[i].loss) < 1e-4, `step ${i + 1} loss: webgpu ${s.loss} vs wasm ${wasm.steps[i].loss}`);
    assert.ok(rel(s.grad_norm, wasm.steps[i].grad_norm) < 1e-3, `step ${i + 1} grad norm: webgpu ${s.grad_norm} vs wasm ${wasm.steps[i].grad_norm}`);
  });
  const [ev, ew] = [evals(full), evals(wasm)];
  assert.deepEqual(ev.map((e) => e.step), [3, 6]);
  assert.deepEqual(ev.map((e) => e.step), ew.map((e) => e.step));
  ev.forEach((e, i) => assert.ok(rel(e.val_loss, ew[i].val_loss) < 1e-4, `val loss at step ${e.step}: webgpu ${e.val_loss} vs wasm ${ew[i].val_loss}`));
  assert.deepEqual(new Set(counts.slice(1)), new Set([counts[1]]), `live tensors per step: ${counts.join(',')}`);
  full.ctx.model!.dispose();

  const first = await runTrain(recipe, { onStep: (rec, _ctx, abort) => rec.step === 4 && abort() });
  assert.ok(first.error instanceof UserError, String(first.error));
  first.ctx.model!.dispose();
  const second = await runTrain(recipe, { resume: first.ctx.runDir });
  assert.equal(second.error, undefined, String(second.error));
  const resumed = [...first.steps, ...second.steps];
  assert.deepEqual(resumed.map((r) => r.step), [1, 2, 3, 4, 5, 6]);
  resumed.forEach((s, i) => assert.ok(rel(s.loss, full.steps[i].loss) < 1e-6, `resumed step ${i + 1}: ${s.loss} vs ${full.steps[i].loss}`));
  second.ctx.model!.dispose();
});
