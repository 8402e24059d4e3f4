// LoRA: low-rank adapters on linear layers, as PEFT defines them (Hu et al. 2021,
// https://arxiv.org/abs/2106.09685), following PEFT's lora.Linear
// (https://github.com/huggingface/peft/blob/v0.13.0/src/peft/tuners/lora/layer.py, LoraLayer.update_layer,
// reset_lora_parameters, Linear.forward, get_delta_weight):
//   y = W x + b + (alpha / r) * B(A(dropout(x)))        A: Linear(in, r), B: Linear(r, out), no bias
//   A [r, in]  nn.init.kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in))
//   B [out, r] zeros: a fresh adapter changes nothing
//   merged weight (merge_and_unload): W + (alpha / r) * B A
// The base model is frozen (the core does it when it attaches the adapter: core/model/vlm.ts
// addAdapter); only A and B train, so gradients and optimizer state exist for them alone.
// Parameters are named as PEFT names them without the adapter name: "<layer>.lora_A.weight",
// "<layer>.lora_B.weight" (layer = a full nanoVLM name, "decoder.blocks.0.attn.q_proj").
// `targets` are patterns over the model's linear layers (Module.linearLayers): `*` matches any run
// of characters, dots included ("decoder.*.attn.q_proj" is every decoder block's q_proj); a
// pattern without `*` also matches as a name suffix, as PEFT's target_modules do ("q_proj").
import * as tf from '@tensorflow/tfjs';
import { definePlugin, param, Rng, UserError, type Where } from 'nanovlm-ts/plugin-api';
import type { Adapter, LinearAdapter, Module, PluginContext } from 'nanovlm-ts/plugin-api';

export interface LoraOptions {
  r: number;
  alpha: number;
  dropout: number;
  targets: string[];
}

