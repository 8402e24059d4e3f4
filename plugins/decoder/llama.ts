// Decoder: the Llama / SmolLM2 language model of nanoVLM v0.1, class by class:
//   https://github.com/huggingface/nanoVLM/blob/v0.1/models/language_model.py
// itself after transformers' modeling_llama.py. Token embedding; blocks x = x + attn(norm1(x));
// x = x + down(silu(gate(y)) * up(y)), y = norm2(x); final RMSNorm; head tied to the token
// embedding when tie_weights. Rotary embeddings exactly as nanoVLM's RotaryEmbedding (half-split
// layout, dynamic scaling past max_position_embeddings, cos/sin times attn_scaling); grouped-query
// attention (query head h uses kv head h // (n_heads / n_kv_heads)); masks as nanoVLM's manual
// attention path (causal -inf, padding (1 - mask) * finfo.min added, attention output of padded
// query rows zeroed before out_proj).
// Generation (KV cache, the host-side one-token step) lives beside it in llama-decode.ts: forward
// with a `cache` continues positions from its length and equals full recompute as long as the
// sequence stays within max_position_embeddings (past it, nanoVLM rescales RoPE for the whole
// sequence at every step, which cached keys cannot follow).
// Parameter names are nanoVLM's (`blocks.0.attn.q_proj.weight`, ...), PyTorch layout.
// `from:` loads a Hugging Face Llama checkpoint (LanguageModel.from_pretrained): key table
// HF_LLAMA_KEYS (core/hub/backbone.ts does the reading); a recipe vocab larger than the
// checkpoint's gets extra rows ~ N(0, 0.02) (seeded).
import * as tf from '@tensorflow/tfjs';
import { definePlugin, type ModuleDescription } from 'nanovlm-ts/plugin-api';
import type { Decoder, KVCache, PluginContext } from 'nanovlm-ts/plugin-api';
import { UserError } from 'nanovlm-ts/plugin-api';
import { adaptedLinear, attention, attentionBias, constInit, customOp, FLOAT32_MIN, linear, maybeDropout, mergeHeads, normalInit, param, Rng, rmsNorm, segmentBias, segmentPositions, siluMul, splitHeads } from 'nanovlm-ts/plugin-api';
import { VLM_CONFIG_DEFAULTS as D } from 'nanovlm-ts/plugin-api';
import { backboneConfig, buildBackbone, expandBlocks, loadHubTensors, localBackboneConfig, readBackboneConfig, resolveBackbone, type HubTensor } from 'nanovlm-ts/plugin-api';
import { blockParams, checkpointBlock, keepForRecompute, noCheckpointWithDropout } from 'nanovlm-ts/plugin-api';
import { hostValues, ropeNative } from 'nanovlm-ts/plugin-api';
import { LlamaFastPath, LlamaKVCache } from './llama-decode.ts';

export { LlamaKVCache };

export interface LlamaConfig {
  hidden_dim: number;
  inter_dim: number;
  rms_eps: number;
  re_base: number;
  max_position_embeddings: number;
  vocab_size: number;
  n_heads: number;
  n_kv_heads: number;
  n_blocks: number;
  dropout: number;
  attn_scaling: number;
  max_length: number;
  tie_weights: boolean;
  eos_token_id: number;
  /** recorded as lm_model_type */
  model_type: string;
  /**
   * RoPE position ids: 'nanovlm' = 0..T-1 over every position, left padding included (nanoVLM v0.1,
   * the default: parity); 'skip_padding' = per row, counting only positions the mask keeps (as
   * Hugging Face models do), so that left padding does not change the distance between tokens.
   * Not a nanoVLM config field: a model trained with skip_padding and run by nanoVLM gives the same
   * outputs for unpadded inputs only.
   */
  position_ids: 'nanovlm' | 'skip_padding';
}

/** nanoVLM v0.1 defaults (SmolLM2-135M). */
export const LLAMA_DEFAULTS: LlamaConfig = {
  hidden_dim: D.lm_hidden_dim,
  inter_dim: D.lm_inter_dim,
  rms_eps: D.lm_rms_eps,
  re_base: D.lm_re_base,
  max_position_embeddings: D.lm_max_position_embeddings,
  vocab_size: D.lm_vocab_size,
  n_heads: D.lm_n_heads,
  n_kv_heads: D.lm_n_kv_heads,
  n_blocks: D.lm_n_blocks,
  dropout: D.lm_dropout,
  attn_scaling: D.lm_attn_scaling,
  max_length: D.lm_max_length,
  tie_weights: D.lm_tie_weights,
  eos_token_id: D.lm_eos_token_id,
  model_type: D.lm_model_type,
  position_ids: 'nanovlm',
};

