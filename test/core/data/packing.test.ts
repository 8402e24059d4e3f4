// Packing (core/data/packing.ts) against nanoVLM HEAD's own ConstantLengthDataset knapsack
// (test/core/model/fixtures/head-tiny/packing.json: HEAD's bins for given lengths and image counts; HEAD
// shuffles its bins with Python's random, so the bins are compared, not their order).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { balancedGreedyKnapsack, packSamples } from '../../../core/data/packing.ts';
import { mulberry32 } from '../../../core/rng.ts';

const HEAD = join(import.meta.dirname, '..', 'model', 'fixtures', 'head-tiny');
const packing = JSON.parse(readFileSync(join(HEAD, 'packing.json'), 'utf8'));
const canon = (groups: number[][]) => groups.map((g) => g.join(',')).sort();

test("balanced greedy knapsack: exactly HEAD's bins (contents and order within each bin)", () => {
  assert.equal(packing.cases.length, 2);
  for (const c of packing.cases) {
    const items = c.lengths.map((length: number, i: number) => ({ length, images: c.image_counts[i] }));
    const ours = balancedGreedyKnapsack(items, c.seq_length, { delta: c.delta, maxImagesPerKnapsack: c.max_images_per_knapsack, rng: mulberry32(1) });
    assert.deepEqual(canon(ours), canon(c.groups));
    // every item once; no bin over L; the image limit holds except for a lone item that exceeds it
    assert.deepEqual(ours.flat().sort((a, b) => a - b), items.map((_: unknown, i: number) => i));
    for (const g of ours) {
      assert.ok(g.reduce((s, i) => s + c.lengths[i], 0) <= c.seq_length);
      const im = g.reduce((s, i) => s + c.image_counts[i], 0);
      assert.ok(im <= c.max_images_per_knapsack || g.length === 1, `bin ${g}: ${im} images`);
    }
  }
  // the second case is one where the image limit opens bins beyond ceil(total / L) + delta
  const c = packing.cases[1];
  const total = c.lengths.reduce((a: number, b: number) => a + b, 0);
  assert.ok(c.groups.length > Math.ceil(total / c.seq_length) + c.delta);
  // without an rng the bins come in fill order; with one, a permutation of them
  const items = c.lengths.map((length: number, i: number) => ({ length, images: c.image_counts[i] }));
  const plain = balancedGreedyKnapsack(items, c.seq_length, { maxImagesPerKnapsack: 3 });
  assert.deepEqual(canon(plain), canon(c.groups));
  assert.notDeepEqual(balancedGreedyKnapsack(items, c.seq_length, { maxImagesPerKnapsack: 3, rng: mulberry32(5) }), plain);
});

test('packSamples: separators (pad, mask 0, label -100), skipped samples, concatenation in bin order', () => {
  const sample = (n: number, images: number, base: number) => ({
    inputIds: Array.from({ length: n }, (_, i) => base + i),
    labels: Array.from({ length: n }, (_, i) => (i % 2 ? base + i : -100)),
    attentionMask: new Array(n).fill(1),
    images: Array.from({ length: images }, (_, i) => `img${base}.${i}`),
  });
  const samples = [sample(5, 1, 100), sample(3, 0, 200), sample(9, 1, 300), sample(2, 5, 400), sample(4, 2, 500)];
  const { packed, skipped, segments } = packSamples(samples, { seqLength: 12, padTokenId: 0, maxSampleLength: 9, delta: 0 });
  assert.equal(skipped, 2); // 9 tokens >= max_sample_length 9; 5 images > 4
  assert.deepEqual(segments.flat().sort((a, b) => a - b), [4, 5, 6]); // lengths + 1 separator
  for (const p of packed) {
    assert.ok(p.inputIds.length <= 12);
    assert.equal(p.labels.length, p.inputIds.length);
    assert.equal(p.attentionMask.length, p.inputIds.length);
  }
  const all = packed.flatMap((p) => p.inputIds);
  for (const [base, n] of [[100, 5], [200, 3], [500, 4]]) {
    const at = all.indexOf(base);
    assert.deepEqual(all.slice(at, at + n + 1), [...Array.from({ length: n }, (_, i) => base + i), 0], `sample ${base} then the separator`);
  }
  const withSep = packed.find((p) => p.inputIds.includes(100))!;
  const sep = withSep.inputIds.indexOf(104) + 1;
  assert.equal(withSep.attentionMask[sep], 0);
  assert.equal(withSep.labels[sep], -100);
  assert.deepEqual(packed.flatMap((p) => p.images).sort(), ['img100.0', 'img500.0', 'img500.1']);
});

test("collateChat: HEAD's VQACollator on the fixture's samples gives HEAD's batch (ids, mask, labels, flat tiles)", async () => {
  const { collateChat } = await import('../../../core/data/chat-collator.ts');
  const { readSafetensors } = await import('../../../core/weights/safetensors.ts');
  const tz = JSON.parse(readFileSync(join(HEAD, 'tokenization.json'), 'utf8'));
  const cfg = JSON.parse(readFileSync(join(HEAD, 'config.json'), 'utf8'));
  const inp = readSafetensors(join(HEAD, 'inputs.safetensors')).tensors;
  const nums = (n: string) => Array.from(inp.get(n)!.data as BigInt64Array, Number);
  const S = cfg.vit_img_size;
  const px = 3 * S * S;
  const all = inp.get('images')!.data as Float32Array;
  const perImage = nums('tiles_per_image');
  const perSample = nums('images_per_sample');
  let img = 0;
  let tile = 0;
  const samples = tz.samples.map((s: { input_ids: number[]; labels: number[] }, i: number) => {
    const tiles = perImage.slice(img, img + perSample[i]).reduce((a, b) => a + b, 0);
    const out = { id: `s${i}`, inputIds: s.input_ids, labels: s.labels, tiles: all.slice(tile * px, (tile + tiles) * px), tileCount: tiles, imageCount: perSample[i] };
    img += perSample[i];
    tile += tiles;
    return out;
  });
  const b = collateChat(samples, { maxLength: cfg.lm_max_length, padTokenId: tz.pad_token_id, imageSize: S });
  assert.deepEqual(Array.from(b.inputIds), nums('input_ids'));
  assert.deepEqual(Array.from(b.attentionMask), nums('attention_mask'));
  assert.deepEqual(Array.from(b.targets), nums('targets'));
  assert.deepEqual(b.images, all);
  assert.equal(b.imageCount, inp.get('images')!.shape[0]);
  assert.deepEqual(b.imagesPerSample, perSample);
  // too long: dropped, as HEAD; a sample without images adds no tile
  const short = collateChat([{ ...samples[0], inputIds: [1, 2, 3], labels: [2, 3, -100], tiles: new Float32Array(0), tileCount: 0, imageCount: 0 }, samples[1]], { maxLength: 99, padTokenId: 2, imageSize: S });
  assert.deepEqual(short.dropped, ['s1']);
  assert.equal(short.batchSize, 1);
  assert.equal(short.imageCount, 0);
  assert.deepEqual(Array.from(short.inputIds.slice(-3)), [1, 2, 3]);
});
