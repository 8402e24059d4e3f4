// Vision encoder: the SigLIP ViT of nanoVLM v0.1 (models/vision_transformer.py), itself following
// https://github.com/huggingface/transformers/blob/main/src/transformers/models/siglip/modeling_siglip.py
//   patch embedding (Conv2d, kernel = stride = patch) + learned position embedding (+ optional CLS),
//   pre-LN blocks: x = x + out_proj(attn(ln1(x))); x = x + fc2(gelu_tanh(fc1(ln2(x)))),
//   final LayerNorm on every token (no pooling).
// Parameter names are nanoVLM's (`blocks.0.attn.qkv_proj.weight`, ...), PyTorch layout.
// `from:` loads a Hugging Face SigLIP or (fixed-resolution) SigLIP2 checkpoint, as ViT.from_pretrained
// of nanoVLM v0.1 and HEAD (whose default is google/siglip2-base-patch16-512; same key layout): the key
// table is HF_SIGLIP_KEYS below; q/k/v are fused into qkv_proj as torch.cat([q, k, v], 0).
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { definePlugin, type ModuleDescription } from 'nanovlm-ts/plugin-api';
import type { PluginContext, VisionEncoder } from 'nanovlm-ts/plugin-api';
import { UserError } from 'nanovlm-ts/plugin-api';
import { adaptedLinear, attention, constInit, geluTanh, layerNorm, linear, maybeDropout, mergeHeads, normalInit, param, Rng, splitHeads, uniformInit } from 'nanovlm-ts/plugin-api';
import { VLM_CONFIG_DEFAULTS as D } from 'nanovlm-ts/plugin-api';
import { backboneConfig, buildBackbone, expandBlocks, loadHubTensors, localBackboneConfig, readBackboneConfig, resolveBackbone, type HubTensor } from 'nanovlm-ts/plugin-api';
import { blockParams, checkpointBlock, noCheckpointWithDropout } from 'nanovlm-ts/plugin-api';

export interface ViTConfig {
  hidden_dim: number;
  inter_dim: number;
  patch_size: number;
  image_size: number;
  n_heads: number;
  n_blocks: number;
  ln_eps: number;
  cls_flag: boolean;
  dropout: number;
  /** recorded as vit_model_type */
  model_type: string;
}

/** nanoVLM v0.1 defaults (SigLIP-B/16-224). */
export const VIT_DEFAULTS: ViTConfig = {
  hidden_dim: D.vit_hidden_dim,
  inter_dim: D.vit_inter_dim,
  patch_size: D.vit_patch_size,
  image_size: D.vit_img_size,
  n_heads: D.vit_n_heads,
  n_blocks: D.vit_n_blocks,
  ln_eps: D.vit_ln_eps,
  cls_flag: D.vit_cls_flag,
  dropout: D.vit_dropout,
  model_type: D.vit_model_type,
};

/** Parameter shapes in nanoVLM's named_parameters() order. */
export function vitParamShapes(c: ViTConfig): Record<string, number[]> {
  const D = c.hidden_dim;
  const nPatches = (c.image_size / c.patch_size) ** 2;
  const s: Record<string, number[]> = {};
  if (c.cls_flag) s['patch_embedding.cls_token'] = [1, 1, D];
  s['patch_embedding.position_embedding'] = [1, nPatches + (c.cls_flag ? 1 : 0), D];
  s['patch_embedding.conv.weight'] = [D, 3, c.patch_size, c.patch_size];
  s['patch_embedding.conv.bias'] = [D];
  for (let i = 0; i < c.n_blocks; i++) {
    const b = `blocks.${i}.`;
    s[b + 'ln1.weight'] = [D];
    s[b + 'ln1.bias'] = [D];
    s[b + 'attn.qkv_proj.weight'] = [3 * D, D];
    s[b + 'attn.qkv_proj.bias'] = [3 * D];
    s[b + 'attn.out_proj.weight'] = [D, D];
    s[b + 'attn.out_proj.bias'] = [D];
    s[b + 'ln2.weight'] = [D];
    s[b + 'ln2.bias'] = [D];
    s[b + 'mlp.fc1.weight'] = [c.inter_dim, D];
    s[b + 'mlp.fc1.bias'] = [c.inter_dim];
    s[b + 'mlp.fc2.weight'] = [D, c.inter_dim];
    s[b + 'mlp.fc2.bias'] = [D];
  }
  s['layer_norm.weight'] = [D];
  s['layer_norm.bias'] = [D];
  return s;
}