/** Parameter shapes in nanoVLM's named_parameters() order (the tied head is the embedding, listed once). */
export function llamaParamShapes(c: LlamaConfig): Record<string, number[]> {
  const C = c.hidden_dim;
  const kvDim = (C / c.n_heads) * c.n_kv_heads;
  const s: Record<string, number[]> = { 'token_embedding.weight': [c.vocab_size, C] };
  for (let i = 0; i < c.n_blocks; i++) {
    const b = `blocks.${i}.`;
    s[b + 'mlp.gate_proj.weight'] = [c.inter_dim, C];
    s[b + 'mlp.up_proj.weight'] = [c.inter_dim, C];
    s[b + 'mlp.down_proj.weight'] = [C, c.inter_dim];
    s[b + 'attn.q_proj.weight'] = [C, C];
    s[b + 'attn.k_proj.weight'] = [kvDim, C];
    s[b + 'attn.v_proj.weight'] = [kvDim, C];
    s[b + 'attn.out_proj.weight'] = [C, C];
    s[b + 'norm1.weight'] = [C];
    s[b + 'norm2.weight'] = [C];
  }
  s['norm.weight'] = [C];
  if (!c.tie_weights) s['head.weight'] = [c.vocab_size, C];
  return s;
}

/** the linear layers of n blocks: q, k, v, out of the attention and gate, up, down of the MLP */
export function llamaLinearLayers(nBlocks: number): string[] {
  const names = ['attn.q_proj', 'attn.k_proj', 'attn.v_proj', 'attn.out_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
  return Array.from({ length: nBlocks }, (_, i) => names.map((n) => `blocks.${i}.${n}`)).flat();
}

// ---- RotaryEmbedding (https://github.com/huggingface/nanoVLM/blob/v0.1/models/language_model.py#L21) -----
// rmsNorm (RMSNorm, #L7) is core/ops.ts rmsNorm.

const f32 = Math.fround;

/** inv_freq = 1 / (base ** (arange(0, hd, 2) / hd)), in float32 as torch computes it. */
export function ropeInvFreq(c: LlamaConfig): Float32Array {
  const hd = c.hidden_dim / c.n_heads;
  const out = new Float32Array(hd / 2);
  for (let i = 0; i < hd / 2; i++) out[i] = f32(1 / f32(Math.pow(c.re_base, f32((2 * i) / hd))));
  return out;
}

/**
 * nanoVLM RotaryEmbedding.forward for positions [T] (shared by the batch): cos, sin [T, hd].
 * If max(position) + 1 > max_position_embeddings, inv_freq is divided by (max_pos + 1) / max_position_embeddings.
 */
export function ropeCosSin(c: LlamaConfig, positions: number[]): { cos: Float32Array; sin: Float32Array; hd: number } {
  const hd = c.hidden_dim / c.n_heads;
  let invFreq = ropeInvFreq(c);
  const maxSeq = Math.max(...positions) + 1;
  if (maxSeq > c.max_position_embeddings) {
    const scale = f32(maxSeq / c.max_position_embeddings);
    invFreq = invFreq.map((f) => f32(f / scale));
  }
  const half = hd / 2;
  const cos = new Float32Array(positions.length * hd);
  const sin = new Float32Array(positions.length * hd);
  for (let t = 0; t < positions.length; t++) {
    for (let i = 0; i < half; i++) {
      const freq = f32(positions[t] * invFreq[i]);
      const cv = f32(f32(Math.cos(freq)) * c.attn_scaling);
      const sv = f32(f32(Math.sin(freq)) * c.attn_scaling);
      cos[t * hd + i] = cos[t * hd + i + half] = cv; // emb = cat([freqs, freqs], -1)
      sin[t * hd + i] = sin[t * hd + i + half] = sv;
    }
  }
  return { cos, sin, hd };
}

// ---- rotate_half, apply_rotary_pos_embd (#L67, #L72) ----

/** rotate_half(x) = cat([-x[..., hd/2:], x[..., :hd/2]], -1) */
function rotateHalf(x: tf.Tensor4D): tf.Tensor4D {
  const half = x.shape[3] / 2;
  const [x1, x2] = tf.split(x, [half, half], 3);
  return tf.concat([tf.neg(x2), x1], 3) as tf.Tensor4D;
}

/**
 * position_ids: skip_padding. For a mask [B, L] (0 = padded), the position id of columns
 * from..L-1 of every row: the number of kept columns before it (a padded column gets the id of
 * the next kept one; it is masked out anyway). Returns [B * (L - from)] row-major.
 */
export function keptPositions(mask: ArrayLike<number>, B: number, L: number, from: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < B; b++) {
    let kept = 0;
    for (let t = 0; t < L; t++) {
      if (t >= from) out.push(kept);
      if (mask[b * L + t] !== 0) kept++;
    }
  }
  return out;
}

