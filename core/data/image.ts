// Image decoding and nanoVLM's image transform.
// nanoVLM v0.1 (data/processors.py): PIL image -> .convert('RGB') -> torchvision
// Resize((s, s)) -> ToTensor(). On a PIL image, torchvision's Resize calls PIL
// `Image.resize((s, s), BILINEAR)`, i.e. PIL's separable resampler (libImaging/Resample.c):
// a triangle filter stretched by the scale factor when downscaling (antialiasing), 8-bit
// fixed-point coefficients (PRECISION_BITS = 22), horizontal pass first (rounded to uint8), then
// the vertical pass. `pilResize` below is a line-by-line port of that code, so the default
// resampler reproduces nanoVLM's pixels exactly. `convert('RGB')` drops alpha (no blending with a
// background) and replicates gray; we do the same with sharp (removeAlpha + sRGB).
import sharp, { type Metadata, type Sharp } from 'sharp';

/** A sample whose image cannot be used (undecodable, empty, too many pixels): the loader skips it. */
export class BadSampleError extends Error {
  constructor(
    message: string,
    readonly sampleId?: string,
  ) {
    super(message);
    this.name = 'BadSampleError';
  }
}

export const DEFAULT_MAX_PIXELS = 64 * 1024 * 1024;

export interface RGBImage {
  data: Uint8Array; // [H, W, 3] row-major
  width: number;
  height: number;
}

function describe(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0];
}

