// multiple-choice `scoring: likelihood` and the generating evaluators' `padding: max_length`.
// `scoring: likelihood`: every option's score is its log-likelihood as the answer in
// the training format. Checked against an independent path (one option per forward pass, through
// model.loss: summed log-likelihood = -mean cross-entropy x counted tokens), on a random tiny model
// and synthetic multiple-choice questions; plus the helpers and the evaluator's result.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../../helpers/backend.ts';
import { installFastKernels } from '../../../core/kernels/index.ts';
import { createRegistry } from '../../../core/registry.ts';
import { buildModel } from '../../../core/weights/model-folder.ts';
import { collate, encodeSample, toTensors } from '../../../core/data/collator.ts';
import { vqaPrompt } from '../../../core/data/prompt.ts';
import type { VisionLanguageModel } from '../../../core/model/vlm.ts';
import type { Dataset, EvalResult, ImageProcessor, RunContext, Sample, Tokenizer } from '../../../core/types.ts';
import vision from '../../../plugins/vision/index.ts';
import projector from '../../../plugins/projector/index.ts';
import decoder from '../../../plugins/decoder/index.ts';
import tokenizers from '../../../plugins/tokenizer/index.ts';
import imageProcessors from '../../../plugins/image-processor/index.ts';
import evaluators from '../../../plugins/evaluator/index.ts';
import shapes from '../../../plugins/dataset/synthetic-shapes.ts';
import { answerAll, questionWithoutOptions, scoreOptionsAll } from '../../../plugins/evaluator/common.ts';
import { generateBatch } from '../../../core/generate.ts';
import { pickOption } from '../../../plugins/evaluator/multiple-choice.ts';

const registry = createRegistry([...vision, ...projector, ...decoder, ...tokenizers, ...imageProcessors, ...evaluators, shapes]);
const quiet = { info() {}, warn() {}, debug() {} };
const MODEL = {
  vision: { use: 'siglip-vit', hidden_dim: 32, inter_dim: 64, patch_size: 8, image_size: 32, n_heads: 4, n_blocks: 1 },
  projector: { use: 'pixel-shuffle', factor: 2 },
  decoder: { use: 'llama', hidden_dim: 48, inter_dim: 96, n_heads: 6, n_kv_heads: 2, n_blocks: 2, vocab_size: 257, max_length: 64 },
  tokenizer: { use: 'bytes' },
  image_processor: { use: 'resize' },
};
let model: VisionLanguageModel;
let tokenizer: Tokenizer;
let imageProcessor: ImageProcessor;
let samples: Sample[];

const list = (xs: Sample[]): Dataset => ({ name: 'list', size: async () => xs.length, async *samples() { yield* xs; } });
const context = (): RunContext =>
  ({ model, tokenizer, imageProcessor, log: quiet, signal: new AbortController().signal, registry, recipe: {}, seed: 0 }) as unknown as RunContext;

before(async () => {
  installFastKernels(await useTestBackend());
  const base = { recipe: { model: MODEL }, recipeDir: '/', seed: 0, log: quiet };
  model = await buildModel(MODEL as any, registry, base);
  const built = { vision: model.vision, projector: model.projector, decoder: model.decoder };
  tokenizer = await registry.create('tokenizer', MODEL.tokenizer, { ...base, yamlPath: 'model.tokenizer', built });
  imageProcessor = await registry.create('image-processor', MODEL.image_processor, { ...base, yamlPath: 'model.image_processor', built });
  const ds = await registry.create('dataset', { use: 'synthetic-shapes', split: 'test', count: 5, format: 'multiple-choice', image_size: 32, shuffle_options: true }, { ...base, yamlPath: 'data.eval[0]', role: 'eval' });
  samples = [];
  for await (const s of ds.samples()) samples.push(s);
});
after(() => model?.dispose());

test('questionWithoutOptions strips MMStar inline options; pickOption takes the best finite score', () => {
  assert.equal(questionWithoutOptions('Which digit is shown?\nOptions: A: 0, B: 4, C: 6, D: 1'), 'Which digit is shown?');
  assert.equal(questionWithoutOptions('Color?'), 'Color?');
  assert.equal(pickOption([-3, -1.5, -2, -9]), 'B');
  assert.equal(pickOption([-Infinity, -7, -7, -Infinity]), 'B'); // ties: the first
  assert.equal(pickOption([-Infinity, -Infinity]), null);
});

