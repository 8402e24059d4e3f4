// Atomic checkpoint folders, the latest pointer and its fallback, pruning, best, disk full (ENOSPC),
// the recipe diff used to refuse a changed resume, and the curve PNG.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { useTestBackend } from '../../helpers/backend.ts';
import { AdamW } from '../../../plugins/optimizer/adamw.ts';
import {
  findLatestCheckpoint,
  loadOptimizerState,
  markBest,
  saveTrainCheckpoint,
  TRAINER_FORMAT_VERSION,
  type TrainerState,
} from '../../../core/train/trainer-checkpoints.ts';
import { diffRecipes, recipeHash } from '../../../core/train/recipe-diff.ts';
import { writeCurvePng } from '../../../core/train/plot.ts';
import { UserError } from '../../../core/errors.ts';

function trainer(step: number): TrainerState {
  return {
    format_version: TRAINER_FORMAT_VERSION,
    step,
    total_steps: 10,
    epoch: 0,
    batch_in_epoch: step,
    rng: { seed: 0, epoch: 0, batch_in_epoch: step },
    loss_tail: [{ step, loss: 1 / (step + 1) }],
    recipe_hash: 'x',
    recipe: {},
    tokens: 0,
    train_seconds: 0,
  };
}
const writeModel = (step: number) => (dir: string) => {
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ step }));
  writeFileSync(join(dir, 'model.safetensors'), `weights-${step}`);
};

test('checkpoints: atomic step folders, latest pointer, pruning, best, optimizer state round trip', async () => {
  await useTestBackend();
  const run = mkdtempSync(join(tmpdir(), 'vlm-ckpt-'));
  const params = new Map([['MP.w', tf.variable(tf.tensor1d([1, 2, 3]))]]);
  const opt = new AdamW(params, { lr: 0.1, weight_decay: 0.01, betas: [0.9, 0.999], eps: 1e-8, freeze: [] });
  const grads = new Map<string, tf.Tensor>([['MP.w', tf.tensor1d([0.5, -1, 2])]]);
  for (let s = 1; s <= 4; s++) {
    opt.step(grads, [0.1]);
    const folder = await saveTrainCheckpoint(run, { step: s, writeModel: writeModel(s), optimizer: opt, trainer: trainer(s), keep: 2 });
    if (s === 2) await markBest(run, folder);
  }
  const ck = join(run, 'checkpoints');
  assert.deepEqual(readdirSync(ck).sort(), ['best', 'latest', 'step-3', 'step-4']);
  assert.equal(readFileSync(join(ck, 'latest'), 'utf8'), 'step-4\n');
  assert.equal(JSON.parse(readFileSync(join(ck, 'best', 'trainer.json'), 'utf8')).step, 2, 'best survives pruning of step-2');
  const latest = findLatestCheckpoint(run)!;
  assert.equal(latest.trainer.step, 4);

  const params2 = new Map([['MP.w', tf.variable(tf.tensor1d([1, 2, 3]))]]);
  const opt2 = new AdamW(params2, { lr: 0.1, weight_decay: 0.01, betas: [0.9, 0.999], eps: 1e-8, freeze: [] });
  loadOptimizerState(latest.folder, opt2);
  assert.equal(opt2.state().step, 4);
  for (const [k, t] of opt.state().tensors) assert.deepEqual(opt2.state().tensors.get(k)!.dataSync(), t.dataSync(), k);

  // a crash after the rename but before the pointer moved: latest names step-4, step-5 exists -> latest wins;
  // a pointer to an incomplete folder (no trainer.json) falls back to the newest complete one
  mkdirSync(join(ck, 'step-5'));
  writeFileSync(join(ck, 'step-5', 'model.safetensors'), 'half');
  writeFileSync(join(ck, 'latest'), 'step-5\n');
  assert.equal(findLatestCheckpoint(run)!.trainer.step, 4);
  // leftovers of a killed writer are ignored and cleaned on the next save
  mkdirSync(join(ck, '.tmp-step-6'));
  await saveTrainCheckpoint(run, { step: 6, writeModel: writeModel(6), optimizer: opt, trainer: trainer(6), keep: 2 });
  assert.ok(!existsSync(join(ck, '.tmp-step-6')) || existsSync(join(ck, 'step-6')));
  assert.equal(findLatestCheckpoint(run)!.trainer.step, 6);
  tf.dispose([...grads.values(), ...params.values(), ...params2.values()]);
  opt.dispose();
  opt2.dispose();
  rmSync(run, { recursive: true, force: true });
});

