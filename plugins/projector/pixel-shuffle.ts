// Modality projector of nanoVLM v0.1 (models/modality_projector.py), after
// https://github.com/huggingface/smollm/blob/main/vision/m4/models/vllama3/modeling_vllama3.py#L1281
//   pixel shuffle by factor s: [B, N, D] -> [B, N/s^2, s*s*D], output token (i, j) = concat over
//   di (outer), dj (inner) of patch (i*s + di, j*s + dj), feature index (di*s + dj)*D + c;
//   then `proj`, a bias-free Linear to the decoder width.
// Widths come from the components the core built before this one: the core builds the vision
// encoder, then the decoder, then the projector, and passes them as `context.built.vision` /
// `context.built.decoder` (D = vision.hiddenDim, N = vision.numTokens, C = decoder.hiddenDim).
import * as tf from '@tensorflow/tfjs';
import { definePlugin, type ModuleDescription, type ModulePeers } from 'nanovlm-ts/plugin-api';
import type { PluginContext, Projector } from 'nanovlm-ts/plugin-api';
import { UserError } from 'nanovlm-ts/plugin-api';
import { adaptedLinear, normalInit, param, Rng } from 'nanovlm-ts/plugin-api';

export class PixelShuffleProjector implements Projector {
  readonly params = new Map<string, tf.Variable>();
  readonly outDim: number;
  constructor(
    readonly inDim: number, // D (vision width)
    outDim: number, // C (decoder width)
    readonly factor: number,
    rng: Rng,
  ) {
    this.outDim = outDim;
    const shape = [outDim, inDim * factor * factor];
    this.params.set('proj.weight', param(normalInit(rng, shape, 0.02), shape)); // nn.init.normal_(std=0.02)
  }

  outTokens(inTokens: number): number {
    return inTokens / (this.factor * this.factor);
  }

  /** [B, N, D] -> [B, N/s^2, s*s*D] */
  pixelShuffle(x: tf.Tensor3D): tf.Tensor3D {
    const [B, N, D] = x.shape;
    const s = this.factor;
    const side = Math.round(Math.sqrt(N));
    const hOut = side / s;
    const wOut = side / s;
    // view(B, h, w, D) -> (B, h/s, s, w/s, s, D), permute(0, 1, 3, 2, 4, 5): written with rank-4 ops
    // [B*h/s, s, w/s, s*D] -> [B*h/s, w/s, s, s*D] -> [B, (h/s)*(w/s), s*s*D]
    return x.reshape([B * hOut, s, wOut, s * D]).transpose([0, 2, 1, 3]).reshape([B, hOut * wOut, s * s * D]) as tf.Tensor3D;
  }

  forward(x: tf.Tensor3D): tf.Tensor3D {
    return adaptedLinear(this, 'proj', this.pixelShuffle(x), this.params.get('proj.weight') as unknown as tf.Tensor2D) as tf.Tensor3D;
  }

  /** the linear layer (model.adapters target): proj */
  linearLayers(): string[] {
    return ['proj'];
  }

  nanovlmConfig(): Record<string, unknown> {
    return { mp_pixel_shuffle_factor: this.factor };
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
  }
}

/** The pixel shuffle needs a square grid of N tokens whose side is divisible by the factor. */
function checkGrid(numTokens: number, factor: number, yamlPath: string): void {
  const side = Math.round(Math.sqrt(numTokens));
  if (side * side !== numTokens || side % factor !== 0) {
    throw new UserError(
      `pixel shuffle by factor ${factor} needs a square grid of image tokens with a side divisible by ${factor}; the vision encoder gives ${numTokens} tokens`,
      { where: { yamlPath: `${yamlPath}.factor` }, hint: 'change factor, or the vision encoder image_size / patch_size' },
    );
  }
}

const options = {
  type: 'object',
  additionalProperties: false,
  properties: {
    factor: { type: 'integer', minimum: 1, default: 2, description: 'mp_pixel_shuffle_factor' },
  },
} as const;

export default definePlugin({
  kind: 'projector',
  name: 'pixel-shuffle',
  nanovlm: { config: { mp_pixel_shuffle_factor: 'factor' } }, // nanoVLM v0.1's ModalityProjector
  description: 'nanoVLM modality projector: pixel shuffle by `factor`, then a bias-free linear to the decoder width',
  options,
  create(opts, ctx: PluginContext) {
    const vision = ctx.built?.vision;
    const decoder = ctx.built?.decoder;
    if (!vision || !decoder) throw new Error('pixel-shuffle: the core must build the vision encoder and the decoder first');
    checkGrid(vision.numTokens, opts.factor, ctx.yamlPath);
    return new PixelShuffleProjector(vision.hiddenDim, decoder.hiddenDim, opts.factor, new Rng(ctx.seed, 'projector'));
  },
  describe(opts, peers: ModulePeers): ModuleDescription {
    if (!peers.vision || !peers.decoder) throw new Error('pixel-shuffle: describe needs the vision and decoder widths');
    checkGrid(peers.vision.numTokens, opts.factor, 'model.projector');
    const s = opts.factor;
    return {
      params: { 'proj.weight': [peers.decoder.hiddenDim, peers.vision.hiddenDim * s * s] },
      numTokens: peers.vision.numTokens / (s * s),
      hiddenDim: peers.decoder.hiddenDim,
      linearLayers: ['proj'],
    };
  },
});
