// nanoVLM v0.1 prompts and VQACollator semantics: the fixture batch and hand-made edge cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FIXTURES, DATA, needsShared } from '../../helpers/shared.ts';
import { useTestBackend } from '../../helpers/backend.ts';
import { readSafetensors } from '../../../core/weights/safetensors.ts';
import { collate, encodeSample, toTensors, IGNORE, type EncodedSample } from '../../../core/data/collator.ts';
import { vqaPrompt, mmstarPrompt, parseOptions, formatOptions } from '../../../core/data/prompt.ts';
import { HFTokenizerAdapter } from '../../../plugins/tokenizer/hf.ts';
import { BytesTokenizer } from '../../../plugins/tokenizer/bytes.ts';

const px = (S: number) => new Float32Array(3 * S * S);
const row = (a: Int32Array, b: number, T: number) => Array.from(a.subarray(b * T, (b + 1) * T));

test('prompts are nanoVLM v0.1 data/datasets.py strings, character for character', () => {
  assert.equal(vqaPrompt('What is this?'), 'Question: What is this? Answer:');
  assert.equal(mmstarPrompt('Q?\nOptions: A: x, B: y'), 'Question: Q?\nOptions: A: x, B: y \nAnswer only with the letter! \nAnswer:');
});

test('MMStar inline options parse and format round trip', () => {
  assert.deepEqual(parseOptions('Which digit is shown?\nOptions: A: 0, B: 4, C: 6, D: 1'), ['0', '4', '6', '1']);
  assert.deepEqual(parseOptions('Hint: x\nQuestion: y\nOptions: A: a red car, B: two, three, C: none'), ['a red car', 'two, three', 'none']);
  assert.equal(parseOptions('no options here'), undefined);
  assert.equal(formatOptions(['red', 'blue']), 'Options: A: red, B: blue');
  assert.deepEqual(parseOptions('Q\n' + formatOptions(['1', '2', '3', '4'])), ['1', '2', '3', '4']);
});

test('collate reproduces the fixture targets of the real v0.1 VQACollator', needsShared('fixtures', 'nanovlm', 'tiny', 'inputs.safetensors'), () => {
  const { tensors } = readSafetensors(join(FIXTURES, 'tiny', 'inputs.safetensors'));
  const ids = tensors.get('input_ids')!;
  const mask = tensors.get('attention_mask')!;
  const targets = tensors.get('targets')!;
  const [B, T] = ids.shape;
  const big = (a: any) => Array.from(a.data as BigInt64Array, Number);
  const allIds = big(ids);
  const allMask = big(mask);
  const allT = big(targets);
  // the stand-in tokenizer's samples: the real tokens of each row (question + answer + eos); the
  // question lengths of the three samples were 3, 5 and 4 tokens (fixture README: rows built from
  // question ids + answer ids; padding per row [5, 0, 2])
  const qlen = [3, 5, 4];
  const samples: EncodedSample[] = [];
  for (let b = 0; b < B; b++) {
    const r = allIds.slice(b * T, (b + 1) * T).filter((_, t) => allMask[b * T + t] === 1);
    samples.push({ id: `s${b}`, pixels: px(2), ids: r, questionLength: qlen[b] });
  }
  const h = collate(samples, { maxLength: T, padTokenId: 0, imageSize: 2 });
  assert.deepEqual(Array.from(h.inputIds), allIds);
  assert.deepEqual(Array.from(h.attentionMask), allMask);
  assert.deepEqual(Array.from(h.targets), allT);
});

