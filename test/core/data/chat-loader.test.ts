// nanoVLM HEAD's data path in training (model.image_tokens: placeholders): the_cauldron Parquet with
// multi-image, multi-turn rows -> cauldron dataset -> BatchLoader (chat: every image split into tiles,
// ChatML through the chat template, loss on the answers) -> HEAD's collator. The batch must equal the
// one HEAD's own VQADataset + VQACollator built for the same samples (head-tiny fixture,
// inputs.safetensors, made by bench/reference/nanovlm_head.py). Then packing through the loader:
// HEAD's bins, separators, one flat tile tensor, and the block-diagonal segment ids.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRegistry } from '../../../core/registry.ts';
import builtins from '../../../plugins/index.ts';
import { BatchLoader, type LoaderPacking } from '../../../core/data/loader.ts';
import { readSafetensors } from '../../../core/weights/safetensors.ts';
import type { Dataset, ImageProcessor, Sample, Tokenizer } from '../../../core/types.ts';
import type { ChatBatch } from '../../../core/data/chat-collator.ts';
import { CAULDRON_FIELDS, writeParquet } from '../../helpers/parquet-writer.ts';
import { needsShared } from '../../helpers/shared.ts';
import { HEAD_TINY, headTinyConfig, headTinySamples, writeHeadTinyTokenizer } from '../../helpers/head-tiny.ts';
import { errors } from '../../../core/commands/compare.ts';

const quiet = { info() {}, warn() {}, debug() {} };
const skip = needsShared('data', 'tokenizers', 'smollm2', 'tokenizer.json');

async function headPieces(rows: { turns: { user: string; assistant: string }[]; images: Uint8Array[] }[]) {
  const cfg = headTinyConfig();
  const dir = mkdtempSync(join(tmpdir(), 'vlm-chat-loader-'));
  const registry = createRegistry(builtins);
  const base = { recipe: {}, recipeDir: dir, seed: 0, log: quiet, built: {} };
  const tokenizer = (await registry.create('tokenizer', { use: 'hf', from: writeHeadTinyTokenizer(join(dir, 'tok')), chat_template: cfg.lm_chat_template, extra_special_tokens: cfg.vlm_extra_tokens }, { ...base, yamlPath: 'model.tokenizer' })) as Tokenizer;
  const imageProcessor = (await registry.create('image-processor', { use: 'split', size: cfg.vit_img_size, max_size: cfg.max_img_size, resize_to_max_side: cfg.resize_to_max_side_len }, { ...base, yamlPath: 'model.image_processor' })) as ImageProcessor;
  const file = join(dir, 'chat.parquet');
  writeParquet(file, CAULDRON_FIELDS, rows.map((r) => ({ images: r.images.map((bytes) => ({ bytes, path: null })), texts: r.turns.map((t) => ({ ...t, source: 'head-tiny' })) })));
  const dataset = (await registry.create('dataset', { use: 'cauldron', path: file, shuffle: false }, { ...base, yamlPath: 'data.train[0]', role: 'train' })) as Dataset;
  return { cfg, tokenizer, imageProcessor, dataset };
}

const nums = (t: { data: unknown }) => Array.from(t.data as BigInt64Array, Number);

/** the one batch the loader makes of `dataset` (the head-tiny samples) equals HEAD's inputs.safetensors */
async function assertHeadBatch({ cfg, tokenizer, imageProcessor, dataset }: Awaited<ReturnType<typeof headPieces>>) {
  const loader = new BatchLoader({ datasets: [dataset], tokenizer, imageProcessor, batchSize: 2, maxLength: cfg.lm_max_length, seed: 0, chat: { imageTokenLength: cfg.mp_image_token_length, maxImagesPerExample: 4 } });
  const batches: ChatBatch[] = [];
  for await (const b of loader.epoch(0)) batches.push(b.batch as ChatBatch);
  assert.equal(batches.length, 1);
  const got = batches[0];
  const want = readSafetensors(join(HEAD_TINY, 'inputs.safetensors')).tensors;
  assert.deepEqual(Array.from(got.inputIds), nums(want.get('input_ids')!));
  assert.deepEqual(Array.from(got.attentionMask), nums(want.get('attention_mask')!));
  assert.deepEqual(Array.from(got.targets), nums(want.get('targets')!));
  assert.equal(got.imageCount, want.get('images')!.shape[0]); // 1 + 1 + (global + 2 x 3) tiles
  assert.ok(errors(got.images, want.get('images')!.data as Float32Array).maxAbs <= 1e-6, 'the flat tile tensor');
  assert.deepEqual(got.imagesPerSample, nums(want.get('images_per_sample')!));
}

