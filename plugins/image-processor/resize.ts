// nanoVLM v0.1's image transform (data/processors.py): convert('RGB') -> Resize((s, s)) -> ToTensor,
// plus an optional Normalize(mean, std). Decoding (any format sharp reads) runs in sharp's thread
// pool; the default resampler is an exact port of PIL's bilinear resize (what torchvision's Resize
// does on PIL images), see core/data/image.ts. `resampler: sharp` resizes inside libvips instead
// (fewer main-thread cycles, pixels within a few levels of PIL's: numbers in docs/data.md).
import sharp from 'sharp';
import { definePlugin } from 'nanovlm-ts/plugin-api';
import { UserError } from 'nanovlm-ts/plugin-api';
import { BadSampleError, DEFAULT_MAX_PIXELS, decodeError, decodeRGB, pilResize, toCHW, type RGBImage } from '../../core/data/image.ts';
import type { ImageProcessor } from 'nanovlm-ts/plugin-api';

export type SharpKernel = 'nearest' | 'linear' | 'cubic' | 'mitchell' | 'lanczos2' | 'lanczos3' | 'mks2013' | 'mks2021';

export interface ResizeOptions {
  size: number;
  resampler?: 'pil' | 'sharp';
  sharpKernel?: SharpKernel;
  mean?: number[] | null;
  std?: number[] | null;
  maxPixels?: number;
}

/** sharp-only path: decode + RGB + resize in libvips (no shrink-on-load shortcut). */
export async function sharpResizeRGB(bytes: Uint8Array, size: number, kernel: SharpKernel, maxPixels: number, id?: string): Promise<RGBImage> {
  const name = id ?? 'image';
  if (!bytes || bytes.length === 0) throw new BadSampleError(`${name}: the image is empty (0 bytes)`, id);
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: maxPixels, failOn: 'error' })
      .removeAlpha()
      .toColourspace('srgb')
      .resize(size, size, { fit: 'fill', kernel, fastShrinkOnLoad: false })
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (e) {
    throw decodeError(e, name, maxPixels, id);
  }
}

export class ResizeProcessor implements ImageProcessor {
  readonly size: number;
  constructor(private o: ResizeOptions) {
    this.size = o.size;
  }

  async process(image: Uint8Array, id?: string): Promise<Float32Array> {
    const S = this.size;
    const maxPixels = this.o.maxPixels ?? DEFAULT_MAX_PIXELS;
    let rgb: RGBImage;
    if (this.o.resampler === 'sharp') rgb = await sharpResizeRGB(image, S, this.o.sharpKernel ?? 'linear', maxPixels, id);
    else rgb = pilResize(await decodeRGB(image, { maxPixels, id }), S, S);
    return toCHW(rgb, this.o.mean, this.o.std); // [3, S, S]
  }
}

export default definePlugin({
  kind: 'image-processor',
  name: 'resize',
  nanovlm: { config: { vit_img_size: 'size' } }, // nanoVLM v0.1's get_image_processor(vit_img_size)
  description: "nanoVLM's transform: any format -> RGB (alpha dropped) -> Resize((size, size)) bilinear as PIL/torchvision -> [0,1] CHW float32, optional mean/std",
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      size: { type: ['integer', 'null'], minimum: 1, default: null, description: "output side in pixels; null = the vision encoder's image size" },
      resampler: { type: 'string', enum: ['pil', 'sharp'], default: 'pil', description: "pil = exact port of PIL's bilinear resize (torchvision Resize on PIL images, as nanoVLM); sharp = libvips resize (see docs/data.md for the difference)" },
      sharp_kernel: { type: 'string', enum: ['nearest', 'linear', 'cubic', 'mitchell', 'lanczos2', 'lanczos3', 'mks2013', 'mks2021'], default: 'linear', description: 'the sharp kernel when resampler is sharp' },
      mean: { type: ['array', 'null'], items: { type: 'number' }, minItems: 3, maxItems: 3, default: null, description: 'per-channel mean for Normalize (null = none, as nanoVLM v0.1)' },
      std: { type: ['array', 'null'], items: { type: 'number', exclusiveMinimum: 0 }, minItems: 3, maxItems: 3, default: null, description: 'per-channel std for Normalize (given together with mean)' },
      max_pixels: { type: 'integer', minimum: 1, default: DEFAULT_MAX_PIXELS, description: 'reject images with more pixels than this (decompression bombs); such samples are skipped and counted' },
    },
  },
  create(o, ctx) {
    // (FromSchema reads `type: [x, 'null']` loosely: spell the option types out)
    const opt = o as { size: number | null; resampler: 'pil' | 'sharp'; sharp_kernel: SharpKernel; mean: number[] | null; std: number[] | null; max_pixels: number };
    const size = opt.size ?? ctx.built?.vision?.imageSize;
    if (!size)
      throw new UserError('the image size is unknown', { where: { yamlPath: `${ctx.yamlPath}.size` }, hint: 'set size, or build the image processor after a vision encoder' });
    if ((opt.mean == null) !== (opt.std == null))
      throw new UserError('mean and std go together', { where: { yamlPath: ctx.yamlPath }, hint: 'set both (3 numbers each) or neither' });
    return new ResizeProcessor({ size, resampler: opt.resampler, sharpKernel: opt.sharp_kernel, mean: opt.mean, std: opt.std, maxPixels: opt.max_pixels });
  },
});