/** Decode any format sharp reads into 8-bit RGB (alpha dropped, gray replicated). */
export async function decodeRGB(bytes: Uint8Array, opts: { maxPixels?: number; id?: string } = {}): Promise<RGBImage> {
  const id = opts.id ?? 'image';
  if (!bytes || bytes.length === 0) throw new BadSampleError(`${id}: the image is empty (0 bytes)`, opts.id);
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  let img: Sharp;
  let meta: Metadata;
  try {
    img = sharp(bytes, { limitInputPixels: maxPixels, failOn: 'error' });
    meta = await img.metadata();
  } catch (e) {
    throw decodeError(e, id, maxPixels, opts.id);
  }
  const w = meta.width ?? 0;
  const h = meta.height ?? 0;
  if (w * h > maxPixels)
    throw new BadSampleError(`${id}: the image is ${w}x${h} = ${w * h} pixels, above the cap of ${maxPixels} (decompression bomb?); raise max_pixels if it is genuine`, opts.id);
  try {
    const { data, info } = await img.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`expected 3 channels after conversion, got ${info.channels}`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (e) {
    throw decodeError(e, id, maxPixels, opts.id);
  }
}

/** sharp's error -> a BadSampleError saying what is wrong with the image */
export function decodeError(e: unknown, name: string, maxPixels: number, id?: string): BadSampleError {
  if (/pixel limit/i.test(describe(e)))
    return new BadSampleError(`${name}: the image exceeds the pixel cap of ${maxPixels} (decompression bomb?); raise max_pixels if it is genuine`, id);
  return new BadSampleError(`${name}: cannot decode the image (${describe(e)})`, id);
}

// ---- PIL's bilinear resampler (Pillow libImaging/Resample.c, 8 bits per channel) ----------------
const PRECISION_BITS = 32 - 8 - 2;

function bilinearFilter(x: number): number {
  if (x < 0) x = -x;
  return x < 1 ? 1 - x : 0;
}

/** Pillow's bicubic_filter (a = -0.5), support 2 (libImaging/Resample.c) */
function bicubicFilter(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** Pillow's resampling filters: the kernel and its support at scale 1 */
export const PIL_FILTERS = {
  bilinear: { support: 1.0, fn: bilinearFilter },
  bicubic: { support: 2.0, fn: bicubicFilter },
} as const;
export type PilFilter = keyof typeof PIL_FILTERS;

/** precompute_coeffs + normalize_coeffs_8bpc: per output pixel its first input index, tap count and integer weights. */
export function pilCoeffs(
  inSize: number,
  outSize: number,
  filter: PilFilter = 'bilinear',
): { bounds: Int32Array; ksize: number; kk: Int32Array; weights: Float64Array } {
  const { support: support0, fn } = PIL_FILTERS[filter];
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = support0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const weights = new Float64Array(outSize * ksize);
  const bounds = new Int32Array(outSize * 2);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = fn((x + xmin - center + 0.5) * ss);
      weights[xx * ksize + x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) if (ww !== 0) weights[xx * ksize + x] /= ww;
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  const kk = new Int32Array(weights.length);
  for (let i = 0; i < weights.length; i++) {
    const v = weights[i] * (1 << PRECISION_BITS);
    kk[i] = v < 0 ? Math.trunc(-0.5 + v) : Math.trunc(0.5 + v);
  }
  return { bounds, ksize, kk, weights };
}

function clip8(v: number): number {
  if (v >= 1 << PRECISION_BITS << 8) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / (1 << PRECISION_BITS));
}

/** PIL `Image.resize((outW, outH), BILINEAR | BICUBIC)` of an RGB image (exact, integer arithmetic as Pillow). */
export function pilResize(img: RGBImage, outW: number, outH: number, filter: PilFilter = 'bilinear'): RGBImage {
  const { width: inW, height: inH } = img;
  const needH = outW !== inW;
  const needV = outH !== inH;
  if (!needH && !needV) return { data: img.data.slice(), width: inW, height: inH };
  const half = 1 << (PRECISION_BITS - 1);
  const vert = pilCoeffs(inH, outH, filter);
  // rows of the source the vertical pass uses
  const yFirst = vert.bounds[0];
  const yLast = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
  let src = img.data;
  let srcW = inW;
  let rowOffset = 0; // bounds_vert are shifted by yFirst after a horizontal pass
  if (needH) {
    const hor = pilCoeffs(inW, outW, filter);
    const rows = needV ? yLast - yFirst : inH;
    const y0 = needV ? yFirst : 0;
    const tmp = new Uint8Array(rows * outW * 3);
    for (let yy = 0; yy < rows; yy++) {
      const inRow = (yy + y0) * inW * 3;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = hor.bounds[xx * 2];
        const xmax = hor.bounds[xx * 2 + 1];
        const k = xx * hor.ksize;
        let s0 = half, s1 = half, s2 = half;
        for (let x = 0; x < xmax; x++) {
          const p = inRow + (x + xmin) * 3;
          const w = hor.kk[k + x];
          s0 += src[p] * w;
          s1 += src[p + 1] * w;
          s2 += src[p + 2] * w;
        }
        const o = (yy * outW + xx) * 3;
        tmp[o] = clip8(s0);
        tmp[o + 1] = clip8(s1);
        tmp[o + 2] = clip8(s2);
      }
    }
    src = tmp;
    srcW = outW;
    rowOffset = needV ? yFirst : 0;
    if (!needV) return { data: tmp, width: outW, height: inH };
  }
  const out = new Uint8Array(outH * srcW * 3);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = vert.bounds[yy * 2] - rowOffset;
    const ymax = vert.bounds[yy * 2 + 1];
    const k = yy * vert.ksize;
    for (let xx = 0; xx < srcW; xx++) {
      let s0 = half, s1 = half, s2 = half;
      for (let y = 0; y < ymax; y++) {
        const p = ((y + ymin) * srcW + xx) * 3;
        const w = vert.kk[k + y];
        s0 += src[p] * w;
        s1 += src[p + 1] * w;
        s2 += src[p + 2] * w;
      }
      const o = (yy * srcW + xx) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return { data: out, width: srcW, height: outH };
}

/** torchvision ToTensor (+ optional Normalize): HWC uint8 -> CHW float32 in [0,1] (or (x-mean)/std). */
export function toCHW(img: RGBImage, mean?: number[] | null, std?: number[] | null): Float32Array {
  const { width: W, height: H, data } = img;
  const out = new Float32Array(3 * H * W);
  const plane = H * W;
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      let v = data[i * 3 + c] / 255;
      if (mean && std) v = (v - mean[c]) / std[c];
      out[c * plane + i] = v;
    }
  }
  return out;
}
