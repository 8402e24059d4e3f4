// Generation on the fixture's tiny nanoVLM: greedy tokens equal PyTorch nanoVLM v0.1's
// `greedy_tokens` token for token, with the KV cache and with full recompute; batched left-padded
// generation equals per-sample generation; eos stops a row without touching the others; seeded
// sampling is reproducible; no tensor is leaked.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../helpers/backend.ts';
import { FIXTURES, needsShared } from '../helpers/shared.ts';
import { createRegistry } from '../../core/registry.ts';
import { loadCheckpoint } from '../../core/weights/model-folder.ts';
import { readSafetensors } from '../../core/weights/safetensors.ts';
import { checkPromptBatch, generate, generateBatch, type GenerateOptions } from '../../core/generate.ts';
import { UserError } from '../../core/errors.ts';
import type { VisionLanguageModel } from '../../core/model/vlm.ts';
import vision from '../../plugins/vision/index.ts';
import projector from '../../plugins/projector/index.ts';
import decoder from '../../plugins/decoder/index.ts';

const skip = needsShared('fixtures', 'nanovlm', 'tiny', 'expected.safetensors');
const TINY = join(FIXTURES, 'tiny');

let model: VisionLanguageModel;
// every shape comes from the fixture files (tiny: B 3, T 12, S 32, 6 greedy tokens)
let ids: number[][]; // [B, T]
let mask: number[][]; // [B, T]
let images: Float32Array; // [B, 3, S, S]
let S: number;
let expected: number[][]; // [B, N]
let N: number;
let ALL: number[]; // 0..B-1

function ints(t: { data: ArrayLike<number | bigint>; shape: number[] }): number[][] {
  const [R, C] = t.shape;
  return Array.from({ length: R }, (_, r) => Array.from({ length: C }, (_, c) => Number(t.data[r * C + c])));
}

/** generate for the rows `rows` of the fixture batch (B = rows.length); not inside a tf.tidy, so leaks show */
async function run(rows: number[], opts: GenerateOptions, withMask = true): Promise<number[][]> {
  const px = 3 * S * S;
  const inputIds = tf.tensor2d(rows.map((r) => ids[r]), undefined, 'int32');
  const attentionMask = withMask ? tf.tensor2d(rows.map((r) => mask[r]), undefined, 'int32') : null;
  const img = new Float32Array(rows.length * px);
  rows.forEach((r, i) => img.set(images.subarray(r * px, (r + 1) * px), i * px));
  const imgs = tf.tensor4d(img, [rows.length, 3, S, S]);
  try {
    return await generate(model, { inputIds, attentionMask, images: imgs }, opts);
  } finally {
    tf.dispose([inputIds, imgs, ...(attentionMask ? [attentionMask] : [])]);
  }
}

before(async () => {
  if (skip.skip) return;
  await useTestBackend();
  const registry = createRegistry([...vision, ...projector, ...decoder]);
  model = await loadCheckpoint(TINY, registry);
  const inputs = readSafetensors(join(TINY, 'inputs.safetensors')).tensors;
  ids = ints(inputs.get('input_ids')!);
  mask = ints(inputs.get('attention_mask')!);
  images = inputs.get('images')!.data as Float32Array;
  S = inputs.get('images')!.shape[3];
  expected = ints(readSafetensors(join(TINY, 'expected.safetensors')).tensors.get('greedy_tokens')!);
  N = expected[0].length;
  ALL = ids.map((_, i) => i);
});
after(() => model?.dispose());

test('greedy with the KV cache equals nanoVLM greedy_tokens', skip, async () => {
  assert.deepEqual(await run(ALL, { greedy: true, maxNewTokens: N, stopAtEos: false }), expected);
});

test('greedy with full recompute (useCache: false, nanoVLM v0.1) equals greedy_tokens', skip, async () => {
  assert.deepEqual(await run(ALL, { greedy: true, maxNewTokens: N, stopAtEos: false, useCache: false }), expected);
});

test('cache and no-cache agree on longer outputs', skip, async () => {
  const a = await run(ALL, { greedy: true, maxNewTokens: 2 * N, stopAtEos: false });
  const b = await run(ALL, { greedy: true, maxNewTokens: 2 * N, stopAtEos: false, useCache: false });
  assert.deepEqual(a, b);
  assert.deepEqual(a.map((r) => r.slice(0, N)), expected);
});

