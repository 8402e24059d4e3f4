// The memory options of training change where numbers live, not the numbers:
//   - train.activation_checkpointing (core/train/activation-checkpointing.ts): loss and every
//     gradient equal those without it, also with frozen parameters, with no tensor left behind;
//   - adamw host_state (plugins/optimizer/adamw-host.ts): the AdamW update equals the tensor path;
//   - both at once against the nanoVLM v0.1 fixture (PyTorch's gradients and AdamW update).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { AdamW } from '../../../plugins/optimizer/adamw.ts';
import { compareFixture, formatTable } from '../../../core/commands/compare.ts';
import { FIXTURES, needsShared } from '../../helpers/shared.ts';
import { setup } from '../../helpers/model.ts';
import { randomHostBatch, tensorsOf, tinyModel } from '../../helpers/train.ts';
import { lossAndGrads } from '../../../core/train/grads.ts';

const ADAMW = { weight_decay: 0.01, betas: [0.9, 0.999], eps: 1e-8, freeze: [] as string[] };

function relL2(a: ArrayLike<number>, b: ArrayLike<number>): { rel: number; maxAbs: number } {
  let num = 0;
  let den = 0;
  let maxAbs = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
    maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
  }
  return { rel: den ? Math.sqrt(num / den) : Math.sqrt(num), maxAbs };
}

test('activation checkpointing: the same loss and every gradient, frozen parameters included, no leak', async () => {
  const model = await tinyModel(3);
  const batch = tensorsOf(randomHostBatch(4, 7));
  const all = [...model.params.keys()];
  // everything, and a frozen vision encoder (the checkpointed vision blocks then differentiate only their input)
  for (const trainable of [all, all.filter((n) => !n.startsWith('vision_encoder.'))]) {
    const plain = lossAndGrads(model, batch, trainable);
    const before = tf.memory().numTensors;
    const ckpt = lossAndGrads(model, batch, trainable, { checkpoint: true });
    assert.equal(tf.memory().numTensors - before, 1 + ckpt.grads.size, 'checkpointing keeps only the loss and the gradients');
    assert.equal(ckpt.loss.dataSync()[0], plain.loss.dataSync()[0], 'loss');
    assert.deepEqual([...ckpt.grads.keys()].sort(), [...plain.grads.keys()].sort());
    assert.equal(ckpt.grads.size, trainable.length);
    for (const [n, g] of plain.grads) {
      const e = relL2(ckpt.grads.get(n)!.dataSync(), g.dataSync());
      assert.ok(e.rel <= 1e-6 && e.maxAbs <= 1e-7, `${n}: rel L2 ${e.rel}, max abs ${e.maxAbs}`);
    }
    tf.dispose([plain.loss, ckpt.loss, ...plain.grads.values(), ...ckpt.grads.values()]);
  }
  tf.dispose(Object.values(batch));
  model.dispose();
});

test('activation checkpointing holds fewer tensor bytes at the peak of a training step', async () => {
  const model = await tinyModel(3);
  const batch = tensorsOf(randomHostBatch(8, 7));
  const peak = async (checkpoint: boolean) => {
    const prof = await tf.profile(() => {
      const r = lossAndGrads(model, batch, undefined, { checkpoint });
      tf.dispose([r.loss, ...r.grads.values()]);
    });
    return prof.peakBytes;
  };
  const plain = await peak(false);
  const ckpt = await peak(true);
  assert.ok(ckpt < plain, `peak bytes with checkpointing ${ckpt} should be below ${plain}`);
  tf.dispose(Object.values(batch));
  model.dispose();
});

test('a model with dropout refuses activation checkpointing with what to change', async () => {
  const model = await tinyModel(3);
  (model.decoder as unknown as { cfg: { dropout: number } }).cfg.dropout = 0.1;
  const batch = tensorsOf(randomHostBatch(2, 7));
  assert.throws(() => lossAndGrads(model, batch, undefined, { checkpoint: true }), /activation_checkpointing cannot recompute the decoder's blocks: they use dropout 0\.1/);
  tf.dispose(Object.values(batch));
  model.dispose();
});

test('AdamW host_state: the same parameters as the tensor path over 3 steps, state round trip', async () => {
  const model = await tinyModel(5);
  const batch = tensorsOf(randomHostBatch(4, 11));
  const { loss, grads } = lossAndGrads(model, batch);
  const copy = () => new Map([...model.params].map(([n, v]) => [n, tf.variable(v.clone(), true, `${n}-${Math.random()}`)]));
  const pa = copy();
  const pb = copy();
  const groups = [
    { name: 'MP', prefixes: ['MP'], lr: 2e-3 },
    { name: 'backbones', prefixes: ['vision_encoder', 'decoder'], lr: 1e-4, weight_decay: 0.05 },
  ];
  const a = new AdamW(pa, { ...ADAMW, groups });
  const b = new AdamW(pb, { ...ADAMW, groups, host_state: true });
  const live = tf.memory().numTensors;
  for (const lrs of [[2e-3, 1e-4], [1e-3, 5e-5], [5e-4, 2e-5]]) {
    a.step(grads, lrs);
    b.step(grads, lrs);
  }
  assert.equal(tf.memory().numTensors, live, 'the host path leaves no tensor behind');
  let bitExact = 0;
  for (const [n, p] of pa) {
    const x = p.dataSync();
    const y = pb.get(n)!.dataSync();
    const e = relL2(y, x);
    assert.ok(e.rel <= 1e-6, `${n}: rel L2 ${e.rel}`);
    if (e.maxAbs === 0) bitExact++;
  }
  // the host arithmetic rounds like float32 kernels: on wasm/cpu it is the same bits
  assert.equal(bitExact, pa.size, `${pa.size - bitExact} parameters differ in the last bits`);
  // the moments: in the host state, the same values as the tensor state
  const sa = a.state();
  const sb = b.state();
  assert.equal(sb.step, 3);
  assert.equal(sb.tensors.size, sa.tensors.size);
  for (const [k, t] of sa.tensors) assert.deepEqual(sb.tensors.get(k)!.dataSync(), t.dataSync(), k);
  // round trip: host state -> a new host optimizer, and -> a tensor optimizer
  const c = new AdamW(copy(), { ...ADAMW, groups, host_state: true });
  c.loadState(sb);
  const d = new AdamW(copy(), { ...ADAMW, groups });
  d.loadState(sb);
  for (const [k, t] of sa.tensors) {
    assert.deepEqual(c.state().tensors.get(k)!.dataSync(), t.dataSync(), k);
    assert.deepEqual(d.state().tensors.get(k)!.dataSync(), t.dataSync(), k);
  }
  for (const o of [a, b, c, d]) o.dispose();
  tf.dispose([loss, ...grads.values(), ...pa.values(), ...pb.values(), ...Object.values(batch)]);
  model.dispose();
});

test('nanoVLM fixture with checkpointing and host AdamW state: loss, every gradient and the AdamW update within the README tolerances', needsShared('fixtures', 'nanovlm', 'tiny'), async () => {
  const registry = await setup();
  const dir = join(FIXTURES, 'tiny');
  const rows = await compareFixture({ model: dir, inputs: join(dir, 'inputs.safetensors'), expected: join(dir, 'expected.safetensors'), registry, checkpoint: true, adamw: { host_state: true } });
  const failed = rows.filter((r) => !r.pass);
  assert.equal(failed.length, 0, `failures:\n${formatTable(rows)}`);
  assert.ok(rows.some((r) => r.name.startsWith('grad.')) && rows.some((r) => r.name.startsWith('after_adamw.')), 'gradients and the AdamW update were compared');
});