/** nanoVLM ViT._init_weights: Linear/Conv N(0, 0.02) with zero bias, LayerNorm (1, 0),
 *  position embedding torch.rand (U[0,1)), CLS token zeros. */
function vitInit(name: string, shape: number[], rng: Rng): Float32Array {
  if (name.endsWith('position_embedding')) return uniformInit(rng, shape);
  if (name.endsWith('cls_token')) return constInit(shape, 0);
  if (/(^|\.)(ln1|ln2|layer_norm)\.weight$/.test(name)) return constInit(shape, 1);
  if (name.endsWith('.bias')) return constInit(shape, 0);
  return normalInit(rng, shape, 0.02);
}

function validateViT(c: ViTConfig, yamlPath: string): void {
  const fail = (msg: string, key: string) => {
    throw new UserError(msg, { where: { yamlPath: `${yamlPath}.${key}` } });
  };
  if (c.hidden_dim % c.n_heads !== 0) fail(`hidden_dim ${c.hidden_dim} is not divisible by n_heads ${c.n_heads}`, 'n_heads');
  if (c.image_size % c.patch_size !== 0) fail(`image_size ${c.image_size} is not divisible by patch_size ${c.patch_size}`, 'patch_size');
}

/** the linear layers of n blocks: qkv, out of the attention and fc1, fc2 of the MLP */
export function vitLinearLayers(nBlocks: number): string[] {
  const names = ['attn.qkv_proj', 'attn.out_proj', 'mlp.fc1', 'mlp.fc2'];
  return Array.from({ length: nBlocks }, (_, i) => names.map((n) => `blocks.${i}.${n}`)).flat();
}

export class SiglipViT implements VisionEncoder {
  readonly params = new Map<string, tf.Variable>();
  readonly imageSize: number;
  readonly hiddenDim: number;
  readonly numTokens: number;
  readonly cfg: ViTConfig;

  constructor(cfg: ViTConfig, rng: Rng) {
    this.cfg = cfg;
    this.imageSize = cfg.image_size;
    this.hiddenDim = cfg.hidden_dim;
    this.numTokens = cfg.cls_flag ? 1 : (cfg.image_size / cfg.patch_size) ** 2;
    for (const [name, shape] of Object.entries(vitParamShapes(cfg))) {
      this.params.set(name, param(vitInit(name, shape, rng), shape));
    }
  }

  private p<T extends tf.Tensor = tf.Tensor>(name: string): T {
    return this.params.get(name) as unknown as T;
  }

  /** the linear layers (model.adapters targets): qkv, out of the attention and fc1, fc2 of the MLP of each block */
  linearLayers(): string[] {
    return vitLinearLayers(this.cfg.n_blocks);
  }

