// nanoVLM HEAD's sampling order (core/generate.ts SamplingOptions.order = 'nanovlm-head'):
// top_k_top_p_filtering on the raw logits, then softmax(filtered / temperature). Checked against the
// distribution HEAD's own code computed (test/core/model/fixtures/head-tiny: sampling_logits ->
// sampling_probs, top-k 50, top-p 0.9, temperature 0.5) and on cases where it differs from the
// Hugging Face order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readSafetensors } from '../../core/weights/safetensors.ts';
import { NANOVLM_HEAD_SAMPLING, samplingDistribution, sampleToken, mulberry32 } from '../../core/generate.ts';

const HEAD = join(import.meta.dirname, 'model', 'fixtures', 'head-tiny');

function dense(d: { ids: number[]; probs: number[] }, V: number): Float64Array {
  const out = new Float64Array(V);
  d.ids.forEach((id, j) => (out[id] = d.probs[j]));
  return out;
}

test("HEAD order reproduces nanoVLM HEAD's sampling distribution (same support, probabilities within 1e-6)", () => {
  const inp = readSafetensors(join(HEAD, 'inputs.safetensors')).tensors.get('sampling_logits')!;
  const exp = readSafetensors(join(HEAD, 'expected.safetensors')).tensors.get('sampling_probs')!;
  const [R, V] = inp.shape;
  const logits = inp.data as Float32Array;
  const ref = exp.data as Float32Array;
  for (let r = 0; r < R; r++) {
    const row = logits.subarray(r * V, (r + 1) * V);
    const got = dense(samplingDistribution(row, { ...NANOVLM_HEAD_SAMPLING, order: 'nanovlm-head' }), V);
    const support = (a: ArrayLike<number>) => Array.from(a, (p, i) => (p > 0 ? i : -1)).filter((i) => i >= 0);
    const want = ref.subarray(r * V, (r + 1) * V);
    assert.deepEqual(support(got), support(want), `row ${r}: kept tokens`);
    assert.ok(support(want).length > 1 && support(want).length < 50, `row ${r}: top-p is active (${support(want).length} kept)`);
    for (let i = 0; i < V; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-6, `row ${r} id ${i}: ${got[i]} vs ${want[i]}`);
    // the Hugging Face order (temperature first) keeps a different set on the same logits
    const hf = dense(samplingDistribution(row, NANOVLM_HEAD_SAMPLING), V);
    assert.notDeepEqual(support(hf), support(want));
  }
});

test('HEAD top-p drops the token whose cumulative mass crosses top_p (HF keeps it); the first token always stays', () => {
  const logits = [Math.log(0.2), Math.log(0.5), Math.log(0.3)]; // probabilities 0.2, 0.5, 0.3
  const head = (topP: number) => samplingDistribution(logits, { topP, order: 'nanovlm-head' }).ids;
  const hf = (topP: number) => samplingDistribution(logits, { topP }).ids;
  assert.deepEqual(head(0.7), [1]); // 0.5 <= 0.7 kept, 0.8 > 0.7 dropped
  assert.deepEqual(hf(0.7), [1, 2]); // HF: the token reaching the mass is kept
  assert.deepEqual(head(0.85), [1, 2]);
  assert.deepEqual(hf(0.85), [0, 1, 2]);
  assert.deepEqual(head(0.1), [1]); // 0.5 > 0.1 but the most likely token is always kept
  // temperature after filtering: the kept set does not depend on it, the probabilities do
  const t = samplingDistribution(logits, { topP: 0.85, temperature: 0.5, order: 'nanovlm-head' });
  assert.deepEqual(t.ids, [1, 2]);
  assert.ok(Math.abs(t.probs[0] - 0.25 / (0.25 + 0.09)) < 1e-12, `${t.probs}`);
  // top-k on the raw logits, ties at the k-th kept (torch: logits < kth are removed)
  assert.deepEqual(samplingDistribution([1, 3, 3, 2], { topK: 2, order: 'nanovlm-head' }).ids, [1, 2]);
  assert.deepEqual(samplingDistribution([1, 3, 2, 2], { topK: 2, order: 'nanovlm-head' }).ids, [1, 2, 3]);
  // sampling draws from that distribution
  const rng = mulberry32(7);
  for (let i = 0; i < 20; i++) assert.ok([1, 2].includes(sampleToken(logits, { topP: 0.85, order: 'nanovlm-head' }, rng)));
});
