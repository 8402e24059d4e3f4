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
import { loadCheckpoint } from '../../core/weights/checkpoint.ts';
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
let ids: number[][]; // [3, 12]
let mask: number[][];
let images: Float32Array; // [3, 3, 32, 32]
let expected: number[][]; // [3, 6]

function ints(t: { data: ArrayLike<number | bigint>; shape: number[] }): number[][] {
  const [R, C] = t.shape;
  return Array.from({ length: R }, (_, r) => Array.from({ length: C }, (_, c) => Number(t.data[r * C + c])));
}

/** generate for the rows `rows` of the fixture batch (B = rows.length); not inside a tf.tidy, so leaks show */
function run(rows: number[], opts: GenerateOptions, withMask = true): number[][] {
  const S = 32 * 32 * 3;
  const inputIds = tf.tensor2d(rows.map((r) => ids[r]), undefined, 'int32');
  const attentionMask = withMask ? tf.tensor2d(rows.map((r) => mask[r]), undefined, 'int32') : null;
  const img = new Float32Array(rows.length * S);
  rows.forEach((r, i) => img.set(images.subarray(r * S, (r + 1) * S), i * S));
  const imgs = tf.tensor4d(img, [rows.length, 3, 32, 32]);
  try {
    return generate(model, { inputIds, attentionMask, images: imgs }, opts);
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
  expected = ints(readSafetensors(join(TINY, 'expected.safetensors')).tensors.get('greedy_tokens')!);
});
after(() => model?.dispose());

test('greedy with the KV cache equals nanoVLM greedy_tokens', skip, () => {
  assert.deepEqual(run([0, 1, 2], { greedy: true, maxNewTokens: 6, stopAtEos: false }), expected);
});

test('greedy with full recompute (useCache: false, nanoVLM v0.1) equals greedy_tokens', skip, () => {
  assert.deepEqual(run([0, 1, 2], { greedy: true, maxNewTokens: 6, stopAtEos: false, useCache: false }), expected);
});

test('cache and no-cache agree on longer outputs', skip, () => {
  const a = run([0, 1, 2], { greedy: true, maxNewTokens: 16, stopAtEos: false });
  const b = run([0, 1, 2], { greedy: true, maxNewTokens: 16, stopAtEos: false, useCache: false });
  assert.deepEqual(a, b);
  assert.deepEqual(a.map((r) => r.slice(0, 6)), expected);
});

test('batched left-padded generation equals per-sample generation', skip, () => {
  const batched = run([0, 1, 2], { greedy: true, maxNewTokens: 10, stopAtEos: false });
  for (const r of [0, 1, 2]) assert.deepEqual(run([r], { greedy: true, maxNewTokens: 10, stopAtEos: false }), [batched[r]], `row ${r}`);
  // row 1 has no padding: without any mask it is the same again
  assert.deepEqual(run([1], { greedy: true, maxNewTokens: 10, stopAtEos: false }, false), [batched[1]]);
  // other batch compositions
  assert.deepEqual(run([2, 0], { greedy: true, maxNewTokens: 10, stopAtEos: false }), [batched[2], batched[0]]);
});

test('eos stops one row; the other rows are unchanged', skip, () => {
  // with 272 as "eos", row 0 (48 48 272 ...) stops after two tokens
  const seen: [number, number, number][] = [];
  const out = run([0, 1, 2], {
    greedy: true,
    maxNewTokens: 6,
    eosTokenId: 272,
    onToken: (row, tok, step) => seen.push([row, tok, step]),
  });
  assert.deepEqual(out, [[48, 48], expected[1], expected[2]]);
  // the eos itself is streamed; rows stream in order, step by step
  assert.deepEqual(seen.filter(([r]) => r === 0).map(([, t]) => t), [48, 48, 272]);
  assert.deepEqual(seen.filter(([r]) => r === 1).map(([, t, s]) => [t, s]), expected[1].map((t, s) => [t, s]));
  // and nanoVLM's behaviour without stopping
  assert.deepEqual(run([0, 1, 2], { greedy: true, maxNewTokens: 6, eosTokenId: 272, stopAtEos: false }), expected);
  // when every row has stopped, generation ends early
  const ended = run([0], { greedy: true, maxNewTokens: 50, eosTokenId: 48 });
  assert.deepEqual(ended, [[]]);
});

test('seeded sampling is reproducible; top-k = 1 equals greedy', skip, () => {
  const opts = { temperature: 1.5, maxNewTokens: 8, stopAtEos: false, seed: 11 };
  const a = run([0, 1, 2], opts);
  assert.deepEqual(run([0, 1, 2], opts), a);
  assert.deepEqual(run([0, 1, 2], { ...opts, useCache: false }), a);
  assert.notDeepEqual(run([0, 1, 2], { ...opts, seed: 12 }), a);
  assert.deepEqual(run([0, 1, 2], { temperature: 2, topK: 1, maxNewTokens: 6, stopAtEos: false, seed: 3 }), expected);
  assert.deepEqual(run([0, 1, 2], { temperature: 1, topP: 1e-9, maxNewTokens: 6, stopAtEos: false, seed: 4 }), expected);
});

test('no tensor is leaked: the live tensor count is the same before and after', skip, () => {
  run([0, 1, 2], { greedy: true, maxNewTokens: 2 }); // warm-up (lazily created kernels/constants)
  for (const useCache of [true, false]) {
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) run([0, 1, 2], { greedy: true, maxNewTokens: 8, useCache, stopAtEos: false });
    assert.equal(tf.memory().numTensors, before, `useCache ${useCache}`);
  }
});

test('a prompt batch that does not fit the model is a UserError (foreign tokenizer, wrong image size)', skip, () => {
  const batch = { inputIds: Int32Array.from([1, 2, 400]), attentionMask: Int32Array.from([1, 1, 1]), images: new Float32Array(3 * 32 * 32), batchSize: 1, seqLen: 3, imageSize: 32 };
  assert.throws(() => checkPromptBatch(model, batch), (e: unknown) => e instanceof UserError && /token id 400, outside the model's vocabulary of 300/.test(e.message));
  assert.throws(() => generateBatch(model, batch), UserError);
  const small = { ...batch, inputIds: Int32Array.from([1, 2, 3]), images: new Float32Array(3 * 16 * 16), imageSize: 16 };
  assert.throws(() => checkPromptBatch(model, small), (e: unknown) => e instanceof UserError && /16px/.test(e.message));
  assert.doesNotThrow(() => checkPromptBatch(model, { ...batch, inputIds: Int32Array.from([1, 2, 299]) }));
});