  /** Conv2d(3, D, kernel=stride=P) as patchify + linear; [B, 3, S, S] -> [B, N, D], patches row-major */
  private patchEmbedding(images: tf.Tensor4D): tf.Tensor3D {
    const { patch_size: P, hidden_dim: D } = this.cfg;
    const [B, C, S] = images.shape;
    const h = S / P;
    const w = images.shape[3] / P;
    // [B, 3, h*P, w*P] -> [B*3*h, P, w, P] -> [B*3*h, w, P, P] -> [B, 3, h, w, P*P]
    let x: tf.Tensor = images.reshape([B * C * h, P, w, P]).transpose([0, 2, 1, 3]).reshape([B, C, h, w, P * P]);
    // -> [B, h, w, 3, P*P] -> [B, N, 3*P*P]  (feature order c, ky, kx = the conv kernel's layout)
    x = x.transpose([0, 2, 3, 1, 4]).reshape([B, h * w, C * P * P]);
    const kernel = this.p<tf.Tensor4D>('patch_embedding.conv.weight').reshape([D, C * P * P]) as tf.Tensor2D;
    x = linear(x, kernel, this.p('patch_embedding.conv.bias')); // [B, N, D]
    if (this.cfg.cls_flag) {
      const cls = tf.tile(this.p<tf.Tensor3D>('patch_embedding.cls_token'), [B, 1, 1]);
      x = tf.concat([cls, x], 1); // [B, 1+N, D]
    }
    return tf.add(x, this.p('patch_embedding.position_embedding')) as tf.Tensor3D;
  }

  private block(x: tf.Tensor3D, i: number, training: boolean): tf.Tensor3D {
    const b = `blocks.${i}.`; // Linear layers: adaptedLinear adds the adapter of model.adapters, if any
    const { hidden_dim: D, n_heads: H, ln_eps: eps, dropout } = this.cfg;
    // attention: qkv [B, T, 3D] split as [q | k | v], heads contiguous hd slices
    const h = layerNorm(x, this.p(b + 'ln1.weight'), this.p(b + 'ln1.bias'), eps);
    const qkv = adaptedLinear(this, b + 'attn.qkv_proj', h, this.p<tf.Tensor2D>(b + 'attn.qkv_proj.weight'), this.p(b + 'attn.qkv_proj.bias'));
    const [q, k, v] = tf.split(qkv, [D, D, D], 2).map((t) => splitHeads(t, H)); // [B, H, T, hd]
    let y: tf.Tensor = mergeHeads(attention(q, k, v, { dropout, training })); // [B, T, D]
    y = adaptedLinear(this, b + 'attn.out_proj', y, this.p<tf.Tensor2D>(b + 'attn.out_proj.weight'), this.p(b + 'attn.out_proj.bias'));
    x = tf.add(x, maybeDropout(y, dropout, training)) as tf.Tensor3D;
    // MLP
    const h2 = layerNorm(x, this.p(b + 'ln2.weight'), this.p(b + 'ln2.bias'), eps);
    let m = geluTanh(adaptedLinear(this, b + 'mlp.fc1', h2, this.p<tf.Tensor2D>(b + 'mlp.fc1.weight'), this.p(b + 'mlp.fc1.bias'))); // [B, T, inter]
    m = adaptedLinear(this, b + 'mlp.fc2', m, this.p<tf.Tensor2D>(b + 'mlp.fc2.weight'), this.p(b + 'mlp.fc2.bias')); // [B, T, D]
    return tf.add(x, maybeDropout(m, dropout, training)) as tf.Tensor3D;
  }

  /** [B, 3, S, S] -> [B, N, D] (with cls_flag: [B, 1, D], the normalised CLS token) */
  forward(images: tf.Tensor4D, opts: { training?: boolean; checkpoint?: boolean } = {}): tf.Tensor3D {
    const training = !!opts.training;
    const checkpoint = !!opts.checkpoint && training;
    if (checkpoint && this.cfg.dropout > 0) throw noCheckpointWithDropout('vision', this.cfg.dropout);
    const [, ch, hgt, wid] = images.shape;
    if (ch !== 3 || hgt !== this.imageSize || wid !== this.imageSize) {
      throw new Error(`siglip-vit expects images [B, 3, ${this.imageSize}, ${this.imageSize}], got [${images.shape}] (resize them with the image processor)`);
    }
    let x = maybeDropout(this.patchEmbedding(images), this.cfg.dropout, training) as tf.Tensor3D;
    // each block in its own tidy: only its output (and what the gradient tape saved, or with
    // checkpointing nothing: it is recomputed in the backward pass) outlives it
    for (let i = 0; i < this.cfg.n_blocks; i++) {
      x = checkpointBlock((x) => this.block(x, i, training), x, blockParams(this.params, i), checkpoint);
    }
    if (this.cfg.cls_flag) x = x.slice([0, 0, 0], [-1, 1, -1]);
    return layerNorm(x, this.p('layer_norm.weight'), this.p('layer_norm.bias'), this.cfg.ln_eps) as tf.Tensor3D;
  }

