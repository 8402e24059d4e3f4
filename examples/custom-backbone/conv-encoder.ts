// An alternative vision backbone, written as a user plugin: a small convolutional encoder.
//   images [B, 3, S, S] -> n x (Conv2d 3x3 stride 2 padding 1 + ReLU) -> Conv2d 1x1 -> LayerNorm
//   -> tokens [B, (S / 2^n)^2, hidden_dim]
// It honours the same contract as the built-in SigLIP ViT (core/types.ts VisionEncoder), so the
// pixel-shuffle projector and the decoder take its output unchanged (the token grid is square).
// Recipes load it with `plugins: [../../examples/custom-backbone/conv-encoder.ts]` and
// `model.vision: { use: conv-encoder, ... }`. See docs/plugins.md.
import * as tf from '@tensorflow/tfjs';
import { UserError } from 'nanovlm-ts/plugin-api';
import { definePlugin } from 'nanovlm-ts/plugin-api';
import type { PluginContext, VisionEncoder } from 'nanovlm-ts/plugin-api';

interface ConvConfig {
  image_size: number;
  channels: number[]; // output channels of each stride-2 conv
  hidden_dim: number; // D
  ln_eps: number;
}

/** local parameter name -> shape, PyTorch layout (Conv2d weight [out, in, kh, kw]) */
function paramShapes(c: ConvConfig): Record<string, number[]> {
  const shapes: Record<string, number[]> = {};
  let cin = 3;
  c.channels.forEach((cout, i) => {
    shapes[`blocks.${i}.conv.weight`] = [cout, cin, 3, 3];
    shapes[`blocks.${i}.conv.bias`] = [cout];
    cin = cout;
  });
  shapes['proj.weight'] = [c.hidden_dim, cin, 1, 1];
  shapes['proj.bias'] = [c.hidden_dim];
  shapes['layer_norm.weight'] = [c.hidden_dim];
  shapes['layer_norm.bias'] = [c.hidden_dim];
  return shapes;
}

function gridSize(c: ConvConfig): number {
  const stride = 2 ** c.channels.length;
  if (c.image_size % stride !== 0) {
    throw new UserError(`image_size ${c.image_size} must be divisible by 2^${c.channels.length} = ${stride} (one halving per conv block)`, {
      hint: 'change image_size or the number of channels entries',
    });
  }
  return c.image_size / stride;
}

class ConvEncoder implements VisionEncoder {
  readonly params = new Map<string, tf.Variable>();
  readonly imageSize: number;
  readonly hiddenDim: number;
  readonly numTokens: number;

  constructor(private readonly cfg: ConvConfig, seed: number) {
    this.imageSize = cfg.image_size;
    this.hiddenDim = cfg.hidden_dim;
    this.numTokens = gridSize(cfg) ** 2;
    let i = 0;
    for (const [name, shape] of Object.entries(paramShapes(cfg))) {
      const init = name.startsWith('layer_norm.weight')
        ? tf.ones(shape)
        : name.endsWith('.bias')
          ? tf.zeros(shape)
          : tf.randomNormal(shape, 0, Math.sqrt(2 / (shape[1] * shape[2] * shape[3])), 'float32', seed * 1000 + i++); // Kaiming normal
      this.params.set(name, tf.variable(init, true));
      init.dispose();
    }
  }

  private p(name: string): tf.Variable {
    return this.params.get(name)!;
  }

  /** torch Conv2d(weight [out, in, k, k], stride, padding) on NHWC input */
  private conv(x: tf.Tensor4D, prefix: string, stride: number, pad: number): tf.Tensor4D {
    const w = this.p(`${prefix}.weight`).transpose([2, 3, 1, 0]) as tf.Tensor4D; // [out, in, kh, kw] -> [kh, kw, in, out]
    const padding: [[number, number], [number, number], [number, number], [number, number]] = [[0, 0], [pad, pad], [pad, pad], [0, 0]];
    return tf.add(tf.conv2d(x, w, stride, padding), this.p(`${prefix}.bias`));
  }

  forward(images: tf.Tensor4D): tf.Tensor3D {
    return tf.tidy(() => {
      const B = images.shape[0];
      let x = images.transpose([0, 2, 3, 1]) as tf.Tensor4D; // [B, 3, S, S] -> [B, S, S, 3]
      this.cfg.channels.forEach((_, i) => {
        x = tf.relu(this.conv(x, `blocks.${i}.conv`, 2, 1)); // [B, H, W, Cin] -> [B, H/2, W/2, Cout]
      });
      x = this.conv(x, 'proj', 1, 0); // [B, g, g, C] -> [B, g, g, D]
      const tokens = x.reshape([B, this.numTokens, this.hiddenDim]); // [B, g*g, D], row-major grid
      const { mean, variance } = tf.moments(tokens, -1, true);
      const normed = tokens.sub(mean).div(variance.add(this.cfg.ln_eps).sqrt());
      return normed.mul(this.p('layer_norm.weight')).add(this.p('layer_norm.bias')) as tf.Tensor3D;
    });
  }

  nanovlmConfig(): Record<string, unknown> {
    // nanoVLM has no conv encoder: record the widths it can express; the sidecar names this plugin
    return {
      vit_hidden_dim: this.cfg.hidden_dim,
      vit_img_size: this.cfg.image_size,
      vit_patch_size: this.cfg.image_size / gridSize(this.cfg),
      vit_model_type: 'conv-encoder (nanovlm-ts example)',
    };
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
  }
}

// ---- the plugin ----------------------------------------------------------------------------------

const options = {
  type: 'object',
  additionalProperties: false,
  properties: {
    image_size: { type: 'integer', minimum: 8, default: 32, description: 'Input image side S (the image processor resizes to it).' },
    channels: {
      type: 'array',
      items: { type: 'integer', minimum: 1 },
      minItems: 1,
      default: [32, 64],
      description: 'Output channels of each Conv2d 3x3 stride-2 block; each halves the grid.',
    },
    hidden_dim: { type: 'integer', minimum: 1, default: 64, description: 'Token width D (Conv2d 1x1 projection).' },
    ln_eps: { type: 'number', exclusiveMinimum: 0, default: 1e-6, description: 'LayerNorm epsilon.' },
  },
} as const;

export default definePlugin({
  kind: 'vision',
  name: 'conv-encoder',
  description: 'Example user plugin: a small convolutional vision encoder producing a square grid of tokens [B, (S/2^n)^2, D].',
  options,
  create(opts, ctx: PluginContext) {
    return new ConvEncoder({ ...opts, channels: [...opts.channels] }, ctx.seed);
  },
  describe(opts) {
    const cfg = { ...opts, channels: [...opts.channels] };
    return { params: paramShapes(cfg), hiddenDim: cfg.hidden_dim, numTokens: gridSize(cfg) ** 2 };
  },
});