/** The adjoint of rotate_half: cat([z[..., hd/2:], -z[..., :hd/2]], -1) */
function rotateHalfT(z: tf.Tensor): tf.Tensor {
  const half = z.shape[z.shape.length - 1] / 2;
  const [z1, z2] = tf.split(z, [half, half], -1);
  return tf.concat([z2, tf.neg(z1)], -1);
}

/**
 * q * cos + rotate_half(q) * sin, for q [B, H, T, hd] and cos, sin [1, 1, T, hd] (constants). A
 * custom gradient, dy * cos + rotate_half^T(dy * sin), so the tape keeps none of the intermediates.
 */
export function applyRope(x: tf.Tensor4D, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor4D {
  const op = customOp((x_: tf.Tensor, save: tf.GradSaveFunc) => {
    save([cos, sin]); // kept for the backward pass (the caller's tidy may end before it)
    return {
      // one addon pass when the native kernels run (bit-identical: core/kernels/native-direct.ts)
      value: ropeNative(x_, cos, sin, false) ?? tf.add(tf.mul(x_, cos), tf.mul(rotateHalf(x_ as tf.Tensor4D), sin)),
      gradFunc: (dy: tf.Tensor, [c, s]: tf.Tensor[]) => tf.tidy(() => ropeNative(dy, c, s, true) ?? tf.add(tf.mul(dy, c), rotateHalfT(tf.mul(dy, s)))),
    };
  });
  return op(x) as tf.Tensor4D;
}

// ---- LanguageModel (#L205: blocks #L183, attention #L87, MLP #L164) ----

/** The linear maps of one block, on [B, T, in] inputs. */
export interface BlockLinears {
  /** h [B, T, C] -> q [B, H, T, hd] and k [B, Hkv, T, hd] after RoPE, v [B, Hkv, T, hd] */
  qkv(h: tf.Tensor): { q: tf.Tensor4D; k: tf.Tensor4D; v: tf.Tensor4D };
  /** attention output [B, T, C] -> [B, T, C] */
  out(y: tf.Tensor): tf.Tensor;
  /** h [B, T, C] -> gate, up [B, T, inter] (before SiLU) */
  gateUp(h: tf.Tensor): [tf.Tensor, tf.Tensor];
  /** [B, T, inter] -> [B, T, C] */
  down(m: tf.Tensor): tf.Tensor;
}

/** What every block's attention of one forward pass shares. */
interface AttentionContext {
  cache?: LlamaKVCache;
  /** causal -inf + padding finfo.min on keys [B, 1, T, Ttot], or null (nothing to mask) */
  bias: tf.Tensor | null;
  /** [B, 1, T, 1]: 0 for padded query rows, zeroed after attention (nanoVLM) */
  keepQuery: tf.Tensor | null;
  training: boolean;
}

export class LlamaDecoder implements Decoder {
  readonly params = new Map<string, tf.Variable>();
  readonly buffers = new Map<string, tf.Tensor>();
  readonly hiddenDim: number;
  readonly vocabSize: number;
  readonly eosTokenId: number;
  readonly maxLength: number;
  readonly cfg: LlamaConfig;
  readonly headDim: number;
  /** generation's fast path (llama-decode.ts), made on first use */
  private fast: LlamaFastPath | null = null;

  constructor(cfg: LlamaConfig, rng: Rng) {
    this.cfg = cfg;
    this.hiddenDim = cfg.hidden_dim;
    this.vocabSize = cfg.vocab_size;
    this.eosTokenId = cfg.eos_token_id;
    this.maxLength = cfg.max_length;
    this.headDim = cfg.hidden_dim / cfg.n_heads;
    // LanguageModel._init_weights: Linear and Embedding N(0, 0.02), RMSNorm weights 1
    for (const [name, shape] of Object.entries(llamaParamShapes(cfg))) {
      const init = /norm[12]?\.weight$/.test(name) ? constInit(shape, 1) : normalInit(rng, shape, 0.02);
      this.params.set(name, param(init, shape));
    }
    const inv = ropeInvFreq(cfg);
    this.buffers.set('rotary_embd.inv_freq', tf.tensor1d(inv, 'float32'));
  }

  private p<T extends tf.Tensor = tf.Tensor2D>(name: string): T {
    return this.params.get(name) as unknown as T;
  }

  /** the linear layers (model.adapters targets): q, k, v, out of the attention and gate, up, down of the MLP of each block */
  linearLayers(): string[] {
    return llamaLinearLayers(this.cfg.n_blocks);
  }

  embed(ids: tf.Tensor2D): tf.Tensor3D {
    return tf.gather(this.p('token_embedding.weight'), ids.dtype === 'int32' ? ids : ids.toInt()) as tf.Tensor3D; // [B, T] -> [B, T, C]
  }

  newCache(batchSize: number): LlamaKVCache {
    return new LlamaKVCache(batchSize, this.cfg.n_blocks);
  }

  /** LanguageModel.forward (#L234): x [B, T, C] (embedded tokens, image tokens prepended) -> hidden [B, T, C] after the final norm; `checkpoint`: activation checkpointing per block (training, no cache) */
  /** forward() takes `segments` (packed rows, block-diagonal mask, positions from 0 per sample) */
  readonly segmentMasks = true;

  forward(x: tf.Tensor3D, opts: { mask?: tf.Tensor2D | null; cache?: KVCache; training?: boolean; checkpoint?: boolean; segments?: Int32Array | null } = {}): tf.Tensor3D {
    const eps = this.cfg.rms_eps;
    const training = !!opts.training;
    const checkpoint = !!opts.checkpoint && training && !opts.cache;
    if (checkpoint && this.cfg.dropout > 0) throw noCheckpointWithDropout('decoder', this.cfg.dropout);
    const cache = opts.cache as LlamaKVCache | undefined;
    const [B, T] = x.shape;
    const past = cache?.length ?? 0;
    const Ttot = past + T;

    // position ids past..past+T-1 (nanoVLM: no cumsum over the mask, left padding takes positions
    // too), or per row over the kept positions only (position_ids: skip_padding; this reads the
    // [B, Ttot] mask on the host, as the RoPE tables are host-built: one small read per forward)
    // (segments: packed rows with a block-diagonal mask, positions restart at 0 for each sample)
    const segments = opts.segments ?? null;
    if (segments && (cache || segments.length !== B * T)) throw new Error(`decoder segments: ${segments.length} ids for [${B}, ${T}]${cache ? ' with a cache' : ''} (expected [B, T], no cache)`);
    const rowPositions = segments
      ? segmentPositions(segments, B, T)
      : this.cfg.position_ids === 'skip_padding' && opts.mask
        ? keptPositions(hostValues(opts.mask, 'decoder mask') as Float32Array | Int32Array, B, Ttot, past)
        : null;
    const rope = rowPositions ? ropeCosSin(this.cfg, rowPositions) : ropeCosSin(this.cfg, Array.from({ length: T }, (_, i) => past + i));
    const ropeRows = rowPositions ? B : 1; // cos, sin [ropeRows, 1, T, hd]
    const linears = cache ? this.fastPath().linears(rope, T, ropeRows) : this.plainLinears(rope, T, ropeRows, checkpoint);

    // causal -inf + padding (1 - mask) * finfo.min on keys, [B, 1, T, Ttot]; padded query rows are
    // zeroed after attention: keepQuery [B, 1, T, 1]
    let keepQuery: tf.Tensor | null = null;
    if (opts.mask && (opts.mask.shape[0] !== B || opts.mask.shape[1] !== Ttot)) {
      throw new Error(`decoder mask has shape [${opts.mask.shape}], expected [${B}, ${Ttot}] (cache ${past} + ${T} new)`);
    }
    // one query at the last position and no padding: nothing to mask (the bias would be all zeros)
    let bias = T === 1 && !opts.mask ? null : attentionBias(T, Ttot, opts.mask ?? null);
    if (segments) bias = tf.add(bias!, segmentBias(segments, B, T)) as tf.Tensor4D; // + finfo.min between samples of a packed row [B, 1, T, T]
    if (opts.mask) keepQuery = tf.notEqual(opts.mask.slice([0, past], [B, T]), 0).toFloat().reshape([B, 1, T, 1]);
    if (checkpoint) [bias, keepQuery].forEach(keepForRecompute); // read again when the blocks are recomputed

    // each block in its own tidy: only its output (and what the gradient tape saved, or with
    // checkpointing nothing: it is recomputed in the backward pass) outlives it
    for (let i = 0; i < this.cfg.n_blocks; i++) {
      x = checkpointBlock((xIn: tf.Tensor3D) => this.block(i, xIn, linears(i), { cache, bias, keepQuery, training }), x, blockParams(this.params, i), checkpoint);
    }
    if (cache) cache.length = Ttot;
    return rmsNorm(x, this.p('norm.weight'), eps) as tf.Tensor3D; // LanguageModel.norm
  }

  /** LanguageModelBlock.forward (#L191): x + attn(norm1(x)), then x + mlp(norm2(x)) ([B, T, C] throughout) */
  private block(i: number, x: tf.Tensor3D, lin: BlockLinears, ctx: AttentionContext): tf.Tensor3D {
    const { rms_eps: eps, dropout } = this.cfg;
    const b = `blocks.${i}.`;
    const y = this.attention(i, rmsNorm(x, this.p(b + 'norm1.weight'), eps), lin, ctx); // [B, T, C]
    x = tf.add(x, maybeDropout(y, dropout, ctx.training)) as tf.Tensor3D;
    return tf.add(x, this.mlp(rmsNorm(x, this.p(b + 'norm2.weight'), eps), lin)) as tf.Tensor3D;
  }

  /**
   * LanguageModelGroupedQueryAttention.forward (#L115): q, k, v projections, RoPE on q and k, the cache
   * (when generating), grouped-query attention with the causal + padding bias, padded query rows
   * zeroed, out_proj. h [B, T, C] -> [B, T, C].
   */
  private attention(i: number, h: tf.Tensor, lin: BlockLinears, ctx: AttentionContext): tf.Tensor {
    const qkv = lin.qkv(h); // after RoPE: q [B, H, T, hd], k, v [B, Hkv, T, hd]
    const [k, v] = ctx.cache ? ctx.cache.append(i, qkv.k, qkv.v) : [qkv.k, qkv.v]; // [B, Hkv, Ttot, hd]
    let y: tf.Tensor = attention(qkv.q, k, v, { bias: ctx.bias, dropout: this.cfg.dropout, training: ctx.training }); // [B, H, T, hd]
    if (ctx.keepQuery) y = tf.mul(y, ctx.keepQuery);
    return lin.out(mergeHeads(y)); // [B, H, T, hd] -> [B, T, C] -> out_proj
  }

  /** LanguageModelMLP.forward (#L175): down_proj(silu(gate_proj(x)) * up_proj(x)), [B, T, C] -> [B, T, C] */
  private mlp(h: tf.Tensor, lin: BlockLinears): tf.Tensor {
    const [gate, up] = lin.gateUp(h); // [B, T, inter] each
    return lin.down(siluMul(gate, up)); // silu(gate) * up (one fused pass each way when native)
  }

  /** Block i's linear maps on the parameters, RoPE as nanoVLM writes it (training, full recompute). */
  private plainLinears(rope: { cos: Float32Array; sin: Float32Array }, T: number, rows = 1, checkpoint = false): (i: number) => BlockLinears {
    const { n_heads: H, n_kv_heads: Hkv } = this.cfg;
    const hd = this.headDim;
    const cos = tf.tensor4d(rope.cos, [rows, 1, T, hd]);
    const sin = tf.tensor4d(rope.sin, [rows, 1, T, hd]);
    if (checkpoint) [cos, sin].forEach(keepForRecompute); // read again when the blocks are recomputed
    return (i) => {
      // nn.Linear(bias=False) of block i, plus its adapter when model.adapters wraps it
      const lin = (name: string, x: tf.Tensor) => adaptedLinear(this, `blocks.${i}.${name}`, x, this.p(`blocks.${i}.${name}.weight`));
      return {
        qkv: (h) => {
          const q = splitHeads(lin('attn.q_proj', h), H); // [B, H, T, hd]
          const k = splitHeads(lin('attn.k_proj', h), Hkv); // [B, Hkv, T, hd]
          const v = splitHeads(lin('attn.v_proj', h), Hkv);
          return { q: applyRope(q, cos, sin), k: applyRope(k, cos, sin), v };
        },
        out: (y) => lin('attn.out_proj', y),
        gateUp: (h) => [lin('mlp.gate_proj', h), lin('mlp.up_proj', h)],
        down: (m) => lin('mlp.down_proj', m),
      };
    };
  }

  /** Generation's fast path (llama-decode.ts): fused, transposed copies of the weights, rebuilt when they change. */
  private fastPath(): LlamaFastPath {
    return (this.fast ??= new LlamaFastPath(this));
  }

  /** RoPE cos/sin tables [T, hd] for the given positions (what nanoVLM's rotary_embd returns). */
  ropeTables(positions: number[]): { cos: Float32Array; sin: Float32Array } {
    return ropeCosSin(this.cfg, positions);
  }

  /** the head's weight [V, C]: the token embedding when tied (lm_tie_weights) */
  headWeight(): tf.Tensor2D {
    return this.cfg.tie_weights ? this.p('token_embedding.weight') : this.p('head.weight');
  }

  /** [B, T, C] -> [B, T, V] */
  head(hidden: tf.Tensor3D): tf.Tensor3D {
    return linear(hidden, this.headWeight()) as tf.Tensor3D;
  }

  /**
   * head() for generation (core/generate.ts uses it when a decoder has it): the same logits from
   * the transposed copy of the head weight kept with the generation weights. No gradient flows to
   * the parameters through it: never use it in training.
   */
  inferenceHead(hidden: tf.Tensor3D): tf.Tensor3D {
    return this.fastPath().head(hidden);
  }

  /**
   * Generation, one new token per row with the KV cache: the logits [B, V] of the next position
   * (what forward(embed(ids), {cache, mask}) then inferenceHead would give, up to float rounding),
   * with everything but the products on the host (llama-decode.ts LlamaFastPath.decodeNext).
   * `mask`: [B, cache.length + 1] host mask (0 = padded key) or null.
   */
  decodeNext(ids: Int32Array, cache: LlamaKVCache, mask: Int32Array | null = null): Float32Array {
    return this.fastPath().decodeNext(ids, cache, mask);
  }

  nanovlmConfig(): Record<string, unknown> {
    const c = this.cfg;
    return {
      lm_hidden_dim: c.hidden_dim,
      lm_inter_dim: c.inter_dim,
      lm_rms_eps: c.rms_eps,
      lm_re_base: c.re_base,
      lm_max_position_embeddings: c.max_position_embeddings,
      lm_vocab_size: c.vocab_size,
      lm_n_heads: c.n_heads,
      lm_n_kv_heads: c.n_kv_heads,
      lm_dropout: c.dropout,
      lm_n_blocks: c.n_blocks,
      lm_attn_scaling: c.attn_scaling,
      lm_max_length: c.max_length,
      lm_use_tokens: false,
      lm_tie_weights: c.tie_weights,
      lm_model_type: c.model_type,
      lm_eos_token_id: c.eos_token_id,
    };
  }

  dispose(): void {
    this.fast?.dispose();
    this.fast = null;
    for (const v of this.params.values()) v.dispose();
    for (const t of this.buffers.values()) t.dispose();
    this.params.clear();
    this.buffers.clear();
  }
}

// ---- Hugging Face Llama checkpoints (LanguageModel.from_pretrained, #L281) -------------------------

/** LlamaConfig field -> our option (transformers' defaults for fields the file omits). */
const HF_LLAMA_CONFIG: [hf: string, ours: keyof LlamaConfig, dflt: number | null][] = [
  ['hidden_size', 'hidden_dim', 4096],
  ['intermediate_size', 'inter_dim', 11008],
  ['rms_norm_eps', 'rms_eps', 1e-6],
  ['rope_theta', 're_base', 10000],
  ['max_position_embeddings', 'max_position_embeddings', 2048],
  ['num_attention_heads', 'n_heads', 32],
  ['num_key_value_heads', 'n_kv_heads', null], // null: = num_attention_heads
  ['attention_dropout', 'dropout', 0],
  ['num_hidden_layers', 'n_blocks', 32],
];

/** HF key -> nanoVLM key; `{i}` = block index. */
export const HF_LLAMA_KEYS: [hf: string, ours: string][] = [
  ['model.embed_tokens.weight', 'token_embedding.weight'],
  ['model.norm.weight', 'norm.weight'],
  ['model.layers.{i}.self_attn.q_proj.weight', 'blocks.{i}.attn.q_proj.weight'],
  ['model.layers.{i}.self_attn.k_proj.weight', 'blocks.{i}.attn.k_proj.weight'],
  ['model.layers.{i}.self_attn.v_proj.weight', 'blocks.{i}.attn.v_proj.weight'],
  ['model.layers.{i}.self_attn.o_proj.weight', 'blocks.{i}.attn.out_proj.weight'],
  ['model.layers.{i}.mlp.gate_proj.weight', 'blocks.{i}.mlp.gate_proj.weight'],
  ['model.layers.{i}.mlp.up_proj.weight', 'blocks.{i}.mlp.up_proj.weight'],
  ['model.layers.{i}.mlp.down_proj.weight', 'blocks.{i}.mlp.down_proj.weight'],
  ['model.layers.{i}.input_layernorm.weight', 'blocks.{i}.norm1.weight'],
  ['model.layers.{i}.post_attention_layernorm.weight', 'blocks.{i}.norm2.weight'],
];
/** only with tie_weights: false */
export const HF_LLAMA_HEAD: [hf: string, ours: string] = ['lm_head.weight', 'head.weight'];

/** Shapes (and what nanoVLM does not implement) from a Llama config.json. */
export function readLlamaConfig(folder: string): { shapes: Partial<LlamaConfig>; vocabSize: number; notes: string[] } {
  return llamaShapes(readBackboneConfig(folder, 'Llama'));
}

function llamaShapes(cfg: Record<string, unknown>): { shapes: Partial<LlamaConfig>; vocabSize: number; notes: string[] } {
  const out: Record<string, unknown> = {};
  for (const [hf, ours, dflt] of HF_LLAMA_CONFIG) out[ours] = cfg[hf] ?? dflt ?? cfg.num_attention_heads ?? 32;
  // what nanoVLM's LanguageModel does not implement (it loads such checkpoints all the same)
  const notes: string[] = [];
  if (cfg.model_type !== undefined && cfg.model_type !== 'llama') notes.push(`model_type is "${cfg.model_type}"; nanoVLM's decoder is a Llama`);
  if (cfg.rope_scaling) notes.push(`rope_scaling ${JSON.stringify(cfg.rope_scaling)} is ignored (nanoVLM uses plain RoPE)`);
  if (cfg.attention_bias || cfg.mlp_bias) notes.push('attention/MLP biases in the checkpoint are ignored (nanoVLM has none)');
  if (cfg.head_dim !== undefined && cfg.head_dim !== Number(out.hidden_dim) / Number(out.n_heads)) {
    notes.push(`head_dim ${cfg.head_dim} differs from hidden_size / num_attention_heads, which nanoVLM assumes`);
  }
  return { shapes: out as Partial<LlamaConfig>, vocabSize: Number(cfg.vocab_size ?? 32000), notes };
}

/** LanguageModel.from_pretrained: the key table; a recipe vocabulary larger than the checkpoint's gets extra rows ~ N(0, 0.02). */
function loadHfLlama(model: LlamaDecoder, folder: string, rng: Rng, log: (m: string) => void): void {
  const table: HubTensor[] = expandBlocks(HF_LLAMA_KEYS, model.cfg.n_blocks).map(([hf, ours]) => ({ from: [hf], to: ours }));
  if (!model.cfg.tie_weights) table.push({ from: [HF_LLAMA_HEAD[0]], to: HF_LLAMA_HEAD[1], orElse: ['model.embed_tokens.weight'] });
  loadHubTensors(model.params, folder, table, {
    what: 'Llama',
    extendable: (ours) => ours === 'token_embedding.weight' || ours === 'head.weight',
    extendRows: (ours, data, want) => {
      // vocabulary extension: copy the Hub rows, new rows ~ N(0, 0.02)
      const ext = new Float32Array(want[0] * want[1]);
      ext.set(data);
      ext.set(normalInit(rng, [want[0] - data.length / want[1], want[1]], 0.02), data.length);
      log(`extended ${ours} from ${data.length / want[1]} to ${want[0]} rows (new rows ~ N(0, 0.02))`);
      return ext;
    },
  });
}

// ---- plugin ----------------------------------------------------------------------------------------

const options = {
  type: 'object',
  additionalProperties: false,
  properties: {
    from: {
      type: ['string', 'null'],
      description: 'Hugging Face Llama/SmolLM2 checkpoint (repo id or local folder with config.json + model.safetensors or a sharded model.safetensors.index.json); its config sets the shapes',
    },
    hidden_dim: { type: 'integer', minimum: 1, description: 'lm_hidden_dim (default 576; from the checkpoint with `from`)' },
    inter_dim: { type: 'integer', minimum: 1, description: 'lm_inter_dim, MLP width (default 1536)' },
    rms_eps: { type: 'number', exclusiveMinimum: 0, description: 'lm_rms_eps (default 1e-5)' },
    re_base: { type: 'number', exclusiveMinimum: 0, description: 'lm_re_base, RoPE base (default 100000)' },
    max_position_embeddings: { type: 'integer', minimum: 1, description: 'lm_max_position_embeddings (default 8192)' },
    n_heads: { type: 'integer', minimum: 1, description: 'lm_n_heads (default 9)' },
    n_kv_heads: { type: 'integer', minimum: 1, description: 'lm_n_kv_heads (default 3)' },
    n_blocks: { type: 'integer', minimum: 0, description: 'lm_n_blocks (default 30)' },
    dropout: { type: 'number', minimum: 0, maximum: 1, description: 'lm_dropout, used when training (default 0)' },
    vocab_size: { type: 'integer', minimum: 1, default: D.lm_vocab_size, description: 'lm_vocab_size; with `from`, at least the checkpoint vocab (extra rows ~ N(0, 0.02))' },
    attn_scaling: { type: 'number', default: D.lm_attn_scaling, description: 'lm_attn_scaling (multiplies RoPE cos/sin)' },
    max_length: { type: 'integer', minimum: 1, default: D.lm_max_length, description: 'lm_max_length: text tokens per sample (collator pads/truncates to it)' },
    tie_weights: { type: 'boolean', default: D.lm_tie_weights, description: 'lm_tie_weights: head shares the token embedding' },
    eos_token_id: { type: 'integer', minimum: 0, default: D.lm_eos_token_id, description: 'lm_eos_token_id' },
    position_ids: {
      type: 'string',
      enum: ['nanovlm', 'skip_padding'],
      default: 'nanovlm',
      description: "RoPE position ids: nanovlm = 0..T-1 including left padding (nanoVLM v0.1, exact parity); skip_padding = per row over the unpadded positions (Hugging Face style): padding no longer moves the answer relative to the image (docs/model.md). Not stored in nanoVLM's config.json",
    },
  },
} as const;

type Options = { from?: string | null } & Partial<Omit<LlamaConfig, 'model_type'>>;

function configFrom(opts: Options, hub: Partial<LlamaConfig> | null, yamlPath: string, from?: string): LlamaConfig {
  const c = backboneConfig(LLAMA_DEFAULTS, opts, hub, yamlPath, from);
  const fail = (msg: string, key: string) => {
    throw new UserError(msg, { where: { yamlPath: `${yamlPath}.${key}` } });
  };
  if (c.hidden_dim % c.n_heads !== 0) fail(`hidden_dim ${c.hidden_dim} is not divisible by n_heads ${c.n_heads}`, 'n_heads');
  if ((c.hidden_dim / c.n_heads) % 2 !== 0) fail(`head dim ${c.hidden_dim / c.n_heads} must be even for rotary embeddings`, 'n_heads');
  if (c.n_heads % c.n_kv_heads !== 0) fail(`n_heads ${c.n_heads} is not divisible by n_kv_heads ${c.n_kv_heads}`, 'n_kv_heads');
  return c;
}

export default definePlugin({
  kind: 'decoder',
  name: 'llama',
  // nanoVLM v0.1's language model: VLMConfig lm_* fields <-> these options (config.json -> recipe)
  nanovlm: {
    config: {
      lm_hidden_dim: 'hidden_dim', lm_inter_dim: 'inter_dim', lm_rms_eps: 'rms_eps', lm_re_base: 're_base', lm_max_position_embeddings: 'max_position_embeddings',
      lm_vocab_size: 'vocab_size', lm_n_heads: 'n_heads', lm_n_kv_heads: 'n_kv_heads', lm_dropout: 'dropout', lm_n_blocks: 'n_blocks', lm_attn_scaling: 'attn_scaling',
      lm_max_length: 'max_length', lm_tie_weights: 'tie_weights', lm_eos_token_id: 'eos_token_id',
    },
  },
  description: 'Llama/SmolLM2 decoder (nanoVLM v0.1 LanguageModel) with RoPE, GQA and a KV cache; `from` loads a Hub Llama checkpoint',
  options,
  async create(options_, ctx: PluginContext) {
    const opts = options_ as Options;
    const folder = opts.from ? await resolveBackbone(opts.from, ctx) : null;
    const hub = folder ? readLlamaConfig(folder) : null;
    for (const n of hub?.notes ?? []) ctx.log.warn(`${ctx.yamlPath}: ${opts.from}: ${n}`);
    const cfg = configFrom(opts, hub?.shapes ?? null, ctx.yamlPath, opts.from ?? undefined);
    if (hub && cfg.vocab_size < hub.vocabSize) {
      throw new UserError(`vocab_size ${cfg.vocab_size} is smaller than the checkpoint's vocabulary (${hub.vocabSize})`, {
        where: { yamlPath: `${ctx.yamlPath}.vocab_size` },
      });
    }
    const model = await buildBackbone(
      folder,
      () => new LlamaDecoder(cfg, new Rng(ctx.seed, 'decoder')),
      (m, dir) => loadHfLlama(m, dir, new Rng(ctx.seed, 'decoder.vocab-extension'), (line) => ctx.log.info(`${ctx.yamlPath}: ${line}`)),
    );
    if (folder) ctx.log.info(`${ctx.yamlPath}: loaded Llama weights from ${opts.from}`);
    return model;
  },
  describe(options_): ModuleDescription {
    const opts = options_ as Options;
    const local = localBackboneConfig(opts.from, 'Llama');
    const cfg = configFrom(opts, local ? llamaShapes(local).shapes : null, 'model.decoder', opts.from ?? undefined);
    return { params: llamaParamShapes(cfg), hiddenDim: cfg.hidden_dim, linearLayers: llamaLinearLayers(cfg.n_blocks) };
  },
});