  nanovlmConfig(): Record<string, unknown> {
    const c = this.cfg;
    return {
      vit_hidden_dim: c.hidden_dim,
      vit_inter_dim: c.inter_dim,
      vit_patch_size: c.patch_size,
      vit_img_size: c.image_size,
      vit_n_heads: c.n_heads,
      vit_dropout: c.dropout,
      vit_n_blocks: c.n_blocks,
      vit_ln_eps: c.ln_eps,
      vit_cls_flag: c.cls_flag,
      vit_model_type: c.model_type,
    };
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
  }
}

// ---- Hugging Face SigLIP checkpoints (ViT.from_pretrained) -----------------------------------------

/** SiglipVisionConfig field -> our option (transformers' defaults for fields the file omits). */
const HF_SIGLIP_CONFIG: [hf: string, ours: keyof ViTConfig, dflt: number][] = [
  ['hidden_size', 'hidden_dim', 768],
  ['intermediate_size', 'inter_dim', 3072],
  ['patch_size', 'patch_size', 16],
  ['image_size', 'image_size', 224],
  ['num_attention_heads', 'n_heads', 12],
  ['num_hidden_layers', 'n_blocks', 12],
  ['layer_norm_eps', 'ln_eps', 1e-6],
  ['attention_dropout', 'dropout', 0],
];

/** HF key -> nanoVLM key; `{i}` = block index. Keys of the file not listed (vision_model.head.*, text_model.*, logit_*) are ignored. */
export const HF_SIGLIP_KEYS: [hf: string, ours: string][] = [
  ['vision_model.embeddings.patch_embedding.weight', 'patch_embedding.conv.weight'],
  ['vision_model.embeddings.patch_embedding.bias', 'patch_embedding.conv.bias'],
  ['vision_model.embeddings.position_embedding.weight', 'patch_embedding.position_embedding'], // [N, D] -> [1, N, D]
  ['vision_model.post_layernorm.weight', 'layer_norm.weight'],
  ['vision_model.post_layernorm.bias', 'layer_norm.bias'],
  ['vision_model.encoder.layers.{i}.layer_norm1.weight', 'blocks.{i}.ln1.weight'],
  ['vision_model.encoder.layers.{i}.layer_norm1.bias', 'blocks.{i}.ln1.bias'],
  ['vision_model.encoder.layers.{i}.layer_norm2.weight', 'blocks.{i}.ln2.weight'],
  ['vision_model.encoder.layers.{i}.layer_norm2.bias', 'blocks.{i}.ln2.bias'],
  ['vision_model.encoder.layers.{i}.mlp.fc1.weight', 'blocks.{i}.mlp.fc1.weight'],
  ['vision_model.encoder.layers.{i}.mlp.fc1.bias', 'blocks.{i}.mlp.fc1.bias'],
  ['vision_model.encoder.layers.{i}.mlp.fc2.weight', 'blocks.{i}.mlp.fc2.weight'],
  ['vision_model.encoder.layers.{i}.mlp.fc2.bias', 'blocks.{i}.mlp.fc2.bias'],
  ['vision_model.encoder.layers.{i}.self_attn.out_proj.weight', 'blocks.{i}.attn.out_proj.weight'],
  ['vision_model.encoder.layers.{i}.self_attn.out_proj.bias', 'blocks.{i}.attn.out_proj.bias'],
];
/** Fused on load: qkv_proj = cat([q_proj, k_proj, v_proj], 0), for weight and bias. */
export const HF_SIGLIP_QKV = {
  q: 'vision_model.encoder.layers.{i}.self_attn.q_proj.{w}',
  k: 'vision_model.encoder.layers.{i}.self_attn.k_proj.{w}',
  v: 'vision_model.encoder.layers.{i}.self_attn.v_proj.{w}',
  ours: 'blocks.{i}.attn.qkv_proj.{w}',
};