test("chat data path: the_cauldron rows (2 images + 2 turns; 1 split image + 2 turns) -> the batch HEAD's VQADataset + VQACollator built", skip, async () => {
  const { cfg, tokenizer, imageProcessor, dataset } = await headPieces(await headTinySamples());
  await assertHeadBatch({ cfg, tokenizer, imageProcessor, dataset });
});

test("chat data path: the same samples as a user's folder (data.jsonl lines {images, turns}) -> the same batch HEAD built", skip, async () => {
  const samples = await headTinySamples();
  const { cfg, tokenizer, imageProcessor } = await headPieces(samples);
  const dir = mkdtempSync(join(tmpdir(), 'vlm-chat-folder-'));
  const lines = samples.map((s, i) => {
    const files = s.images.map((bytes, k) => {
      writeFileSync(join(dir, `s${i}-${k}.img`), bytes);
      return `s${i}-${k}.img`;
    });
    return JSON.stringify({ images: files, turns: s.turns });
  });
  writeFileSync(join(dir, 'data.jsonl'), lines.join('\n') + '\n');
  const registry = createRegistry(builtins);
  const dataset = (await registry.create('dataset', { use: 'folder', path: dir, shuffle: false }, { recipe: {}, recipeDir: dir, seed: 0, log: quiet, built: {}, yamlPath: 'data.train[0]', role: 'train' })) as Dataset;
  await assertHeadBatch({ cfg, tokenizer, imageProcessor, dataset });
  // a malformed chat line is a bad sample, counted, not a crash
  writeFileSync(join(dir, 'data.jsonl'), [...lines, JSON.stringify({ images: ['missing.png'], turns: samples[0].turns }), JSON.stringify({ images: [], turns: [{ user: 'no answer' }] })].join('\n') + '\n');
  const bad = (await registry.create('dataset', { use: 'folder', path: dir, shuffle: false }, { recipe: {}, recipeDir: dir, seed: 0, log: quiet, built: {}, yamlPath: 'data.train[0]', role: 'train' })) as Dataset;
  const problems: string[] = [];
  for await (const s of bad.samples()) if (s.problem) problems.push(s.problem);
  assert.deepEqual(problems, ['cannot read image missing.png: ENOENT', '"turns" must be a list of {"user": "...", "assistant": "..."} objects']);
});

test('chat data path: a sample without images has no tile (the vision encoder is skipped); more than max_images_per_example images: left out', skip, async () => {
  const [two, one] = await headTinySamples();
  const { cfg, tokenizer, imageProcessor, dataset } = await headPieces([{ turns: [{ user: 'Say hi.', assistant: 'Hi.' }], images: [] }, two, one]);
  const loader = new BatchLoader({ datasets: [dataset], tokenizer, imageProcessor, batchSize: 3, maxLength: cfg.lm_max_length, seed: 0, chat: { imageTokenLength: cfg.mp_image_token_length, maxImagesPerExample: 1 } });
  const got: ChatBatch[] = [];
  for await (const b of loader.epoch(0)) got.push(b.batch as ChatBatch);
  assert.equal(got.length, 1);
  assert.equal(got[0].batchSize, 2); // the 2-image sample is left out
  assert.deepEqual(got[0].imagesPerSample, [0, 1]);
  assert.equal(got[0].imageCount, 7);
  assert.equal(loader.stats().tooManyImages, 1);
  // the imageless row: no image token at all, its answer trained on
  const T = cfg.lm_max_length;
  const row0 = Array.from(got[0].inputIds.subarray(0, T));
  assert.ok(!row0.includes(tokenizer.tokenToId!('<|image|>')!));
  assert.equal(tokenizer.decode(Array.from(got[0].targets.subarray(0, T)).filter((t) => t !== -100)), 'Hi.<|im_end|>\n');
});