test('batched left-padded generation equals per-sample generation', skip, async () => {
  const batched = await run(ALL, { greedy: true, maxNewTokens: N, stopAtEos: false });
  for (const r of ALL) assert.deepEqual(await run([r], { greedy: true, maxNewTokens: N, stopAtEos: false }), [batched[r]], `row ${r}`);
  // a row without padding: without any mask it is the same again
  for (const r of ALL.filter((r) => mask[r].every((m) => m === 1))) {
    assert.deepEqual(await run([r], { greedy: true, maxNewTokens: N, stopAtEos: false }, false), [batched[r]], `row ${r} unmasked`);
  }
  // another batch composition
  const reversed = [...ALL].reverse();
  assert.deepEqual(await run(reversed, { greedy: true, maxNewTokens: N, stopAtEos: false }), reversed.map((r) => batched[r]));
});

test('eos stops one row; the other rows are unchanged', skip, async () => {
  // pretend the last greedy token of row 0 is eos: every row stops at its first occurrence of it
  const eos = expected[0][N - 1];
  const cut = (row: number[]) => (row.includes(eos) ? row.slice(0, row.indexOf(eos)) : row);
  const seen: [number, number, number][] = [];
  const out = await run(ALL, { greedy: true, maxNewTokens: N, eosTokenId: eos, onToken: (row, tok, step) => seen.push([row, tok, step]) });
  assert.deepEqual(out, expected.map(cut));
  // streamed: every row's tokens in order, its eos included, then nothing more for that row
  for (const r of ALL) {
    const upto = expected[r].includes(eos) ? expected[r].indexOf(eos) + 1 : N;
    assert.deepEqual(seen.filter(([row]) => row === r).map(([, t, step]) => [t, step]), expected[r].slice(0, upto).map((t, step) => [t, step]));
  }
  // nanoVLM's behaviour without stopping
  assert.deepEqual(await run(ALL, { greedy: true, maxNewTokens: N, eosTokenId: eos, stopAtEos: false }), expected);
  // when every row has stopped, generation ends early
  assert.deepEqual(await run([0], { greedy: true, maxNewTokens: 50, eosTokenId: expected[0][0] }), [[]]);
});

test('seeded sampling is reproducible; top-k = 1 and a tiny top-p equal greedy', skip, async () => {
  const opts = { temperature: 1.5, maxNewTokens: 8, stopAtEos: false, seed: 11 };
  const a = await run(ALL, opts);
  assert.deepEqual(await run(ALL, opts), a);
  assert.deepEqual(await run(ALL, { ...opts, useCache: false }), a);
  assert.notDeepEqual(await run(ALL, { ...opts, seed: 12 }), a);
  assert.deepEqual(await run(ALL, { temperature: 2, topK: 1, maxNewTokens: N, stopAtEos: false, seed: 3 }), expected);
  assert.deepEqual(await run(ALL, { temperature: 1, topP: 1e-9, maxNewTokens: N, stopAtEos: false, seed: 4 }), expected);
});

test('no tensor is leaked: the live tensor count is the same before and after', skip, async () => {
  await run(ALL, { greedy: true, maxNewTokens: 2 }); // warm-up (lazily created kernels/constants)
  for (const useCache of [true, false]) {
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await run(ALL, { greedy: true, maxNewTokens: 8, useCache, stopAtEos: false });
    assert.equal(tf.memory().numTensors, before, `useCache ${useCache}`);
  }
});

test('a prompt batch that does not fit the model is a UserError (foreign tokenizer, wrong image size)', skip, async () => {
  const V = model.decoder.vocabSize;
  const S0 = model.imageSize;
  const batch = { inputIds: Int32Array.from([1, 2, V + 100]), attentionMask: Int32Array.from([1, 1, 1]), images: new Float32Array(3 * S0 * S0), batchSize: 1, seqLen: 3, imageSize: S0 };
  assert.throws(() => checkPromptBatch(model, batch), (e: unknown) => e instanceof UserError && e.message.includes(`token id ${V + 100}, outside the model's vocabulary of ${V}`));
  await assert.rejects(generateBatch(model, batch), UserError);
  const half = S0 / 2;
  const small = { ...batch, inputIds: Int32Array.from([1, 2, 3]), images: new Float32Array(3 * half * half), imageSize: half };
  assert.throws(() => checkPromptBatch(model, small), (e: unknown) => e instanceof UserError && e.message.includes(`${half}px`));
  assert.doesNotThrow(() => checkPromptBatch(model, { ...batch, inputIds: Int32Array.from([1, 2, V - 1]) }));
});

test("padAfterEos: every token after a row's first eos is eos (nanoVLM HEAD's generate), nothing else changes", skip, async () => {
  const eos = expected[0][1];
  const out = await run(ALL, { greedy: true, maxNewTokens: N, eosTokenId: eos, stopAtEos: false, padAfterEos: true });
  const pad = (row: number[]) => row.map((t, i) => (row.slice(0, i).includes(eos) ? eos : t));
  assert.deepEqual(out, expected.map(pad));
  assert.ok(out[0].slice(2).every((t) => t === eos) && expected[0].slice(2).some((t) => t !== eos), 'row 0 is padded');
});