/** does `layer` (a full name) match a target pattern? */
export function matchesTarget(layer: string, pattern: string): boolean {
  if (!pattern.includes('*')) return layer === pattern || layer.endsWith('.' + pattern);
  const re = new RegExp('^' + pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$');
  return re.test(layer);
}

/** full names of the linear layers of the built components (vision_encoder., MP., decoder.) */
export function linearLayersOf(built: PluginContext['built']): { layer: string; module: Module; local: string }[] {
  const parts: [string, Module | undefined][] = [
    ['vision_encoder.', built?.vision],
    ['MP.', built?.projector],
    ['decoder.', built?.decoder],
  ];
  return parts.flatMap(([prefix, mod]) => (mod?.linearLayers?.() ?? []).map((local) => ({ layer: prefix + local, module: mod!, local })));
}

/** One adapted layer: A [r, in], B [out, r]. */
class LoraLinear implements LinearAdapter {
  constructor(
    readonly a: tf.Variable, // lora_A.weight [r, in]
    readonly b: tf.Variable, // lora_B.weight [out, r]
    private readonly owner: LoraAdapter,
  ) {}

  /** x [..., in] -> (alpha / r) B A dropout(x) [..., out] */
  forward(x: tf.Tensor): tf.Tensor {
    const { dropout, training, scaling } = this.owner;
    const xd = training && dropout > 0 ? tf.dropout(x, dropout) : x; // lora_dropout
    const lead = x.shape.slice(0, -1);
    const x2 = xd.reshape([-1, x.shape[x.shape.length - 1]]) as tf.Tensor2D; // [M, in]
    const h = tf.matMul(x2, this.a as unknown as tf.Tensor2D, false, true); // [M, in] x [r, in]^T -> [M, r]
    const y = tf.matMul(h, this.b as unknown as tf.Tensor2D, false, true); // [M, r] x [out, r]^T -> [M, out]
    return tf.mul(y, scaling).reshape([...lead, this.b.shape[0]]);
  }

  /** (alpha / r) B A: [out, r] x [r, in] -> [out, in] */
  delta(): tf.Tensor2D {
    return tf.tidy(() => tf.mul(tf.matMul(this.b as unknown as tf.Tensor2D, this.a as unknown as tf.Tensor2D), this.owner.scaling) as tf.Tensor2D);
  }
}

export class LoraAdapter implements Adapter {
  readonly name = 'lora';
  readonly layers: string[] = [];
  readonly params = new Map<string, tf.Variable>();
  readonly scaling: number;
  readonly dropout: number;
  training = false;
  private readonly byLayer = new Map<string, LoraLinear>();

  /** `layers`: the layers to adapt with their weight shape [out, in] */
  constructor(
    layers: { layer: string; out: number; in: number }[],
    readonly options: LoraOptions,
    rng: Rng,
  ) {
    const { r, alpha } = options;
    this.scaling = alpha / r;
    this.dropout = options.dropout;
    for (const { layer, out, in: inDim } of layers) {
      // kaiming_uniform_(a=sqrt(5)): gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in)
      const bound = 1 / Math.sqrt(inDim);
      const aInit = new Float32Array(r * inDim);
      for (let i = 0; i < aInit.length; i++) aInit[i] = (2 * rng.next() - 1) * bound;
      const a = param(aInit, [r, inDim]);
      const b = param(new Float32Array(out * r), [out, r]); // zeros
      this.params.set(`${layer}.lora_A.weight`, a);
      this.params.set(`${layer}.lora_B.weight`, b);
      this.byLayer.set(layer, new LoraLinear(a, b, this));
      this.layers.push(layer);
    }
  }

  linear(layer: string): LinearAdapter {
    const l = this.byLayer.get(layer);
    if (!l) throw new Error(`lora: no adapter on layer ${layer}`);
    return l;
  }

  /** PEFT LoraConfig (adapter_config.json) */
  peftConfig(): Record<string, unknown> {
    const { r, alpha, dropout } = this.options;
    return { peft_type: 'LORA', task_type: null, r, lora_alpha: alpha, lora_dropout: dropout, bias: 'none', fan_in_fan_out: false, init_lora_weights: true, use_rslora: false, use_dora: false, modules_to_save: null };
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
  }
}

export default definePlugin({
  kind: 'adapter',
  name: 'lora',
  description: 'LoRA (PEFT): y = W x + (alpha/r) B A dropout(x) on the target linear layers; A Kaiming-uniform, B zero; the base model frozen; merged into the weights when saved.',
  options: {
    type: 'object',
    additionalProperties: false,
    required: ['targets'],
    properties: {
      r: { type: 'integer', minimum: 1, default: 8, description: 'rank of the adapter (PEFT r)' },
      alpha: { type: 'number', exclusiveMinimum: 0, default: 8, description: 'scaling numerator: the adapter output is multiplied by alpha / r (PEFT lora_alpha)' },
      dropout: { type: 'number', minimum: 0, maximum: 1, exclusiveMaximum: 1, default: 0, description: 'dropout on the adapter input in training (PEFT lora_dropout); activation checkpointing needs 0' },
      targets: {
        type: 'array',
        minItems: 1,
        items: { type: 'string', minLength: 1 },
        description: 'linear layers to adapt, as patterns over full names (`*` matches any characters, dots included: decoder.*.attn.q_proj; without `*` also a name suffix: q_proj); `vlm inspect` lists the layers',
      },
    },
  } as const,
  create(options, context) {
    const all = linearLayersOf(context.built).map(({ layer, module, local }) => ({ name: layer, shape: module.params.get(`${local}.weight`)!.shape }));
    const layers = chooseLayers(all, options.targets, (path) => context.positions?.lookup(path) ?? { yamlPath: path }, context.yamlPath);
    return new LoraAdapter(layers, options as LoraOptions, new Rng(context.seed, `${context.yamlPath}:lora`));
  },
  /** `vlm inspect`: the adapter's parameter shapes over the model's linear layers (peers.linearLayers) */
  describe(options, peers) {
    const layers = chooseLayers(peers.linearLayers ?? [], options.targets, (yamlPath) => ({ yamlPath }), peers.yamlPath ?? 'model.adapters[?]');
    const params: Record<string, number[]> = {};
    for (const l of layers) Object.assign(params, { [`${l.layer}.lora_A.weight`]: [options.r, l.in], [`${l.layer}.lora_B.weight`]: [l.out, options.r] });
    return { params };
  },
});

/** The layers the target patterns select, in the model's order; a pattern matching none is an error at its YAML path. */
function chooseLayers(all: { name: string; shape: number[] }[], targets: readonly string[], where: (path: string) => Where, yamlPath: string): { layer: string; out: number; in: number }[] {
  const chosen = new Set<string>();
  targets.forEach((pattern, j) => {
    const hits = all.filter((l) => matchesTarget(l.name, pattern));
    if (!hits.length) {
      const examples = all.filter((_, k) => k % Math.max(1, Math.floor(all.length / 6)) === 0).slice(0, 6).map((l) => l.name);
      throw new UserError(`lora target "${pattern}" matches no linear layer of the model`, {
        where: where(`${yamlPath}.targets[${j}]`),
        hint: all.length ? `linear layers are named e.g. ${examples.join(', ')}; use * for any part (decoder.*.attn.q_proj)` : 'the model components declare no linear layers (Module.linearLayers)',
      });
    }
    for (const h of hits) chosen.add(h.name);
  });
  return all.filter((l) => chosen.has(l.name)).map((l) => ({ layer: l.name, out: l.shape[0], in: l.shape[1] }));
}
