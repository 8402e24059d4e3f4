// Image processing: the PIL-bilinear port (nanoVLM's Resize on PIL images), how far sharp's own
// resize is from it on real photos, RGB conversion, ToTensor / Normalize, and bad images.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { DATA, needsShared } from '../../helpers/shared.ts';
import { decodeRGB, pilCoeffs, pilResize, BadSampleError } from '../../../core/data/image.ts';
import resizePlugin, { ResizeProcessor, sharpResizeRGB } from '../../../plugins/image-processor/resize.ts';
import { UserError } from '../../../core/errors.ts';
import { floatBilinear, pngWithClaimedSize } from '../../helpers/pil-reference.ts';

const IMAGES = join(DATA, 'images');
const photo = (f: string) => new Uint8Array(readFileSync(join(IMAGES, f)));
function diff(a: Uint8Array, b: Uint8Array) {
  assert.equal(a.length, b.length);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > max) max = d;
    sum += d;
  }
  return { max, mean: sum / a.length };
}

test('PIL coefficients by hand: 4 -> 2 bilinear uses weights 3/7, 3/7, 1/7 (antialias support 2)', () => {
  const { bounds, weights, ksize } = pilCoeffs(4, 2);
  assert.deepEqual(Array.from(bounds), [0, 3, 1, 3]);
  const w0 = Array.from(weights.subarray(0, 3));
  const w1 = Array.from(weights.subarray(ksize, ksize + 3));
  [3 / 7, 3 / 7, 1 / 7].forEach((x, i) => assert.ok(Math.abs(w0[i] - x) < 1e-12));
  [1 / 7, 3 / 7, 3 / 7].forEach((x, i) => assert.ok(Math.abs(w1[i] - x) < 1e-12));
  // a 4x1 row [0, 70, 140, 210] -> [(0*3 + 70*3 + 140)/7, (70 + 140*3 + 210*3)/7] = [50, 160]
  const img = { data: Uint8Array.from([0, 0, 0, 70, 70, 70, 140, 140, 140, 210, 210, 210]), width: 4, height: 1 };
  assert.deepEqual(Array.from(pilResize(img, 2, 1).data), [50, 50, 50, 160, 160, 160]);
  // upscaling 2 -> 4 is plain linear interpolation with clamped edges: [0, 100] -> [0, 25, 75, 100]
  const up = pilResize({ data: Uint8Array.from([0, 0, 0, 100, 100, 100]), width: 2, height: 1 }, 4, 1);
  assert.deepEqual(Array.from(up.data).filter((_, i) => i % 3 === 0), [0, 25, 75, 100]);
});

test('PIL port vs an independent float64 reference on real photos: at most 1 level apart', needsShared('data', 'images'), async () => {
  for (const f of ['chelsea.png', 'rocket.jpg', 'camera.png']) {
    const rgb = await decodeRGB(photo(f));
    for (const S of [224, 32]) {
      const port = pilResize(rgb, S, S).data;
      // with Pillow's uint8 rounding between the passes: only fixed-point weight ties differ
      // (measured: max 1, mean <= 0.006)
      const d = diff(port, floatBilinear(rgb.data, rgb.width, rgb.height, S, S, true));
      assert.ok(d.max <= 1 && d.mean < 0.01, `${f} ${S}: ${JSON.stringify(d)}`);
      // without it (pure float): still never more than 1 level (measured mean <= 0.18)
      const e = diff(port, floatBilinear(rgb.data, rgb.width, rgb.height, S, S, false));
      assert.ok(e.max <= 1 && e.mean < 0.2, `${f} ${S}: ${JSON.stringify(e)}`);
    }
  }
});

test('sharp linear vs PIL bilinear on chelsea.png (numbers in docs/data.md)', needsShared('data', 'images', 'chelsea.png'), async () => {
  const buf = photo('chelsea.png'); // 451x300 RGB
  const ref224 = pilResize(await decodeRGB(buf), 224, 224).data;
  const ref32 = pilResize(await decodeRGB(buf), 32, 32).data;
  const d224 = diff(ref224, (await sharpResizeRGB(buf, 224, 'linear', 1e9)).data);
  const d32 = diff(ref32, (await sharpResizeRGB(buf, 32, 'linear', 1e9)).data);
  // measured: 224 -> max 2, mean 0.20; 32 -> max 4, mean 0.62 (levels of 255)
  assert.ok(d224.max <= 2 && d224.mean <= 0.21, JSON.stringify(d224));
  assert.ok(d32.max <= 4 && d32.mean <= 0.63, JSON.stringify(d32));
  // and linear is the closest sharp kernel (cubic / lanczos3 are further away)
  for (const k of ['cubic', 'lanczos3'] as const) assert.ok(diff(ref224, (await sharpResizeRGB(buf, 224, k, 1e9)).data).mean > d224.mean);
});