test('checkpoints: disk full (ENOSPC) mid-write keeps the previous checkpoint as latest and says how to resume', async () => {
  await useTestBackend();
  const run = mkdtempSync(join(tmpdir(), 'vlm-ckpt-'));
  const params = new Map([['MP.w', tf.variable(tf.tensor1d([1, 2, 3]))]]);
  const opt = new AdamW(params, { lr: 0.1, weight_decay: 0.01, betas: [0.9, 0.999], eps: 1e-8, freeze: [] });
  await saveTrainCheckpoint(run, { step: 1, writeModel: writeModel(1), optimizer: opt, trainer: trainer(1), keep: 3 });
  process.env.VLM_FAULT_CHECKPOINT = 'enospc';
  try {
    await assert.rejects(
      saveTrainCheckpoint(run, { step: 2, writeModel: writeModel(2), optimizer: opt, trainer: trainer(2), keep: 3 }),
      (e: unknown) => e instanceof UserError && /disk full/.test(e.message) && /step-1/.test(e.hint ?? '') && /--resume/.test(e.hint ?? ''),
    );
  } finally {
    delete process.env.VLM_FAULT_CHECKPOINT;
  }
  const ck = join(run, 'checkpoints');
  assert.deepEqual(readdirSync(ck).sort(), ['latest', 'step-1']);
  assert.equal(findLatestCheckpoint(run)!.trainer.step, 1);
  assert.equal(readFileSync(join(ck, 'step-1', 'model.safetensors'), 'utf8'), 'weights-1');
  tf.dispose([...params.values()]);
  opt.dispose();
  rmSync(run, { recursive: true, force: true });
});

test('recipe diff names every changed key; hash ignores key order', () => {
  const a = { train: { batch_size: 8, lr: 1 }, data: { train: [{ use: 'x', count: 4 }] }, name: 'n' };
  const b = { name: 'n', data: { train: [{ use: 'x', count: 5 }] }, train: { lr: 1, batch_size: 16, extra: true } };
  assert.deepEqual(diffRecipes(a, b), ['data.train[0].count: 4 -> 5', 'train.batch_size: 8 -> 16', 'train.extra: (absent) -> true']);
  assert.equal(recipeHash({ x: 1, y: [1, { a: 2, b: 3 }] }), recipeHash({ y: [1, { b: 3, a: 2 }], x: 1 }));
  assert.notEqual(recipeHash(a), recipeHash(b));
});

test('curve PNG: a real PNG of the requested size', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vlm-plot-'));
  const file = join(dir, 'loss.png');
  await writeCurvePng(file, 'shapes-tiny', [
    { name: 'train loss', axis: 'left', color: '#1f77b4', points: [1, 2, 3, 4].map((s) => ({ step: s, value: 5 / s })) },
    { name: 'val loss', axis: 'left', color: '#ff7f0e', dots: true, points: [{ step: 2, value: 2.4 }, { step: 4, value: 1.5 }] },
    { name: 'accuracy', axis: 'right', color: '#2ca02c', dots: true, points: [{ step: 4, value: 0.9 }] },
  ]);
  const meta = await sharp(file).metadata();
  assert.equal(meta.format, 'png');
  assert.equal(meta.width, 900);
  assert.equal(meta.height, 500);
  rmSync(dir, { recursive: true, force: true });
});
