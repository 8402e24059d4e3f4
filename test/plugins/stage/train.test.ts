// The train stage end to end on a tiny recipe (in-process): exact resume, refusal of a changed
// recipe, NaN stop with diagnostics and the last good checkpoint kept, flat live tensor count,
// run outputs (metrics.jsonl, loss.png, loadable checkpoints, best).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../../../core/errors.ts';
import { findLatestCheckpoint } from '../../../core/train/trainer-checkpoints.ts';
import { readSafetensors } from '../../../core/weights/safetensors.ts';
import { runTrain, smallRecipe, tmpOut, writeRecipe } from '../../helpers/run.ts';

test('an interrupted-and-resumed run has the same loss curve step for step as the uninterrupted one', async () => {
  const out = tmpOut();
  const recipe = writeRecipe(smallRecipe(out, { max_steps: 10, checkpoint_every: 3, grad_accum: 2, batch_size: 2 }));
  const full = await runTrain(recipe);
  assert.equal(full.error, undefined, String(full.error));
  assert.equal(full.steps.length, 10);
  full.ctx.model!.dispose();

  const first = await runTrain(recipe, { onStep: (rec, _ctx, abort) => rec.step === 5 && abort() });
  assert.ok(first.error instanceof UserError, String(first.error));
  assert.match((first.error as UserError).message, /interrupted .* at step 5\/10/);
  assert.match((first.error as UserError).hint ?? '', /--resume/);
  assert.equal(findLatestCheckpoint(first.ctx.runDir)!.trainer.step, 5);
  first.ctx.model!.dispose();

  const second = await runTrain(recipe, { resume: first.ctx.runDir });
  assert.equal(second.error, undefined, String(second.error));
  const resumed = [...first.steps, ...second.steps];
  assert.deepEqual(resumed.map((r) => r.step), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.deepEqual(resumed.map((r) => r.loss), full.steps.map((r) => r.loss), 'losses equal step for step');
  assert.deepEqual(resumed.map((r) => r.lr), full.steps.map((r) => r.lr));
  // the final weights are identical too
  const a = readSafetensors(join(findLatestCheckpoint(full.ctx.runDir)!.folder, 'model.safetensors')).tensors;
  const b = readSafetensors(join(findLatestCheckpoint(second.ctx.runDir)!.folder, 'model.safetensors')).tensors;
  for (const [k, t] of a) assert.deepEqual(b.get(k)!.data, t.data, k);
  second.ctx.model!.dispose();
});

test('resume skips a damaged newest checkpoint (named in a warning) and continues exactly from the one before', async () => {
  const out = tmpOut();
  const recipe = writeRecipe(smallRecipe(out, { max_steps: 8, checkpoint_every: 2 }));
  const full = await runTrain(recipe);
  assert.equal(full.error, undefined, String(full.error));
  full.ctx.model!.dispose();
  const first = await runTrain(recipe, { onStep: (rec, _ctx, abort) => rec.step === 6 && abort() });
  first.ctx.model!.dispose();
  const latest = findLatestCheckpoint(first.ctx.runDir)!;
  assert.equal(latest.trainer.step, 6);
  // damage step-6's weights after the fact (a disk error; saves themselves are atomic)
  const file = join(latest.folder, 'model.safetensors');
  const bytes = readFileSync(file);
  writeFileSync(file, bytes.subarray(0, bytes.length - 100));
  const second = await runTrain(recipe, { resume: first.ctx.runDir });
  assert.equal(second.error, undefined, String(second.error));
  assert.ok(second.lines.some((l) => /cannot resume from \S*step-6 \(.*model\.safetensors.*\); trying the checkpoint before it/.test(l)), second.lines.join(''));
  assert.deepEqual(second.steps.map((r) => r.step), [5, 6, 7, 8]); // from step-4
  assert.deepEqual(second.steps.map((r) => r.loss), full.steps.slice(4).map((r) => r.loss), 'losses equal the uninterrupted run');
  const a = readSafetensors(join(findLatestCheckpoint(full.ctx.runDir)!.folder, 'model.safetensors')).tensors;
  const b = readSafetensors(join(findLatestCheckpoint(second.ctx.runDir)!.folder, 'model.safetensors')).tensors; // step-6 rewritten on the way
  for (const [k, t] of a) assert.deepEqual(b.get(k)!.data, t.data, k);
  second.ctx.model!.dispose();
});

test('resume refuses a changed recipe naming every differing key; --force continues', async () => {
  const out = tmpOut();
  const base = smallRecipe(out, { max_steps: 4, checkpoint_every: 2 });
  const first = await runTrain(writeRecipe(base), { onStep: (rec, _c, abort) => rec.step === 2 && abort() });
  first.ctx.model!.dispose();
  const changed = writeRecipe(smallRecipe(out, { max_steps: 4, checkpoint_every: 2, max_grad_norm: 0.5 }, { optimizer: { use: 'adamw', lr: 1e-3 } }));
  const refused = await runTrain(changed, { resume: first.ctx.runDir });
  assert.ok(refused.error instanceof UserError);
  const msg = (refused.error as UserError).message;
  assert.match(msg, /optimizer\.lr: 0\.003 -> 0\.001/);
  assert.match(msg, /train\.max_grad_norm: 1 -> 0\.5/);
  assert.match((refused.error as UserError).hint ?? '', /--force/);
  assert.equal(refused.steps.length, 0);
  refused.ctx.model!.dispose();
  const forced = await runTrain(changed, { resume: first.ctx.runDir, force: true });
  assert.equal(forced.error, undefined, String(forced.error));
  assert.deepEqual(forced.steps.map((r) => r.step), [3, 4]);
  forced.ctx.model!.dispose();
});

test('NaN: the run stops with a UserError naming the first non-finite module; the last good checkpoint stays latest', async () => {
  const out = tmpOut();
  const recipe = writeRecipe(smallRecipe(out, { max_steps: 8, checkpoint_every: 2 }));
  const r = await runTrain(recipe, {
    onStep: (rec, ctx) => {
      if (rec.step === 5) {
        // poison one decoder weight: step 6's forward goes non-finite in the decoder
        const w = ctx.model!.params.get('decoder.blocks.1.mlp.up_proj.weight')!;
        w.assign(tf.fill(w.shape, NaN));
      }
    },
  });
  assert.ok(r.error instanceof UserError, String(r.error));
  const e = r.error as UserError;
  assert.match(e.message, /diverged at step 6/);
  assert.match(e.message, /first non-finite output: decoder/);
  assert.match(e.message, /non-finite weights: decoder\.blocks\.1\.mlp\.up_proj\.weight/);
  assert.match(e.hint ?? '', /step-4/);
  assert.equal(r.steps.length, 5);
  assert.equal(findLatestCheckpoint(r.ctx.runDir)!.trainer.step, 4);
  const saved = readSafetensors(join(findLatestCheckpoint(r.ctx.runDir)!.folder, 'model.safetensors')).tensors;
  assert.ok([...saved.values()].every((t) => (t.data as Float32Array).every(Number.isFinite)), 'the kept checkpoint is finite');
  r.ctx.model!.dispose();
});

test('live tensor count is flat across 50 steps; outputs: metrics.jsonl, loss.png, checkpoints, best', async () => {
  const out = tmpOut();
  const recipe = writeRecipe(smallRecipe(out, { max_steps: 50, checkpoint_every: 20, keep_checkpoints: 2, eval_every: 25, batch_size: 2 }, { data: {
    train: [{ use: 'synthetic-shapes', split: 'train', count: 100, format: 'open' }],
    val: [{ use: 'synthetic-shapes', split: 'val', count: 4, format: 'open' }],
  } }));
  const counts: number[] = [];
  const r = await runTrain(recipe, { onStep: () => counts.push(tf.memory().numTensors) });
  assert.equal(r.error, undefined, String((r.error as Error)?.stack));
  assert.equal(counts.length, 50);
  // after the first step (optimizer moments created), nothing accumulates (eval steps included)
  assert.deepEqual(new Set(counts.slice(1)), new Set([counts[1]]), `live tensors per step: ${counts.join(',')}`);
  const run = r.ctx.runDir;
  const lines = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const trainLines = lines.filter((l) => l.type === 'train');
  assert.equal(trainLines.length, 50);
  for (const k of ['step', 'epoch', 'loss', 'grad_norm', 'lr', 'tokens', 'tokens_per_s', 'data_wait_ms', 'step_ms']) assert.ok(k in trainLines[0], k);
  assert.ok(trainLines.at(-1).loss < trainLines[0].loss, `the loss goes down: ${trainLines[0].loss} -> ${trainLines.at(-1).loss}`);
  const evals = lines.filter((l) => l.type === 'eval');
  assert.deepEqual(evals.map((e) => e.step), [25, 50]);
  assert.ok(evals.every((e) => Number.isFinite(e.val_loss)));
  assert.ok(existsSync(join(run, 'loss.png')));
  const ck = readdirSync(join(run, 'checkpoints')).sort();
  assert.deepEqual(ck, ['best', 'latest', 'step-40', 'step-50']);
  const best = JSON.parse(readFileSync(join(run, 'checkpoints', 'best', 'trainer.json'), 'utf8'));
  assert.equal(best.best.metric, 'val_loss');
  assert.ok([25, 50].includes(best.step));
  // a checkpoint is a plain nanoVLM model folder
  const cfg = JSON.parse(readFileSync(join(run, 'checkpoints', 'step-50', 'config.json'), 'utf8'));
  assert.equal(cfg.lm_hidden_dim, 48);
  assert.ok(r.lines.some((l) => /step \d+\/50 · loss [\d.]+ · lr [\d.e-]+ · \d+ tok\/s · data wait \d+ ms · ETA/.test(l)));
  r.ctx.model!.dispose();
});