test("packing through the loader: HEAD's ConstantLengthDataset rows (separators, continuous rows, tiles in order) and block-diagonal segment ids", skip, async () => {
  const samples = await headTinySamples();
  // HEAD's knapsack spreads items over ceil(total / L) + 5 bins first: enough samples for rows to fill
  const short = Array.from({ length: 12 }, (_, i) => ({ turns: [{ user: `Say ${i}.`, assistant: `${i}.` }], images: [] as Uint8Array[] }));
  const rows = [...samples, ...short.slice(0, 6), ...samples, ...samples, ...short.slice(6), ...samples];
  const { cfg, tokenizer, imageProcessor, dataset } = await headPieces(rows);
  const chat = { imageTokenLength: cfg.mp_image_token_length, maxImagesPerExample: 4 };
  const L = 224; // two of the fixture's samples fit in one row
  const run = async (packing: LoaderPacking | null) => {
    const loader = new BatchLoader({ datasets: [dataset], tokenizer, imageProcessor, batchSize: 2, maxLength: L, seed: 3, dropLast: false, chat, packing });
    const out: ChatBatch[] = [];
    for await (const b of loader.epoch(0)) out.push(b.batch as ChatBatch);
    return out;
  };
  const single = await run(null);
  const packed = await run({ attention: 'nanovlm', maxSampleLength: 4096, maxImagesPerKnapsack: 18, bufferSequences: 8 });
  const ids = (bs: typeof single) => bs.flatMap((b) => b.sampleIds);
  assert.equal(ids(single).length, 20);
  // every sample once, fewer rows, less padding
  assert.deepEqual(ids(packed).flatMap((id) => id.split('+')).sort(), ids(single).sort());
  const rowsOf = (bs: typeof single) => bs.reduce((n, b) => n + b.batchSize, 0);
  assert.ok(rowsOf(packed) < rowsOf(single), `${rowsOf(packed)} packed rows vs ${rowsOf(single)}`);
  const pad = (bs: typeof single) => bs.reduce((n, b) => n + b.attentionMask.filter((m) => m === 0).length, 0) / (rowsOf(bs) * L);
  assert.ok(pad(packed) < pad(single));
  // the same tokens are trained on, and every tile is there
  const trained = (bs: typeof single) => bs.reduce((n, b) => n + b.targets.filter((t) => t !== -100).length, 0);
  assert.equal(trained(packed), trained(single));
  assert.equal(packed.reduce((n, b) => n + b.imageCount!, 0), single.reduce((n, b) => n + b.imageCount!, 0));
  // a packed row = its samples in order, each + a separator (pad id, mask 0, label -100), left padded
  const bi = packed.findIndex((b) => b.sampleIds[0].includes('+'));
  assert.ok(bi >= 0, 'a batch whose first row holds several samples');
  const b0 = packed[bi];
  const members = b0.sampleIds[0].split('+');
  const alone = single.flatMap((b) => b.sampleIds.map((id, r) => ({ id, ids: Array.from(b.inputIds.subarray(r * L, (r + 1) * L)).filter((_, t) => b.attentionMask[r * L + t]) })));
  const expect = members.flatMap((m) => [...alone.find((a) => a.id === m)!.ids, tokenizer.padTokenId]);
  assert.deepEqual(Array.from(b0.inputIds.subarray(L - expect.length, L)), expect);
  assert.equal(b0.segmentIds, undefined);
  // block-diagonal: the same rows, with segment ids 1, 2, ... (0 on separators and padding)
  const diag = await run({ attention: 'block-diagonal', maxSampleLength: 4096, maxImagesPerKnapsack: 18, bufferSequences: 8 });
  assert.deepEqual(diag.map((b) => Array.from(b.inputIds)), packed.map((b) => Array.from(b.inputIds)));
  const seg = Array.from(diag[bi].segmentIds!.subarray(0, L));
  let at = L - expect.length;
  members.forEach((m, k) => {
    const n = alone.find((a) => a.id === m)!.ids.length;
    assert.deepEqual(seg.slice(at, at + n), new Array(n).fill(k + 1), `segment ${k + 1}`);
    assert.equal(seg[at + n], 0, 'separator');
    at += n + 1;
  });
  assert.ok(seg.slice(0, L - expect.length).every((s) => s === 0));
  // max_images_per_knapsack 2: no row holds more than 2 images
  const one = await run({ attention: 'nanovlm', maxSampleLength: 4096, maxImagesPerKnapsack: 2, bufferSequences: 8 });
  for (const b of one) assert.ok(b.imagesPerSample.every((n) => n <= 2), String(b.imagesPerSample));
});

test('v0.1 samples (no chat) are unchanged: a Sample with images/turns still gives the first image + question', async () => {
  const s: Sample = { id: 'x', image: new Uint8Array([1]), question: 'q', answer: 'a', images: [new Uint8Array([1]), new Uint8Array([2])], turns: [{ user: 'q', assistant: 'a' }, { user: 'q2', assistant: 'b' }] };
  const { sampleProblem } = await import('../../../core/data/loader.ts');
  assert.equal(sampleProblem(s), null);
});
