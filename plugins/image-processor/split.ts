// nanoVLM HEAD's image processor (4e0c096, data/processors.py get_image_processor and
// data/custom_transforms.py):
//   DynamicResize(tile, max_img_size, resize_to_max_side_len)  bicubic (PIL, on the PIL image) so
//     that both sides are multiples of the tile size, the long side max_img_size (or, without
//     resize_to_max_side_len, its own length rounded up to a multiple of the tile, at most max_img_size)
//   -> ToTensor  -> GlobalAndSplitImages(tile): the tiles of the grid, row-major
//     ([n_h * n_w, 3, tile, tile], einops 'b c (nh ph) (nw pw) -> (b nh nw) c ph pw'), preceded by a
//     global view (the whole resized image resized to tile x tile by torchvision's tensor resize:
//     bilinear, align_corners False) unless the grid is 1 x 1.
// The global view's resize antialiases from torchvision 0.17 on (and did not before): `global_antialias`.
// The token layout of the text that goes with the tiles is core/data/image-string.ts (get_image_string).
import { definePlugin } from 'nanovlm-ts/plugin-api';
import { UserError } from 'nanovlm-ts/plugin-api';
import { DEFAULT_MAX_PIXELS, decodeRGB, pilCoeffs, pilResize, toCHW } from '../../core/data/image.ts';
import type { ImageProcessor, ImageTiles } from 'nanovlm-ts/plugin-api';

/** DynamicResize._get_new_hw: the resized [h, w], both multiples of `tile` */
export function dynamicResizeHW(h: number, w: number, tile: number, maxSide: number, toMaxSide: boolean): [number, number] {
  const [long, short] = w >= h ? [w, h] : [h, w];
  const targetLong = toMaxSide ? maxSide : Math.min(maxSide, Math.ceil(long / tile) * tile);
  const scale = targetLong / long;
  const targetShort = Math.max(Math.ceil((short * scale) / tile) * tile, tile);
  return w >= h ? [targetShort, targetLong] : [targetLong, targetShort];
}

/** SplitImage: CHW [3, H, W] -> tiles [n_h * n_w, 3, p, p] in row-major grid order */
export function splitTiles(chw: Float32Array, H: number, W: number, p: number): Float32Array {
  const nh = H / p;
  const nw = W / p;
  const out = new Float32Array(nh * nw * 3 * p * p);
  for (let i = 0; i < nh; i++)
    for (let j = 0; j < nw; j++)
      for (let c = 0; c < 3; c++)
        for (let y = 0; y < p; y++) {
          const src = c * H * W + (i * p + y) * W + j * p;
          out.set(chw.subarray(src, src + p), (((i * nw + j) * 3 + c) * p + y) * p);
        }
  return out;
}

/**
 * torchvision's tensor resize of CHW [3, H, W] to [3, S, S], bilinear: without antialias,
 * torch's upsample_bilinear2d (align_corners False: source = (dst + 0.5) * in / out - 0.5, clamped
 * at 0); with antialias, _upsample_bilinear2d_aa (a triangle filter stretched by the scale, PIL's
 * weights without the 8-bit rounding).
 */
export function tensorResizeBilinear(chw: Float32Array, H: number, W: number, S: number, antialias: boolean): Float32Array {
  const out = new Float32Array(3 * S * S);
  if (antialias) {
    const tmp = new Float32Array(3 * H * S); // horizontal pass first
    const hor = pilCoeffs(W, S);
    const ver = pilCoeffs(H, S);
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < S; x++) {
          const [x0, n] = [hor.bounds[2 * x], hor.bounds[2 * x + 1]];
          let acc = 0;
          for (let k = 0; k < n; k++) acc += chw[c * H * W + y * W + x0 + k] * hor.weights[x * hor.ksize + k];
          tmp[c * H * S + y * S + x] = acc;
        }
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < S; y++)
        for (let x = 0; x < S; x++) {
          const [y0, n] = [ver.bounds[2 * y], ver.bounds[2 * y + 1]];
          let acc = 0;
          for (let k = 0; k < n; k++) acc += tmp[c * H * S + (y0 + k) * S + x] * ver.weights[y * ver.ksize + k];
          out[c * S * S + y * S + x] = acc;
        }
    return out;
  }
  const src = (dst: number, inSize: number) => {
    const s = Math.fround(Math.fround(inSize / S) * (dst + 0.5) - 0.5);
    return s < 0 ? 0 : s;
  };
  for (let y = 0; y < S; y++) {
    const sy = src(y, H);
    const y0 = Math.floor(sy);
    const y1 = y0 < H - 1 ? y0 + 1 : y0;
    const ly = sy - y0;
    for (let x = 0; x < S; x++) {
      const sx = src(x, W);
      const x0 = Math.floor(sx);
      const x1 = x0 < W - 1 ? x0 + 1 : x0;
      const lx = sx - x0;
      for (let c = 0; c < 3; c++) {
        const b = c * H * W;
        const top = (1 - lx) * chw[b + y0 * W + x0] + lx * chw[b + y0 * W + x1];
        const bottom = (1 - lx) * chw[b + y1 * W + x0] + lx * chw[b + y1 * W + x1];
        out[c * S * S + y * S + x] = (1 - ly) * top + ly * bottom;
      }
    }
  }
  return out;
}