/**
 * Shapes from a SigLIP or SigLIP2 config.json, as transformers' SiglipVisionConfig.from_pretrained
 * reads it (nanoVLM HEAD's ViT.from_pretrained): a flat SiglipVisionConfig (model_type
 * siglip_vision_model), or a full SiglipModel config (model_type siglip: SigLIP, and the
 * fixed-resolution SigLIP2 checkpoints such as google/siglip2-base-patch16-512, HEAD's default) whose
 * vision_config is taken; transformers' defaults for the fields it leaves out.
 */
export function readSiglipConfig(folder: string): Partial<ViTConfig> {
  return siglipShapes(readBackboneConfig(folder, 'SigLIP'), join(folder, 'config.json'));
}

/** model_type values of a checkpoint whose vision tower has this key layout */
const SIGLIP_MODEL_TYPES = ['siglip', 'siglip_vision_model'];

function siglipShapes(raw: Record<string, unknown>, file: string): Partial<ViTConfig> {
  const type = raw.model_type;
  if (type === 'siglip2' || type === 'siglip2_vision_model') {
    throw new UserError(`${file}: model_type "${type}" is a SigLIP2 NaFlex checkpoint (variable resolution, linear patch embedding), which nanoVLM's ViT cannot load`, {
      where: { file },
      hint: 'use a fixed-resolution SigLIP2 checkpoint (model_type "siglip"), e.g. google/siglip2-base-patch16-512 as nanoVLM HEAD does',
    });
  }
  if (type !== undefined && !SIGLIP_MODEL_TYPES.includes(type as string)) {
    throw new UserError(`${file}: model_type ${JSON.stringify(type)} is not a SigLIP checkpoint (siglip-vit loads ${SIGLIP_MODEL_TYPES.join(' or ')})`, {
      where: { file },
      hint: 'model.vision.from must name a SigLIP / SigLIP2 checkpoint (repo id or folder)',
    });
  }
  const cfg = (type === 'siglip' ? (raw.vision_config ?? {}) : raw) as Record<string, unknown>;
  const out: Partial<ViTConfig> = {};
  for (const [hf, ours, dflt] of HF_SIGLIP_CONFIG) (out as Record<string, unknown>)[ours] = cfg[hf] ?? dflt;
  return out;
}

/** ViT.from_pretrained: the key table, q/k/v fused into qkv_proj (torch.cat([q, k, v], 0)) for weight and bias. */
function loadHfSiglip(model: SiglipViT, folder: string): void {
  const table: HubTensor[] = expandBlocks(HF_SIGLIP_KEYS, model.cfg.n_blocks).map(([hf, ours]) => ({ from: [hf], to: ours }));
  for (let i = 0; i < model.cfg.n_blocks; i++) {
    for (const w of ['weight', 'bias']) {
      const name = (t: string) => t.replaceAll('{i}', String(i)).replace('{w}', w);
      table.push({ from: [name(HF_SIGLIP_QKV.q), name(HF_SIGLIP_QKV.k), name(HF_SIGLIP_QKV.v)], to: name(HF_SIGLIP_QKV.ours) });
    }
  }
  loadHubTensors(model.params, folder, table, { what: 'SigLIP vision' });
}

// ---- plugin ------------------------------------------------------------------------------------------

