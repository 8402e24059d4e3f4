// Sampling: greedy, temperature, top-k, top-p (at least one token kept), seeded reproducibility.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { argmax, mulberry32, rowRng, sampleToken, samplingDistribution } from '../../core/generate.ts';

/** random logits with a clear order */
function logits(V: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: V }, () => (r() - 0.5) * 8);
}

test('mulberry32 is deterministic and in [0, 1)', () => {
  const a = mulberry32(42);
  const b = mulberry32(42);
  const xs = Array.from({ length: 1000 }, () => a());
  assert.deepEqual(xs, Array.from({ length: 1000 }, () => b()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.notDeepEqual(xs.slice(0, 10), Array.from({ length: 10 }, mulberry32(43)));
  // rows of one batch draw from different streams; the same (seed, row) from the same one
  assert.notEqual(rowRng(0, 0)(), rowRng(0, 1)());
  assert.equal(rowRng(7, 3)(), rowRng(7, 3)());
});

test('argmax takes the first maximum (torch.argmax)', () => {
  assert.equal(argmax([1, 3, 3, 2]), 1);
  assert.equal(argmax([-5]), 0);
});

test('top-k = 1 equals greedy, whatever the temperature and seed', () => {
  for (let s = 0; s < 20; s++) {
    const l = logits(300, s);
    const rng = mulberry32(s);
    for (const temperature of [0.5, 1, 3]) {
      assert.equal(sampleToken(l, { topK: 1, temperature }, rng), argmax(l));
    }
    assert.equal(sampleToken(l, { greedy: true, temperature: 5, topK: 50 }, rng), argmax(l));
    assert.equal(sampleToken(l, { temperature: 0 }, rng), argmax(l));
  }
});

test('a tiny top-p keeps only the argmax (at least one token is always kept)', () => {
  for (let s = 0; s < 20; s++) {
    const l = logits(300, 100 + s);
    const d = samplingDistribution(l, { topP: 1e-6 });
    assert.deepEqual(d.ids, [argmax(l)]);
    assert.deepEqual(d.probs, [1]);
    assert.equal(sampleToken(l, { topP: 0 }, mulberry32(s)), argmax(l));
  }
});

test('top-k keeps the k largest (ties at the boundary kept), top-p the smallest set reaching p', () => {
  const l = [0, 3, 1, 3, 2, 1];
  assert.deepEqual(samplingDistribution(l, { topK: 2 }).ids, [1, 3]);
  assert.deepEqual(samplingDistribution(l, { topK: 5 }).ids, [1, 2, 3, 4, 5]);
  assert.deepEqual(samplingDistribution(l, { topK: 4 }).ids, [1, 2, 3, 4, 5]); // 2 and 5 tie at the 4th
  assert.deepEqual(samplingDistribution(l, { topK: 3 }).ids, [1, 3, 4]);
  // probabilities 0.5, 0.3, 0.2: p = 0.5 keeps one, 0.6 keeps two, 0.85 all three
  const l2 = [Math.log(0.2), Math.log(0.5), Math.log(0.3)];
  assert.deepEqual(samplingDistribution(l2, { topP: 0.5 }).ids, [1]);
  assert.deepEqual(samplingDistribution(l2, { topP: 0.6 }).ids, [1, 2]);
  const all = samplingDistribution(l2, { topP: 0.85 });
  assert.deepEqual(all.ids, [0, 1, 2]);
  assert.ok(Math.abs(all.probs[1] - 0.5) < 1e-12 && Math.abs(all.probs[0] - 0.2) < 1e-12);
  // renormalised after top-p
  const two = samplingDistribution(l2, { topP: 0.6 });
  assert.ok(Math.abs(two.probs[0] - 0.5 / 0.8) < 1e-12 && Math.abs(two.probs[1] - 0.3 / 0.8) < 1e-12);
  // top-k then top-p
  assert.deepEqual(samplingDistribution(l, { topK: 3, topP: 0.01 }).ids, [1, 3]); // the two tied maxima
});

test('temperature sharpens or flattens the distribution', () => {
  const l = [Math.log(0.2), Math.log(0.5), Math.log(0.3)];
  const p = (t: number) => samplingDistribution(l, { temperature: t }).probs[1]; // id 1: probability 0.5 at t = 1
  assert.ok(Math.abs(p(1) - 0.5) < 1e-12);
  assert.ok(p(0.5) > 0.5 && p(2) < 0.5 && p(2) > 1 / 3);
});

test('seeded sampling is reproducible and follows the distribution', () => {
  const l = [Math.log(0.2), Math.log(0.5), Math.log(0.3)];
  const draw = (seed: number) => {
    const rng = mulberry32(seed);
    return Array.from({ length: 4000 }, () => sampleToken(l, { temperature: 1 }, rng));
  };
  const a = draw(1);
  assert.deepEqual(a, draw(1));
  assert.notDeepEqual(a, draw(2));
  const freq = [0, 1, 2].map((k) => a.filter((x) => x === k).length / a.length);
  // 4000 draws: standard error <= 0.008, allow 4 sigma
  [0.2, 0.5, 0.3].forEach((p, k) => assert.ok(Math.abs(freq[k] - p) < 0.035, `token ${k}: ${freq[k]} vs ${p}`));
  // top-k = 2 never draws the least likely token
  const rng = mulberry32(3);
  for (let i = 0; i < 500; i++) assert.notEqual(sampleToken(l, { topK: 2 }, rng), 0);
});
