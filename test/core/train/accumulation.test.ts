// Gradient accumulation: 2 micro-batches of 4 give the loss and gradients of one batch of 8, even
// though the two halves count different numbers of answer tokens (token-share weighting).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { accumulate, accumulatedLossAndGrads, lossAndGrads } from '../../../core/train/grads.ts';
import { countTargets } from '../../../core/data/collator.ts';
import { randomHostBatch, sliceHostBatch, tensorsOf, tinyModel } from '../../helpers/train.ts';

test('accumulation 2 x 4 equals batch 8 (loss and every gradient), token counts differ', async () => {
  const model = await tinyModel(1);
  const big = randomHostBatch(8, 42);
  const halves = [sliceHostBatch(big, 0, 4), sliceHostBatch(big, 4, 8)];
  const counts = halves.map((h) => countTargets(h.targets));
  assert.notEqual(counts[0], counts[1], 'the halves must count different token numbers for the test to mean something');

  const bigT = tensorsOf(big);
  const one = accumulatedLossAndGrads(model, [bigT], [countTargets(big.targets)]);
  const parts = halves.map(tensorsOf);
  const two = accumulatedLossAndGrads(model, parts, counts);

  // the naive average of the two means is measurably different: the weighting matters
  const means = parts.map((p) => lossAndGrads(model, p));
  const naive = (means[0].loss.dataSync()[0] + means[1].loss.dataSync()[0]) / 2;
  const L1 = one.loss.dataSync()[0];
  const L2 = two.loss.dataSync()[0];
  assert.ok(Math.abs(L1 - L2) <= 1e-5, `loss ${L1} vs accumulated ${L2}`);
  assert.ok(Math.abs(naive - L1) > 1e-4, `naive mean of means ${naive} should differ from ${L1}`);
  assert.equal(one.grads.size, model.params.size);
  for (const [name, g] of one.grads) {
    const a = g.dataSync();
    const b = two.grads.get(name)!.dataSync();
    let num = 0, den = 0, maxAbs = 0;
    for (let i = 0; i < a.length; i++) {
      num += (a[i] - b[i]) ** 2;
      den += a[i] ** 2;
      maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
    }
    assert.ok(maxAbs <= 5e-6 || Math.sqrt(num / den) <= 1e-5, `${name}: max abs ${maxAbs}, rel L2 ${Math.sqrt(num / den)}`);
  }
  tf.dispose([one.loss, two.loss, ...one.grads.values(), ...two.grads.values(), ...Object.values(bigT), ...parts.flatMap((p) => Object.values(p))]);
  for (const m of means) tf.dispose([m.loss, ...m.grads.values()]);
  model.dispose();
});

test('one micro-batch (weight 1): the gradients are kept as they are, without a Multiply pass over them', async () => {
  const grads = new Map([
    ['a', tf.tensor([1.5, -0, Infinity, NaN, 3e-39], [5])],
    ['b', tf.tensor([[2, -7], [0.1, 1e30]], [2, 2])],
  ]);
  const acc = new Map<string, tf.Tensor>();
  const before = tf.memory().numTensors;
  const prof = await tf.profile(() => accumulate(acc, grads, 1));
  assert.deepEqual(prof.kernels.filter((k) => k.name === 'Multiply').map((k) => k.name), [], 'no Multiply kernel');
  assert.equal(tf.memory().numTensors, before + 2, 'one new tensor per gradient');
  for (const [k, g] of grads) {
    const want = g.dataSync();
    g.dispose(); // the accumulator owns its tensors
    const got = acc.get(k)!.dataSync();
    assert.equal(got.length, want.length);
    for (let i = 0; i < got.length; i++) assert.ok(Object.is(got[i], want[i]), `${k}[${i}]: ${got[i]} vs ${want[i]}`);
  }
  // a second micro-batch adds w * g as before
  const g2 = new Map([['a', tf.tensor([2, 2, 2, 2, 2], [5])]]);
  accumulate(acc, g2, 0.5);
  assert.deepEqual(Array.from(acc.get('a')!.dataSync()).slice(0, 2), [2.5, 1]);
  tf.dispose([...acc.values(), ...g2.values()]);
});