test('resize plugin: [3,S,S] float32 = uint8/255 of the PIL resize; size from the vision encoder', needsShared('data', 'images'), async () => {
  const p = (await resizePlugin.create({ size: null, resampler: 'pil', sharp_kernel: 'linear', mean: null, std: null, max_pixels: 1 << 26 } as any, { yamlPath: 'model.image_processor', built: { vision: { imageSize: 32 } } } as any)) as ResizeProcessor;
  assert.equal(p.size, 32);
  const buf = photo('coffee.png');
  const x = await p.process(buf, 'coffee');
  assert.equal(x.length, 3 * 32 * 32);
  const ref = pilResize(await decodeRGB(buf), 32, 32).data;
  for (let i = 0; i < 32 * 32; i++) for (let c = 0; c < 3; c++) assert.equal(x[c * 1024 + i], Math.fround(ref[i * 3 + c] / 255));
  await assert.rejects(
    Promise.resolve().then(() => resizePlugin.create({ size: null } as any, { yamlPath: 'model.image_processor' } as any)),
    (e: any) => e instanceof UserError && e.where.yamlPath === 'model.image_processor.size',
  );
});

test('grayscale -> 3 equal channels; RGBA -> alpha dropped without blending (PIL convert("RGB"))', needsShared('data', 'images', 'camera.png'), async () => {
  const p = new ResizeProcessor({ size: 16 });
  const g = await p.process(photo('camera.png'));
  for (let i = 0; i < 256; i++) assert.ok(g[i] === g[256 + i] && g[i] === g[512 + i]);
  // a 2x1 RGBA PNG: (200, 100, 50, alpha 0) and (10, 20, 30, alpha 128): RGB kept as stored
  const rgba = await sharp(Buffer.from([200, 100, 50, 0, 10, 20, 30, 128]), { raw: { width: 2, height: 1, channels: 4 } }).png().toBuffer();
  const dec = await decodeRGB(new Uint8Array(rgba));
  assert.deepEqual(Array.from(dec.data), [200, 100, 50, 10, 20, 30]);
});

test('mean/std normalisation: (x/255 - mean) / std per channel', async () => {
  const png = await sharp(Buffer.from([255, 0, 51]), { raw: { width: 1, height: 1, channels: 3 } }).png().toBuffer();
  const p = new ResizeProcessor({ size: 1, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
  const x = await p.process(new Uint8Array(png));
  assert.deepEqual(Array.from(x), [1, -1, Math.fround((0.2 - 0.5) / 0.5)].map((v) => Math.fround(v)));
});

test('bad images: zero bytes, garbage, decompression-bomb header, max_pixels -> BadSampleError with a clear message', async () => {
  const p = new ResizeProcessor({ size: 8 });
  await assert.rejects(p.process(new Uint8Array(0), 'a.png'), (e: any) => e instanceof BadSampleError && /a\.png: the image is empty \(0 bytes\)/.test(e.message));
  await assert.rejects(p.process(new TextEncoder().encode('definitely not an image'), 'b.png'), (e: any) => e instanceof BadSampleError && /b\.png: cannot decode the image/.test(e.message));
  const small = new Uint8Array(await sharp({ create: { width: 4, height: 4, channels: 3, background: '#808080' } }).png().toBuffer());
  const bomb = pngWithClaimedSize(small, 100000, 100000); // 10 gigapixels claimed
  await assert.rejects(p.process(bomb, 'bomb.png'), (e: any) => e instanceof BadSampleError && /bomb\.png: .*(pixel|100000x100000)/.test(e.message));
  const capped = new ResizeProcessor({ size: 8, maxPixels: 10 });
  await assert.rejects(capped.process(small, 'c.png'), (e: any) => e instanceof BadSampleError && /above the cap of 10|pixel cap of 10/.test(e.message));
  for (const r of ['sharp'] as const) {
    const q = new ResizeProcessor({ size: 8, resampler: r, maxPixels: 10 });
    await assert.rejects(q.process(small, 'd.png'), (e: any) => e instanceof BadSampleError && /d\.png/.test(e.message));
    await assert.rejects(q.process(new Uint8Array(0), 'e.png'), (e: any) => e instanceof BadSampleError && /0 bytes/.test(e.message));
  }
});