test('collate edge cases: too long -> whole row -100 (ids truncated right), exact fit, last position, question masking', () => {
  const T = 6;
  const h = collate(
    [
      { id: 'long', pixels: px(1), ids: [1, 2, 3, 4, 5, 6, 7], questionLength: 2 }, // 7 > 6
      { id: 'exact', pixels: px(1), ids: [1, 2, 3, 4, 5, 6], questionLength: 2 }, // no padding
      { id: 'short', pixels: px(1), ids: [9, 8, 7], questionLength: 1 }, // 3 pads
      { id: 'q-only', pixels: px(1), ids: [4, 5], questionLength: 2 }, // nothing to predict but the shift
    ],
    { maxLength: T, padTokenId: 0, imageSize: 1 },
  );
  assert.deepEqual(row(h.inputIds, 0, T), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(row(h.attentionMask, 0, T), [1, 1, 1, 1, 1, 1]);
  assert.deepEqual(row(h.targets, 0, T), Array(T).fill(IGNORE));
  // exact: labels[:-1] = ids[1:], labels[:0 + 2 - 1] = -100
  assert.deepEqual(row(h.targets, 1, T), [IGNORE, 3, 4, 5, 6, IGNORE]);
  assert.deepEqual(row(h.inputIds, 2, T), [0, 0, 0, 9, 8, 7]);
  assert.deepEqual(row(h.attentionMask, 2, T), [0, 0, 0, 1, 1, 1]);
  assert.deepEqual(row(h.targets, 2, T), [IGNORE, IGNORE, IGNORE, 8, 7, IGNORE]);
  // question = everything: question_end = 4 + 2 - 1 = 5 -> only the last position could remain, and it is -100
  assert.deepEqual(row(h.targets, 3, T), Array(T).fill(IGNORE));
  assert.deepEqual(h.sampleIds, ['long', 'exact', 'short', 'q-only']);
});

test('encodeSample tokenises the full string f"{prompt}{answer}{eos}" as nanoVLM (SmolLM2)', needsShared('data', 'tokenizers', 'smollm2', 'tokenizer.json'), () => {
  const tok = new HFTokenizerAdapter(join(DATA, 'tokenizers', 'smollm2'));
  const prompt = vqaPrompt('What is this?');
  const { ids, questionLength } = encodeSample(tok, prompt, 'a cat');
  assert.deepEqual(ids, tok.encode(`${prompt}a cat<|endoftext|>`));
  assert.equal(ids[ids.length - 1], 0);
  assert.equal(questionLength, 8); // [17872, 42, 1812, 314, 451, 47, 19842, 42] (README reference ids)
  assert.deepEqual(ids.slice(0, 8), [17872, 42, 1812, 314, 451, 47, 19842, 42]);
  // the answer follows "Answer:" without a space, as in v0.1: 'a' and ' cat' tokens then eos
  assert.equal(tok.decode(ids.slice(8)), 'a cat<|endoftext|>');
});

test('encodeSample with the bytes tokenizer: bytes + offset, eos id 0 at the end', () => {
  const tok = new BytesTokenizer();
  const { ids, questionLength } = encodeSample(tok, 'Q: A:', 'x');
  assert.deepEqual(ids, [...'Q: A:x'].map((c) => c.charCodeAt(0) + 1).concat([0]));
  assert.equal(questionLength, 5);
});

test('toTensors: shapes and int32 dtypes', async () => {
  await useTestBackend();
  const h = collate([{ id: 'a', pixels: px(2).fill(0.5), ids: [3, 4, 5], questionLength: 1 }], { maxLength: 4, padTokenId: 0, imageSize: 2 });
  const before = tf.memory().numTensors;
  const t = toTensors(h);
  assert.deepEqual(t.images.shape, [1, 3, 2, 2]);
  assert.deepEqual(t.inputIds.shape, [1, 4]);
  assert.equal(t.inputIds.dtype, 'int32');
  assert.equal(t.targets.dtype, 'int32');
  assert.equal(t.attentionMask.dtype, 'int32');
  assert.deepEqual(Array.from(t.targets.dataSync()), [IGNORE, 4, 5, IGNORE]); // question [3], answer [4, 5]
  tf.dispose(Object.values(t));
  assert.equal(tf.memory().numTensors, before);
});
