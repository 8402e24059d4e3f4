// nanoVLM HEAD's image splitting (plugins/image-processor/split.ts) and image-token layout
// (core/data/image-string.ts) against what HEAD's own code produced for the head-tiny fixture
// (test/core/model/fixtures/head-tiny: raw pictures -> the flat tile tensor, grids, chat texts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { readSafetensors } from '../../../core/weights/safetensors.ts';
import { dynamicResizeHW, SplitProcessor } from '../../../plugins/image-processor/split.ts';
import splitPlugin from '../../../plugins/image-processor/split.ts';
import { imageString, HEAD_IMAGE_TOKENS, NANOVLM_HEAD_EXTRA_TOKENS } from '../../../core/data/image-string.ts';
import { pilCoeffs } from '../../../core/data/image.ts';
import { createRegistry } from '../../../core/registry.ts';
import { UserError } from '../../../core/errors.ts';

const HEAD = join(import.meta.dirname, '..', 'model', 'fixtures', 'head-tiny');
const cfg = JSON.parse(readFileSync(join(HEAD, 'config.json'), 'utf8'));
const inputs = readSafetensors(join(HEAD, 'inputs.safetensors')).tensors;
const expected = readSafetensors(join(HEAD, 'image-processor.safetensors')).tensors;
const ints = (n: string) => Array.from(inputs.get(n)!.data as BigInt64Array, Number);

/** raw_image.k ([H, W, 3] 0..255) as PNG bytes (lossless) */
async function png(k: number): Promise<Uint8Array> {
  const t = inputs.get(`raw_image.${k}`)!;
  const [H, W] = t.shape;
  return new Uint8Array(await sharp(Uint8Array.from(t.data as Int32Array), { raw: { width: W, height: H, channels: 3 } }).png().toBuffer());
}