export interface SplitOptions {
  tile: number;
  maxSize: number;
  resizeToMaxSide: boolean;
  globalAntialias: boolean;
  maxPixels?: number;
}

export class SplitProcessor implements ImageProcessor {
  readonly size: number;
  /** a grid of at most n x n tiles (n = ceil(max_size / tile)), plus the global view when n > 1 */
  readonly maxTiles: number;
  constructor(private o: SplitOptions) {
    this.size = o.tile;
    const n = Math.ceil(o.maxSize / o.tile);
    this.maxTiles = n * n + (n > 1 ? 1 : 0);
  }

  /** [global view ;] tiles as [n, 3, tile, tile] and the grid [n_h, n_w] */
  async processTiles(image: Uint8Array, id?: string): Promise<ImageTiles> {
    const p = this.o.tile;
    const rgb = await decodeRGB(image, { maxPixels: this.o.maxPixels ?? DEFAULT_MAX_PIXELS, id });
    const [H, W] = dynamicResizeHW(rgb.height, rgb.width, p, this.o.maxSize, this.o.resizeToMaxSide);
    const chw = toCHW(pilResize(rgb, W, H, 'bicubic')); // [3, H, W] in [0, 1]
    const grid: [number, number] = [H / p, W / p];
    const tiles = splitTiles(chw, H, W, p); // [n_h * n_w, 3, p, p]
    if (grid[0] === 1 && grid[1] === 1) return { tiles, count: 1, grid };
    const n = grid[0] * grid[1] + 1;
    const out = new Float32Array(n * 3 * p * p);
    out.set(tensorResizeBilinear(chw, H, W, p, this.o.globalAntialias), 0);
    out.set(tiles, 3 * p * p);
    return { tiles: out, count: n, grid };
  }

  async process(_image: Uint8Array, id?: string): Promise<Float32Array> {
    throw new UserError(`${id ?? 'image'}: the split image processor makes several tiles per image (processTiles); this path takes one image of one tile`, {
      hint: 'use image_processor resize here, or a pipeline that places image tokens in the text (nanoVLM HEAD format)',
    });
  }
}

export default definePlugin({
  kind: 'image-processor',
  name: 'split',
  // nanoVLM HEAD's get_image_processor(max_img_size, vit_img_size, resize_to_max_side_len)
  nanovlm: { head: { config: { vit_img_size: 'size', max_img_size: 'max_size', resize_to_max_side_len: 'resize_to_max_side' } } },
  description: "nanoVLM HEAD's processor: bicubic resize to multiples of the tile (long side max_size), a global view then the tiles of the grid, [0,1] CHW float32",
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      size: { type: ['integer', 'null'], minimum: 1, default: null, description: "tile side in pixels (vit_img_size); null = the vision encoder's image size" },
      max_size: { type: 'integer', minimum: 1, default: 2048, description: 'max_img_size: the long side after resizing' },
      resize_to_max_side: { type: 'boolean', default: true, description: 'resize_to_max_side_len: the long side becomes max_size (up or down); false = the long side rounded up to a multiple of the tile, at most max_size' },
      global_antialias: { type: 'boolean', default: false, description: "antialias the global view's resize (torchvision >= 0.17 does; the reference fixture was made with torchvision 0.14, which does not)" },
      max_pixels: { type: 'integer', minimum: 1, default: DEFAULT_MAX_PIXELS, description: 'reject images with more pixels than this (decompression bombs); such samples are skipped and counted' },
    },
  },
  create(o, ctx) {
    const opt = o as { size: number | null; max_size: number; resize_to_max_side: boolean; global_antialias: boolean; max_pixels: number };
    const tile = opt.size ?? ctx.built?.vision?.imageSize;
    if (!tile)
      throw new UserError('the tile size is unknown', { where: { yamlPath: `${ctx.yamlPath}.size` }, hint: 'set size, or build the image processor after a vision encoder' });
    if (opt.max_size < tile)
      throw new UserError(`max_size ${opt.max_size} is smaller than the tile size ${tile}`, { where: { yamlPath: `${ctx.yamlPath}.max_size` }, hint: 'max_size must be at least the tile size' });
    return new SplitProcessor({ tile, maxSize: opt.max_size, resizeToMaxSide: opt.resize_to_max_side, globalAntialias: opt.global_antialias, maxPixels: opt.max_pixels });
  },
});