test('scoreOptionsAll = summed log-likelihood of each option + eos, one row at a time through model.loss', async () => {
  // batch 2 so that rows of several samples share a forward pass; one option made too long
  const withLong = samples.map((s, i) => (i === 3 ? { ...s, choices: [...s.choices!.slice(0, 3), 'x'.repeat(70)] } : s));
  const { scored, skipped } = await scoreOptionsAll(context(), 'test', list(withLong), { format: vqaPrompt, batchSize: 2 });
  assert.deepEqual(skipped, []);
  assert.equal(scored.length, 5);
  for (const [i, { sample, logLiks }] of scored.entries()) {
    assert.equal(logLiks.length, 4);
    const pixels = await imageProcessor.process(sample.image, sample.id);
    const prompt = vqaPrompt(questionWithoutOptions(sample.question));
    assert.ok(!prompt.includes('Options'), prompt);
    for (const [j, option] of sample.choices!.entries()) {
      if (i === 3 && j === 3) {
        assert.equal(logLiks[j], -Infinity); // longer than max_length: ignored by the collator, never picked
        continue;
      }
      const enc = encodeSample(tokenizer, prompt, option);
      const counted = enc.ids.length - enc.questionLength; // option tokens + eos
      const host = collate([{ id: sample.id, pixels, ...enc }], { maxLength: model.maxLength, padTokenId: tokenizer.padTokenId, imageSize: imageProcessor.size });
      const ce = tf.tidy(() => {
        const t = toTensors(host);
        return model.loss(model.forward(t.inputIds, t.images, t.attentionMask), t.targets).dataSync()[0];
      });
      const expected = -ce * counted;
      assert.ok(Math.abs(logLiks[j] - expected) <= 1e-4 * Math.abs(expected), `sample ${i} option ${j}: ${logLiks[j]} vs ${expected}`);
    }
  }
});

test('multiple-choice scoring: likelihood reports multiple-choice-likelihood, accuracy over the picked options, per category', async () => {
  const ctx = context();
  const evaluator = await registry.create('evaluator', { use: 'multiple-choice', scoring: 'likelihood', batch_size: 3 }, { recipe: {}, recipeDir: '/', yamlPath: 'eval.evaluators[0]', seed: 0, log: quiet });
  const r: EvalResult = await evaluator.evaluate(ctx, list(samples));
  const { scored } = await scoreOptionsAll(ctx, 'test', list(samples), { format: vqaPrompt, batchSize: 5 });
  const picked = scored.map((s) => pickOption(s.logLiks));
  assert.equal(r.evaluator, 'multiple-choice-likelihood');
  assert.equal(r.metrics.n, 5);
  assert.equal(r.metrics.accuracy, picked.filter((p, i) => p === samples[i].answer).length / 5); // batch size does not change the picks
  assert.ok(picked.every((p) => p !== null));
  const cats = new Set(samples.map((s) => s.category));
  assert.deepEqual(new Set(Object.keys(r.breakdown ?? {})), cats);
});

test('padding: max_length left-pads every prompt to max_length - 2 (a one-token answer + eos ends where training put it)', async () => {
  const ctx = context();
  const format = (q: string) => vqaPrompt(questionWithoutOptions(q)); // short prompts of different lengths
  const longest = Math.max(...samples.map((s) => tokenizer.encode(format(s.question)).length));
  assert.ok(longest < model.maxLength - 2, String(longest));
  // the length of the sequence the decoder sees at prefill (image tokens + padded prompt)
  const seen: number[] = [];
  const forward = model.decoder.forward.bind(model.decoder);
  model.decoder.forward = (x, o) => (seen.push(x.shape[1]), forward(x, o));
  try {
    const opts = { format, batchSize: 5, generate: { greedy: true, maxNewTokens: 2, stopAtEos: false } };
    const padded = await answerAll(ctx, 'test', list(samples), { ...opts, padTo: model.maxLength - 2 });
    const prefillPadded = seen[0];
    seen.length = 0;
    await answerAll(ctx, 'test', list(samples), opts);
    assert.equal(prefillPadded, model.numImageTokens + model.maxLength - 2);
    assert.equal(seen[0], model.numImageTokens + longest);
    // the padded answers equal one-prompt-at-a-time generation with that layout
    const T = model.maxLength - 2;
    for (const [i, s] of samples.entries()) {
      const ids = tokenizer.encode(format(s.question));
      const inputIds = new Int32Array(T).fill(tokenizer.padTokenId);
      inputIds.set(ids, T - ids.length);
      const attentionMask = new Int32Array(T).fill(1, T - ids.length);
      const images = await imageProcessor.process(s.image, s.id);
      const [out] = await generateBatch(model, { inputIds, attentionMask, images, batchSize: 1, seqLen: T, imageSize: imageProcessor.size }, { eosTokenId: tokenizer.eosTokenId, ...opts.generate });
      assert.equal(padded.answered[i].output, tokenizer.decode(out, { skipSpecialTokens: true }));
    }
    // the evaluators take the option
    seen.length = 0;
    const evaluator = await registry.create('evaluator', { use: 'exact-match', padding: 'max_length', batch_size: 5 }, { recipe: {}, recipeDir: '/', yamlPath: 'eval.evaluators[0]', seed: 0, log: quiet });
    assert.equal((await evaluator.evaluate(ctx, list(samples.map((s) => ({ ...s, question: questionWithoutOptions(s.question) }))))).metrics.n, 5);
    assert.equal(seen[0], model.numImageTokens + model.maxLength - 2);
  } finally {
    model.decoder.forward = forward;
  }
});