function maxAbs(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test("split processor: HEAD's tiles (bicubic DynamicResize, global view, row-major tiles) and grids, image by image", async () => {
  const S = cfg.vit_img_size;
  const proc = new SplitProcessor({ tile: S, maxSize: cfg.max_img_size, resizeToMaxSide: cfg.resize_to_max_side_len, globalAntialias: false });
  const all = inputs.get('images')!.data as Float32Array; // [9, 3, S, S]
  const counts = ints('tiles_per_image');
  const grids = ints('image_grids');
  const px = 3 * S * S;
  let offset = 0;
  for (let k = 0; k < counts.length; k++) {
    const r = await proc.processTiles(await png(k), `raw_image.${k}`);
    assert.deepEqual(r.grid, [grids[2 * k], grids[2 * k + 1]], `image ${k} grid`);
    assert.equal(r.count, counts[k], `image ${k} tiles`);
    const want = all.subarray(offset * px, (offset + counts[k]) * px);
    // the tiles are PIL's bicubic uint8 / 255 (exact); the global view is a float bilinear resize
    assert.ok(maxAbs(r.tiles.subarray(r.count > 1 ? px : 0), want.subarray(r.count > 1 ? px : 0)) === 0, `image ${k}: tiles bit-identical`);
    assert.ok(maxAbs(r.tiles, want) <= 1e-6, `image ${k}: global view ${maxAbs(r.tiles, want)}`);
    offset += counts[k];
  }
  assert.equal(offset, inputs.get('images')!.shape[0]);
  assert.ok(counts.includes(7) && counts.includes(1), 'the fixture has a split image (global + 2 x 3) and unsplit ones');
});

test('global_antialias: the global view as torchvision >= 0.17 computes it', async () => {
  const S = cfg.vit_img_size;
  const name = [...expected.keys()].find((n) => n.startsWith('global_view_antialias.'))!;
  const k = Number(name.split('.')[1]);
  const proc = new SplitProcessor({ tile: S, maxSize: cfg.max_img_size, resizeToMaxSide: cfg.resize_to_max_side_len, globalAntialias: true });
  const r = await proc.processTiles(await png(k));
  const want = expected.get(name)!.data as Float32Array;
  assert.ok(maxAbs(r.tiles.subarray(0, 3 * S * S), want) <= 1e-6, `${maxAbs(r.tiles.subarray(0, 3 * S * S), want)}`);
  const plain = await new SplitProcessor({ tile: S, maxSize: cfg.max_img_size, resizeToMaxSide: false, globalAntialias: false }).processTiles(await png(k));
  assert.ok(maxAbs(plain.tiles.subarray(0, 3 * S * S), want) > 1e-3, 'antialiasing changes the global view');
});

test('DynamicResize sizes: multiples of the tile, long side max_size (or rounded up), never below one tile', () => {
  assert.deepEqual(dynamicResizeHW(48, 80, 32, 96, false), [64, 96]);
  assert.deepEqual(dynamicResizeHW(20, 30, 32, 96, false), [32, 32]);
  assert.deepEqual(dynamicResizeHW(20, 30, 32, 96, true), [64, 96]); // upscaled: the short side 20 * 96/30 = 64
  assert.deepEqual(dynamicResizeHW(300, 100, 512, 2048, true), [2048, 1024]);
  assert.deepEqual(dynamicResizeHW(1000, 3000, 512, 2048, false), [1024, 2048]);
  assert.deepEqual(dynamicResizeHW(5, 4000, 16, 64, false), [16, 64]);
  // PIL bicubic coefficients (a = -0.5): 4 -> 2 has negative lobes and sums to one
  const { weights, ksize, bounds } = pilCoeffs(4, 2, 'bicubic');
  assert.ok(Array.from(weights).some((w) => w < 0));
  for (let x = 0; x < 2; x++) {
    let s = 0;
    for (let j = 0; j < bounds[2 * x + 1]; j++) s += weights[x * ksize + j];
    assert.ok(Math.abs(s - 1) < 1e-12);
  }
});

test("get_image_string: the token layout HEAD's dataset put before the first user turn", () => {
  const tokenization = JSON.parse(readFileSync(join(HEAD, 'tokenization.json'), 'utf8'));
  const grids = ints('image_grids');
  const perSample = ints('images_per_sample');
  let k = 0;
  perSample.forEach((n, i) => {
    const g: [number, number][] = [];
    for (let j = 0; j < n; j++, k++) g.push([grids[2 * k], grids[2 * k + 1]]);
    const content: string = tokenization.samples[i].messages[0].content;
    const s = imageString(g, cfg.mp_image_token_length);
    assert.ok(content.startsWith(s) && !content.slice(s.length).includes('<|image|>'), `sample ${i}: ${content.slice(0, 120)}`);
  });
  assert.equal(imageString([[1, 1]], 2), '<|global_image|><|image|><|image|>');
  assert.equal(imageString([[1, 2]], 1), '<|global_image|><|image|><row_1_col_1><|image|><row_1_col_2><|image|>');
  assert.equal(imageString([[1, 1], [1, 1]], 1, { ...HEAD_IMAGE_TOKENS, global: null }), '<image: 0><row_1_col_1><|image|><image: 1><row_1_col_1><|image|>');
  assert.equal(Object.keys(NANOVLM_HEAD_EXTRA_TOKENS).length, cfg.extra_token_amount);
  assert.deepEqual(NANOVLM_HEAD_EXTRA_TOKENS, cfg.vlm_extra_tokens, "the same 66 tokens in the same order as HEAD's VLMConfig");
});

test('the plugin: options, tile size from the vision encoder, clear errors', async () => {
  const registry = createRegistry([splitPlugin]);
  const ctx = { recipe: {}, recipeDir: '.', yamlPath: 'model.image_processor', seed: 0, log: { info() {}, warn() {}, debug() {} }, built: { vision: { imageSize: 32 } } };
  const p = (await registry.create('image-processor', { use: 'split', max_size: 96 }, ctx as never)) as SplitProcessor;
  assert.equal(p.size, 32);
  await assert.rejects(p.process(await png(0), 'x.png'), (e: unknown) => e instanceof UserError && /several tiles per image/.test(e.message));
  await assert.rejects(Promise.resolve().then(() => registry.create('image-processor', { use: 'split', max_size: 16 }, ctx as never)), /max_size 16 is smaller than the tile size 32/);
});