const options = {
  type: 'object',
  additionalProperties: false,
  properties: {
    from: {
      type: ['string', 'null'],
      description: 'Hugging Face SigLIP or SigLIP2 checkpoint, e.g. google/siglip2-base-patch16-512 (repo id or local folder with config.json + model.safetensors or a sharded model.safetensors.index.json); its config sets the shapes',
    },
    hidden_dim: { type: 'integer', minimum: 1, description: 'vit_hidden_dim (default 768; from the checkpoint with `from`)' },
    inter_dim: { type: 'integer', minimum: 1, description: 'vit_inter_dim, MLP width (default 3072)' },
    patch_size: { type: 'integer', minimum: 1, description: 'vit_patch_size (default 16)' },
    image_size: { type: 'integer', minimum: 1, description: 'vit_img_size (default 224)' },
    n_heads: { type: 'integer', minimum: 1, description: 'vit_n_heads (default 12)' },
    n_blocks: { type: 'integer', minimum: 0, description: 'vit_n_blocks (default 12)' },
    ln_eps: { type: 'number', exclusiveMinimum: 0, description: 'vit_ln_eps (default 1e-6)' },
    cls_flag: { type: 'boolean', description: 'vit_cls_flag: prepend a CLS token and output only it (default false)' },
    dropout: { type: 'number', minimum: 0, maximum: 1, description: 'vit_dropout, used when training (default 0)' },
  },
} as const;

type Options = { from?: string | null } & Partial<Omit<ViTConfig, 'model_type'>>;

/** The full config from options (+ the checkpoint's config.json when `from` is a local folder). */
function configFrom(opts: Options, hub: Partial<ViTConfig> | null, yamlPath: string, from?: string): ViTConfig {
  const cfg = backboneConfig(VIT_DEFAULTS, opts, hub, yamlPath, from);
  validateViT(cfg, yamlPath);
  return cfg;
}

export default definePlugin({
  kind: 'vision',
  name: 'siglip-vit',
  // nanoVLM v0.1's vision encoder: VLMConfig vit_* fields <-> these options (config.json -> recipe)
  nanovlm: {
    config: { vit_hidden_dim: 'hidden_dim', vit_inter_dim: 'inter_dim', vit_patch_size: 'patch_size', vit_img_size: 'image_size', vit_n_heads: 'n_heads', vit_dropout: 'dropout', vit_n_blocks: 'n_blocks', vit_ln_eps: 'ln_eps', vit_cls_flag: 'cls_flag' },
  },
  description: "SigLIP ViT encoder (nanoVLM v0.1 and HEAD ViT): patch tokens after the final LayerNorm; `from` loads a Hub SigLIP or SigLIP2 checkpoint",
  options,
  async create(options_, ctx: PluginContext) {
    const opts = options_ as Options;
    const folder = opts.from ? await resolveBackbone(opts.from, ctx) : null;
    const cfg = configFrom(opts, folder ? readSiglipConfig(folder) : null, ctx.yamlPath, opts.from ?? undefined);
    const model = await buildBackbone(folder, () => new SiglipViT(cfg, new Rng(ctx.seed, 'vision')), loadHfSiglip);
    if (folder) ctx.log.info(`${ctx.yamlPath}: loaded SigLIP weights from ${opts.from}`);
    return model;
  },
  describe(options_): ModuleDescription {
    const opts = options_ as Options;
    const local = localBackboneConfig(opts.from, 'SigLIP');
    const cfg = configFrom(opts, local ? siglipShapes(local, `${opts.from}/config.json`) : null, 'model.vision', opts.from ?? undefined);
    const nTok = cfg.cls_flag ? 1 : (cfg.image_size / cfg.patch_size) ** 2;
    return { params: vitParamShapes(cfg), hiddenDim: cfg.hidden_dim, numTokens: nTok, linearLayers: vitLinearLayers(cfg.n_blocks) };
  },
});
