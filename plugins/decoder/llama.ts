// Decoder: the Llama / SmolLM2 language model of nanoVLM v0.1 (models/language_model.py), after
// https://github.com/huggingface/transformers/blob/main/src/transformers/models/llama/modeling_llama.py
//   token embedding; blocks x = x + attn(norm1(x)); x = x + down(silu(gate(y)) * up(y)), y = norm2(x);
//   final RMSNorm; head tied to the token embedding when tie_weights.
//   Rotary embeddings exactly as nanoVLM's RotaryEmbedding (half-split layout, dynamic scaling past
//   max_position_embeddings, cos/sin times attn_scaling); grouped-query attention (query head h uses
//   kv head h // (n_heads / n_kv_heads)); masks as nanoVLM's manual attention path (causal -inf, padding
//   (1 - mask) * finfo.min added, attention output of padded query rows zeroed before out_proj).
//   A KV cache (newCache) lets generation feed one token at a time; positions continue from its length.
//   It equals full recompute as long as the sequence stays within max_position_embeddings (past it,
//   nanoVLM rescales RoPE for the whole sequence at every step, which cached keys cannot follow).
// Parameter names are nanoVLM's (`blocks.0.attn.q_proj.weight`, ...), PyTorch layout.
// `from:` loads a Hugging Face Llama checkpoint (LanguageModel.from_pretrained): key table HF_LLAMA_KEYS;
// a recipe vocab larger than the checkpoint's gets extra rows ~ N(0, 0.02) (seeded).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { definePlugin, type ModuleDescription } from '../../core/plugin.ts';
import type { Decoder, KVCache, PluginContext } from '../../core/types.ts';
import { UserError } from '../../core/errors.ts';
import { withoutInit, attention, attentionBias, constInit, customOp, FLOAT32_MIN, linear, maybeDropout, mergeHeads, normalInit, param, Rng, rmsNorm, silu, splitHeads } from '../../core/ops.ts';
import { mergeHubShapes, VLM_CONFIG_DEFAULTS as D } from '../../core/model/config.ts';
import { openSafetensors } from '../../core/weights/safetensors.ts';
import { resolveSource } from '../../core/hub/index.ts';
import { blockParams, checkpointBlock, keepForRecompute, noCheckpointWithDropout } from '../../core/train/activation-checkpointing.ts';
import { hostValues } from '../../core/host.ts';

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

// ---- rotary embeddings ---------------------------------------------------------------------------

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
function applyRope(x: tf.Tensor4D, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor4D {
  const op = customOp((x_: tf.Tensor, save: tf.GradSaveFunc) => {
    save([cos, sin]); // kept for the backward pass (the caller's tidy may end before it)
    return {
      value: tf.add(tf.mul(x_, cos), tf.mul(rotateHalf(x_ as tf.Tensor4D), sin)),
      gradFunc: (dy: tf.Tensor, [c, s]: tf.Tensor[]) => tf.tidy(() => tf.add(tf.mul(dy, c), rotateHalfT(tf.mul(dy, s)))),
    };
  });
  return op(x) as tf.Tensor4D;
}

// ---- KV cache --------------------------------------------------------------------------------------

/**
 * Per-layer keys/values (after RoPE) of the positions seen so far. Two storages, converted on
 * demand: tensors [B, n_kv_heads, length, hd] kept outside any tf.tidy (the tensor path: prefill,
 * several tokens at once), or host arrays [B, n_kv_heads, capacity, hd] written in place, grown
 * by doubling (LlamaDecoder.decodeNext: one token per row, no concat of the whole cache per token).
 */
export class LlamaKVCache implements KVCache {
  k: (tf.Tensor4D | null)[];
  v: (tf.Tensor4D | null)[];
  /** host storage of block i (null: in the tensors, or empty) */
  host: ({ k: Float32Array; v: Float32Array; cap: number; Hkv: number; hd: number } | null)[];
  length = 0;
  constructor(
    readonly batchSize: number,
    nBlocks: number,
  ) {
    this.k = new Array(nBlocks).fill(null);
    this.v = new Array(nBlocks).fill(null);
    this.host = new Array(nBlocks).fill(null);
  }
  /** append this step's k/v of block i and return the full k/v */
  append(i: number, k: tf.Tensor4D, v: tf.Tensor4D): [tf.Tensor4D, tf.Tensor4D] {
    if (this.host[i]) this.toTensors(i);
    const oldK = this.k[i];
    const oldV = this.v[i];
    const fullK = oldK ? (tf.concat([oldK, k], 2) as tf.Tensor4D) : k;
    const fullV = oldV ? (tf.concat([oldV, v], 2) as tf.Tensor4D) : v;
    this.k[i] = tf.keep(fullK); // survives the caller's tf.tidy; freed on the next append or dispose()
    this.v[i] = tf.keep(fullV);
    oldK?.dispose();
    oldV?.dispose();
    return [fullK, fullV];
  }
  /** block i's host storage with room for `need` positions (moved out of the tensors if there) */
  hostKV(i: number, need: number, Hkv: number, hd: number): { k: Float32Array; v: Float32Array; cap: number; Hkv: number; hd: number } {
    const B = this.batchSize;
    const len = this.length;
    let h = this.host[i];
    if (h && h.cap >= need) return h;
    const cap = Math.max(need, 2 * (h?.cap ?? 0), len + 64);
    const next = { k: new Float32Array(B * Hkv * cap * hd), v: new Float32Array(B * Hkv * cap * hd), cap, Hkv, hd };
    // from the tensors [B, Hkv, len, hd] or the smaller host arrays [B, Hkv, oldCap, hd]
    const fromK = h ? h.k : this.k[i] ? (this.k[i]!.dataSync() as Float32Array) : null;
    const fromV = h ? h.v : this.v[i] ? (this.v[i]!.dataSync() as Float32Array) : null;
    const fromCap = h ? h.cap : len;
    if (fromK && fromV) {
      for (let r = 0; r < B * Hkv; r++) {
        next.k.set(fromK.subarray(r * fromCap * hd, (r * fromCap + len) * hd), r * cap * hd);
        next.v.set(fromV.subarray(r * fromCap * hd, (r * fromCap + len) * hd), r * cap * hd);
      }
    }
    this.k[i]?.dispose();
    this.v[i]?.dispose();
    this.k[i] = this.v[i] = null;
    this.host[i] = h = next;
    return h;
  }
  /** move block i's host storage back into tensors [B, Hkv, length, hd] */
  private toTensors(i: number): void {
    const { k, v, cap, Hkv, hd } = this.host[i]!;
    const B = this.batchSize;
    const len = this.length;
    const pack = (src: Float32Array) => {
      const out = new Float32Array(B * Hkv * len * hd);
      for (let r = 0; r < B * Hkv; r++) out.set(src.subarray(r * cap * hd, (r * cap + len) * hd), r * len * hd);
      return tf.keep(tf.tensor4d(out, [B, Hkv, len, hd]));
    };
    this.k[i] = pack(k);
    this.v[i] = pack(v);
    this.host[i] = null;
  }
  dispose(): void {
    for (const t of [...this.k, ...this.v]) t?.dispose();
    this.k.fill(null);
    this.v.fill(null);
    this.host.fill(null);
    this.length = 0;
  }
}

// ---- the model -----------------------------------------------------------------------------------

/** The linear maps of one block, on [B, T, in] inputs. */
interface BlockLinears {
  /** h [B, T, C] -> q [B, H, T, hd] and k [B, Hkv, T, hd] after RoPE, v [B, Hkv, T, hd] */
  qkv(h: tf.Tensor): { q: tf.Tensor4D; k: tf.Tensor4D; v: tf.Tensor4D };
  /** attention output [B, T, C] -> [B, T, C] */
  out(y: tf.Tensor): tf.Tensor;
  /** h [B, T, C] -> gate, up [B, T, inter] (before SiLU) */
  gateUp(h: tf.Tensor): [tf.Tensor, tf.Tensor];
  /** [B, T, inter] -> [B, T, C] */
  down(m: tf.Tensor): tf.Tensor;
}

/** One block's weights for generation, transposed to [in, out] and fused (LlamaDecoder.generation). */
interface GenerationWeights {
  qkv: tf.Tensor2D;
  out: tf.Tensor2D;
  gateUp: tf.Tensor2D;
  down: tf.Tensor2D;
}

/** y = x W for x [..., in] and a weight already transposed to W [in, out] -> [..., out] */
function linearT(x: tf.Tensor, w: tf.Tensor2D): tf.Tensor {
  const [inDim, outDim] = w.shape;
  return tf.matMul(x.reshape([-1, inDim]) as tf.Tensor2D, w).reshape([...x.shape.slice(0, -1), outDim]);
}

// ---- host-side pieces of one generation step (LlamaDecoder.decodeNext) --------------------------------
// Small monomorphic functions on typed arrays, so that V8 optimises them after a few calls.

/** out[b] = x[b] / sqrt(mean(x[b]^2) + eps) * w for the B rows of x [B, C] */
function hostRmsNorm(x: Float32Array, w: Float32Array, B: number, C: number, eps: number, out: Float32Array): Float32Array {
  for (let b = 0; b < B; b++) {
    const o = b * C;
    let ss = 0;
    for (let j = 0; j < C; j++) ss += x[o + j] * x[o + j];
    const r = 1 / Math.sqrt(Math.fround(ss / C) + eps);
    for (let j = 0; j < C; j++) out[o + j] = x[o + j] * r * w[j];
  }
  return out;
}

/** RoPE of one head x = src[a..a+hd]: out[at + d] = x[d] cos[d] + rotate_half(x)[d] sin[d] */
function hostRope(src: Float32Array, a: number, cos: Float32Array, sin: Float32Array, hd: number, out: Float32Array, at: number): void {
  const half = hd >> 1;
  for (let d = 0; d < half; d++) out[at + d] = src[a + d] * cos[d] - src[a + d + half] * sin[d];
  for (let d = half; d < hd; d++) out[at + d] = src[a + d] * cos[d] + src[a + d - half] * sin[d];
}

/**
 * Attention of one query q [hd] over L cached positions (keys/values at K[base + t*hd], V[...]):
 * softmax(q k^T * scale + padding bias) v into y[at..at+hd]. mask[m0 + t] = 0: a padded key
 * (finfo.min added, as attentionBias).
 */
function hostAttend(
  q: Float32Array, K: Float32Array, V: Float32Array, base: number, L: number, hd: number, scale: number,
  mask: Int32Array | null, m0: number, scores: Float64Array, acc: Float64Array, y: Float32Array, at: number,
): void {
  let max = -Infinity;
  for (let t = 0; t < L; t++) {
    const o = base + t * hd;
    let dot = 0;
    for (let d = 0; d < hd; d++) dot += q[d] * K[o + d];
    let sc = Math.fround(Math.fround(dot) * scale);
    if (mask !== null && mask[m0 + t] === 0) sc = Math.fround(sc + FLOAT32_MIN);
    scores[t] = sc;
    if (sc > max) max = sc;
  }
  let sum = 0;
  for (let t = 0; t < L; t++) {
    const e = Math.exp(scores[t] - max);
    scores[t] = e;
    sum += e;
  }
  acc.fill(0);
  for (let t = 0; t < L; t++) {
    const p = scores[t] / sum;
    const o = base + t * hd;
    for (let d = 0; d < hd; d++) acc[d] += p * V[o + d];
  }
  for (let d = 0; d < hd; d++) y[at + d] = acc[d];
}

/** m[b] = silu(gate) * up for rows gu [B, 2I] = [gate | up] */
function hostSwiGLU(gu: Float32Array, B: number, I: number, m: Float32Array): void {
  for (let b = 0; b < B; b++) {
    const g0 = b * 2 * I;
    for (let e = 0; e < I; e++) {
      const g = gu[g0 + e];
      m[b * I + e] = (g / (1 + Math.exp(-g))) * gu[g0 + I + e];
    }
  }
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
  /**
   * Generation only (forward with a KV cache, decodeNext): every block's weights transposed once to
   * [in, out] (plain right operands: XNNPACK packs each once and reuses it for every token) and
   * fused (q, k, v in one product; gate and up in one), the head transposed, host copies of the
   * RMSNorm weights. Built from the parameters on first use and rebuilt when one of them was
   * reassigned (a training step gives a variable a new dataId); disposed with the model. Costs one
   * extra copy of the block and head weights.
   */
  private generation: { sources: object[]; blocks: GenerationWeights[]; headT: tf.Tensor2D; host?: { norms: { norm1: Float32Array; norm2: Float32Array }[]; normF: Float32Array } } | null = null;

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

  embed(ids: tf.Tensor2D): tf.Tensor3D {
    return tf.gather(this.p('token_embedding.weight'), ids.dtype === 'int32' ? ids : ids.toInt()) as tf.Tensor3D; // [B, T] -> [B, T, C]
  }

  newCache(batchSize: number): LlamaKVCache {
    return new LlamaKVCache(batchSize, this.cfg.n_blocks);
  }

  forward(x: tf.Tensor3D, opts: { mask?: tf.Tensor2D | null; cache?: KVCache; training?: boolean; checkpoint?: boolean } = {}): tf.Tensor3D {
    const { rms_eps: eps, dropout } = this.cfg;
    const training = !!opts.training;
    const checkpoint = !!opts.checkpoint && training && !opts.cache;
    if (checkpoint && dropout > 0) throw noCheckpointWithDropout('decoder', dropout);
    const cache = opts.cache as LlamaKVCache | undefined;
    const [B, T] = x.shape;
    const past = cache?.length ?? 0;
    const Ttot = past + T;

    // position ids past..past+T-1 (nanoVLM: no cumsum over the mask, left padding takes positions
    // too), or per row over the kept positions only (position_ids: skip_padding; this reads the
    // [B, Ttot] mask on the host, as the RoPE tables are host-built: one small read per forward)
    const rowPositions = this.cfg.position_ids === 'skip_padding' && opts.mask ? keptPositions(hostValues(opts.mask, 'decoder mask') as Float32Array | Int32Array, B, Ttot, past) : null;
    const rope = rowPositions ? ropeCosSin(this.cfg, rowPositions) : ropeCosSin(this.cfg, Array.from({ length: T }, (_, i) => past + i));
    const ropeRows = rowPositions ? B : 1; // cos, sin [ropeRows, 1, T, hd]
    const linears = cache ? this.generationLinears(rope, T, ropeRows) : this.plainLinears(rope, T, ropeRows, checkpoint);

    // causal -inf + padding (1 - mask) * finfo.min on keys, [B, 1, T, Ttot]; padded query rows are
    // zeroed after attention: keepQuery [B, 1, T, 1]
    let keepQuery: tf.Tensor | null = null;
    if (opts.mask && (opts.mask.shape[0] !== B || opts.mask.shape[1] !== Ttot)) {
      throw new Error(`decoder mask has shape [${opts.mask.shape}], expected [${B}, ${Ttot}] (cache ${past} + ${T} new)`);
    }
    // one query at the last position and no padding: nothing to mask (the bias would be all zeros)
    const bias = T === 1 && !opts.mask ? null : attentionBias(T, Ttot, opts.mask ?? null);
    if (opts.mask) keepQuery = tf.notEqual(opts.mask.slice([0, past], [B, T]), 0).toFloat().reshape([B, 1, T, 1]);
    if (checkpoint) [bias, keepQuery].forEach(keepForRecompute); // read again when the blocks are recomputed

    // each block in its own tidy: only its output (and what the gradient tape saved, or with
    // checkpointing nothing: it is recomputed in the backward pass) outlives it
    for (let i = 0; i < this.cfg.n_blocks; i++) {
      x = checkpointBlock((xIn: tf.Tensor3D) => {
        let x = xIn;
        const b = `blocks.${i}.`;
        // attention
        const lin = linears(i);
        const h = rmsNorm(x, this.p(b + 'norm1.weight'), eps);
        const qkv = lin.qkv(h); // after RoPE: q [B, H, T, hd], k, v [B, Hkv, T, hd]
        const [k, v] = cache ? cache.append(i, qkv.k, qkv.v) : [qkv.k, qkv.v]; // [B, Hkv, Ttot, hd]
        let y: tf.Tensor = attention(qkv.q, k, v, { bias, dropout, training }); // [B, H, T, hd]
        if (keepQuery) y = tf.mul(y, keepQuery);
        y = lin.out(mergeHeads(y)); // [B, T, C]
        x = tf.add(x, maybeDropout(y, dropout, training)) as tf.Tensor3D;
        // MLP
        const [gate, up] = lin.gateUp(rmsNorm(x, this.p(b + 'norm2.weight'), eps)); // [B, T, inter] each
        return tf.add(x, lin.down(tf.mul(silu(gate), up))) as tf.Tensor3D;
      }, x, blockParams(this.params, i), checkpoint);
    }
    if (cache) cache.length = Ttot;
    return rmsNorm(x, this.p('norm.weight'), eps) as tf.Tensor3D;
  }

  /** Block i's linear maps on the parameters, RoPE as nanoVLM writes it (training, full recompute). */
  private plainLinears(rope: { cos: Float32Array; sin: Float32Array }, T: number, rows = 1, checkpoint = false): (i: number) => BlockLinears {
    const { n_heads: H, n_kv_heads: Hkv } = this.cfg;
    const hd = this.headDim;
    const cos = tf.tensor4d(rope.cos, [rows, 1, T, hd]);
    const sin = tf.tensor4d(rope.sin, [rows, 1, T, hd]);
    if (checkpoint) [cos, sin].forEach(keepForRecompute); // read again when the blocks are recomputed
    return (i) => {
      const w = (name: string) => this.p(`blocks.${i}.${name}.weight`);
      return {
        qkv: (h) => {
          const q = splitHeads(linear(h, w('attn.q_proj')), H); // [B, H, T, hd]
          const k = splitHeads(linear(h, w('attn.k_proj')), Hkv); // [B, Hkv, T, hd]
          const v = splitHeads(linear(h, w('attn.v_proj')), Hkv);
          return { q: applyRope(q, cos, sin), k: applyRope(k, cos, sin), v };
        },
        out: (y) => linear(y, w('attn.out_proj')),
        gateUp: (h) => [linear(h, w('mlp.gate_proj')), linear(h, w('mlp.up_proj'))],
        down: (m) => linear(m, w('mlp.down_proj')),
      };
    };
  }

  /** The same maps on the generation weights (see `generation`): one product for q|k|v, one for gate|up. */
  private generationLinears(rope: { cos: Float32Array; sin: Float32Array }, T: number, rows = 1): (i: number) => BlockLinears {
    const { n_heads: H, n_kv_heads: Hkv, hidden_dim: C, inter_dim: I } = this.cfg;
    const hd = this.headDim;
    const kvDim = Hkv * hd;
    const { blocks } = this.generationWeights();
    const cos = tf.tensor4d(rope.cos, [rows, 1, T, hd]);
    const sin = tf.tensor4d(rope.sin, [rows, 1, T, hd]);
    return (i) => {
      const w = blocks[i];
      return {
        qkv: (h) => {
          const [q, k, v] = tf.split(linearT(h, w.qkv), [C, kvDim, kvDim], 2);
          return { q: applyRope(splitHeads(q, H), cos, sin), k: applyRope(splitHeads(k, Hkv), cos, sin), v: splitHeads(v, Hkv) };
        },
        out: (y) => linearT(y, w.out),
        gateUp: (h) => tf.split(linearT(h, w.gateUp), [I, I], 2) as [tf.Tensor, tf.Tensor],
        down: (m) => linearT(m, w.down),
      };
    };
  }

  /** The generation weights (every block's and the head's), (re)built when a source parameter changed. */
  private generationWeights(): NonNullable<LlamaDecoder['generation']> {
    const names = [...this.params.keys()];
    const sources = names.map((n) => this.p(n).dataId);
    if (this.generation && this.generation.sources.every((s, j) => s === sources[j])) return this.generation;
    this.disposeGenerationWeights();
    const blocks = Array.from({ length: this.cfg.n_blocks }, (_, i) =>
      tf.tidy(() => {
        const w = (name: string) => this.p(`blocks.${i}.${name}.weight`);
        const fuse = (rows: tf.Tensor2D[]) => tf.keep(tf.concat(rows, 0).transpose() as tf.Tensor2D); // [in, sum of outs]
        return {
          qkv: fuse([w('attn.q_proj'), w('attn.k_proj'), w('attn.v_proj')]), // [C, C + 2 kvDim]
          out: fuse([w('attn.out_proj')]), // [C, C]
          gateUp: fuse([w('mlp.gate_proj'), w('mlp.up_proj')]), // [C, 2 inter]
          down: fuse([w('mlp.down_proj')]), // [inter, C]
        };
      }),
    );
    const headT = tf.tidy(() => tf.keep(this.headWeight().transpose() as tf.Tensor2D)); // [C, V]
    this.generation = { sources, blocks, headT };
    return this.generation;
  }

  /** Host copies of the RMSNorm weights (decodeNext normalises on the host; host backends only: dataSync). */
  private hostNorms(): NonNullable<NonNullable<LlamaDecoder['generation']>['host']> {
    const gw = this.generationWeights();
    if (gw.host) return gw.host;
    const host = (name: string) => Float32Array.from(this.p(name).dataSync() as Float32Array);
    const norms = Array.from({ length: this.cfg.n_blocks }, (_, i) => ({ norm1: host(`blocks.${i}.norm1.weight`), norm2: host(`blocks.${i}.norm2.weight`) }));
    gw.host = { norms, normF: host('norm.weight') };
    return gw.host;
  }

  private disposeGenerationWeights(): void {
    for (const b of this.generation?.blocks ?? []) tf.dispose([b.qkv, b.out, b.gateUp, b.down]);
    this.generation?.headT.dispose();
    this.generation = null;
  }

  /** RoPE cos/sin tables [T, hd] for the given positions (what nanoVLM's rotary_embd returns). */
  ropeTables(positions: number[]): { cos: Float32Array; sin: Float32Array } {
    return ropeCosSin(this.cfg, positions);
  }

  private headWeight(): tf.Tensor2D {
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
    return linearT(hidden, this.generationWeights().headT) as tf.Tensor3D;
  }

  /**
   * Generation, one new token per row with the KV cache: the logits [B, V] of the next position
   * (what forward(embed(ids), {cache, mask}) then inferenceHead would give, up to float rounding).
   * Only the products run as tensors (on the generation weights: XNNPACK); embedding lookup aside,
   * everything between them runs on the host on a few hundred floats per row: RMSNorm, RoPE,
   * attention over the cache (kept in host arrays, written in place), SiLU * up, the residual adds.
   * That is 4 kernels per block (+ their uploads and reads) instead of ~50 small kernels (~10-20 us
   * of tfjs overhead each, which dominated a token). `mask`: [B, cache.length + 1] host mask
   * (0 = padded key) or null.
   */
  decodeNext(ids: Int32Array, cache: LlamaKVCache, mask: Int32Array | null = null): Float32Array {
    const { hidden_dim: C, n_heads: H, n_kv_heads: Hkv, inter_dim: I, rms_eps: eps } = this.cfg;
    const hd = this.headDim;
    const B = ids.length;
    const kvDim = Hkv * hd;
    const G = H / Hkv;
    const W = C + 2 * kvDim; // [q | k | v]
    const pos = cache.length;
    const L = pos + 1;
    if (cache.batchSize !== B) throw new Error(`decodeNext: ${B} ids for a cache of batch ${cache.batchSize}`);
    if (mask && mask.length !== B * L) throw new Error(`decodeNext: mask of ${mask.length} values, expected [${B}, ${L}]`);
    const gw = this.generationWeights();
    const hn = this.hostNorms();
    // RoPE of the new position: pos for every row (nanoVLM), or per row the count of kept
    // positions before it (position_ids: skip_padding)
    const rowPos = this.cfg.position_ids === 'skip_padding' && mask ? keptPositions(mask, B, L, pos) : null;
    const rope = rowPos ? ropeCosSin(this.cfg, rowPos) : ropeCosSin(this.cfg, [pos]); // [1 or B, hd]
    const cosOf = (b: number) => (rowPos ? rope.cos.subarray(b * hd, (b + 1) * hd) : rope.cos);
    const sinOf = (b: number) => (rowPos ? rope.sin.subarray(b * hd, (b + 1) * hd) : rope.sin);
    const scale = 1 / Math.sqrt(hd);
    /** rows [B, in] times a generation weight [in, out] on the backend -> host [B, out] */
    const product = (rows: Float32Array, w: tf.Tensor2D): Float32Array => {
      const x = tf.tensor2d(rows, [B, w.shape[0]]);
      const y = tf.matMul(x, w);
      const out = y.dataSync() as Float32Array;
      x.dispose();
      y.dispose();
      return out;
    };
    const norm = (x: Float32Array, w: Float32Array) => hostRmsNorm(x, w, B, C, eps, new Float32Array(B * C));

    const x = Float32Array.from(tf.tidy(() => tf.gather(this.p('token_embedding.weight'), tf.tensor1d(ids, 'int32')).dataSync() as Float32Array)); // [B, C]
    const q = new Float32Array(hd);
    const scores = new Float64Array(L);
    const acc = new Float64Array(hd);
    const y = new Float32Array(B * C);
    const m = new Float32Array(B * I);
    for (let i = 0; i < this.cfg.n_blocks; i++) {
      const w = gw.blocks[i];
      const kv = cache.hostKV(i, L, Hkv, hd);
      const qkv = product(norm(x, hn.norms[i].norm1), w.qkv); // [B, W]
      for (let b = 0; b < B; b++) {
        const row = b * W;
        // the new k (after RoPE) and v of every kv head into the cache at `pos`
        for (let j = 0; j < Hkv; j++) {
          const dst = ((b * Hkv + j) * kv.cap + pos) * hd;
          hostRope(qkv, row + C + j * hd, cosOf(b), sinOf(b), hd, kv.k, dst);
          kv.v.set(qkv.subarray(row + C + kvDim + j * hd, row + C + kvDim + (j + 1) * hd), dst);
        }
        for (let h = 0; h < H; h++) {
          const j = Math.floor(h / G); // query head h reads kv head j
          hostRope(qkv, row + h * hd, cosOf(b), sinOf(b), hd, q, 0);
          hostAttend(q, kv.k, kv.v, (b * Hkv + j) * kv.cap * hd, L, hd, scale, mask, b * L, scores, acc, y, b * C + h * hd);
        }
      }
      const o = product(y, w.out); // [B, C]
      for (let e = 0; e < B * C; e++) x[e] += o[e];
      const gu = product(norm(x, hn.norms[i].norm2), w.gateUp); // [B, 2 I]: [gate | up]
      hostSwiGLU(gu, B, I, m);
      const d = product(m, w.down); // [B, C]
      for (let e = 0; e < B * C; e++) x[e] += d[e];
    }
    cache.length = L;
    return product(norm(x, hn.normF), gw.headT); // [B, V]
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
    this.disposeGenerationWeights();
    for (const v of this.params.values()) v.dispose();
    for (const t of this.buffers.values()) t.dispose();
    this.params.clear();
    this.buffers.clear();
  }
}

// ---- Hugging Face Llama checkpoints (LanguageModel.from_pretrained) --------------------------------

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

export function readLlamaConfig(folder: string): { shapes: Partial<LlamaConfig>; vocabSize: number; notes: string[] } {
  const file = join(folder, 'config.json');
  if (!existsSync(file)) throw new UserError(`${file} not found: a Llama checkpoint folder needs config.json`, { where: { file } });
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file} is not valid JSON: ${(e as Error).message}`, { where: { file } });
  }
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

function loadHfLlama(model: LlamaDecoder, folder: string, rng: Rng, log: (m: string) => void): void {
  const file = join(folder, 'model.safetensors');
  const f = openSafetensors(file);
  try {
    const table: [string, string][] = [];
    for (const [hf, ours] of HF_LLAMA_KEYS) {
      if (!hf.includes('{i}')) table.push([hf, ours]);
      else for (let i = 0; i < model.cfg.n_blocks; i++) table.push([hf.replaceAll('{i}', String(i)), ours.replaceAll('{i}', String(i))]);
    }
    if (!model.cfg.tie_weights) table.push(f.has(HF_LLAMA_HEAD[0]) ? HF_LLAMA_HEAD : ['model.embed_tokens.weight', 'head.weight']);
    // 1. every tensor present with the right shape (a shorter vocab is extended) before anything is loaded
    const isVocab = (ours: string) => ours === 'token_embedding.weight' || ours === 'head.weight';
    for (const [hf, ours] of table) {
      if (!f.has(hf)) throw new UserError(`${file}: missing tensor "${hf}" (a Llama checkpoint has it)`, { where: { file } });
      const shape = f.header.entries.get(hf)!.shape;
      const want = model.params.get(ours)!.shape;
      const extendable = isVocab(ours) && shape.length === 2 && shape[0] < want[0] && shape[1] === want[1];
      if (!extendable && shape.join() !== want.join()) {
        throw new UserError(`${file}: "${hf}" has shape [${shape}], ${ours} expects [${want}]`, { where: { file } });
      }
    }
    // 2. load tensor by tensor
    for (const [hf, ours] of table) {
      const t = f.read(hf);
      const v = model.params.get(ours)!;
      let data = t.data as Float32Array;
      if (t.shape[0] < v.shape[0]) {
        // vocabulary extension: copy the Hub rows, new rows ~ N(0, 0.02)
        const ext = new Float32Array(v.size);
        ext.set(data);
        ext.set(normalInit(rng, [v.shape[0] - t.shape[0], v.shape[1] as number], 0.02), data.length);
        log(`extended ${ours} from ${t.shape[0]} to ${v.shape[0]} rows (new rows ~ N(0, 0.02))`);
        data = ext;
      }
      tf.tidy(() => v.assign(tf.tensor(data, v.shape, 'float32')));
    }
  } finally {
    f.close();
  }
}

// ---- plugin ----------------------------------------------------------------------------------------

const options = {
  type: 'object',
  additionalProperties: false,
  properties: {
    from: {
      type: ['string', 'null'],
      description: 'Hugging Face Llama/SmolLM2 checkpoint (repo id or local folder with config.json + model.safetensors); its config sets the shapes',
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
  const explicit = Object.fromEntries(Object.entries(opts).filter(([k, v]) => k !== 'from' && v !== undefined && v !== null));
  const merged = hub ? mergeHubShapes(explicit, hub, { yamlPath, configFile: `${from}/config.json` }, ['dropout']) : explicit;
  const c = { ...LLAMA_DEFAULTS, ...merged, model_type: from ?? LLAMA_DEFAULTS.model_type } as LlamaConfig;
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
  description: 'Llama/SmolLM2 decoder (nanoVLM v0.1 LanguageModel) with RoPE, GQA and a KV cache; `from` loads a Hub Llama checkpoint',
  options,
  async create(options_, ctx: PluginContext) {
    const opts = options_ as Options;
    let hub: ReturnType<typeof readLlamaConfig> | null = null;
    let folder: string | null = null;
    if (opts.from) {
      folder = await resolveSource(opts.from, {
        baseDir: ctx.recipeDir, // a relative folder resolves against the recipe
        repoType: 'model',
        files: ['config.json', 'model.safetensors'],
        log: (line) => ctx.log.info(`${ctx.yamlPath}: ${line}`),
      });
      hub = readLlamaConfig(folder);
      for (const n of hub.notes) ctx.log.warn(`${ctx.yamlPath}: ${opts.from}: ${n}`);
    }
    const cfg = configFrom(opts, hub?.shapes ?? null, ctx.yamlPath, opts.from ?? undefined);
    if (hub && cfg.vocab_size < hub.vocabSize) {
      throw new UserError(`vocab_size ${cfg.vocab_size} is smaller than the checkpoint's vocabulary (${hub.vocabSize})`, {
        where: { yamlPath: `${ctx.yamlPath}.vocab_size` },
      });
    }
    const rng = new Rng(ctx.seed, 'decoder');
    const model = folder ? await withoutInit(() => new LlamaDecoder(cfg, rng)) : new LlamaDecoder(cfg, rng); // weights loaded below
    if (folder) {
      try {
        loadHfLlama(model, folder, new Rng(ctx.seed, 'decoder.vocab-extension'), (m) => ctx.log.info(`${ctx.yamlPath}: ${m}`));
      } catch (e) {
        model.dispose();
        throw e;
      }
      ctx.log.info(`${ctx.yamlPath}: loaded Llama weights from ${opts.from}`);
    }
    return model;
  },
  describe(options_): ModuleDescription {
    const opts = options_ as Options;
    let hub: Partial<LlamaConfig> | null = null;
    if (opts.from && existsSync(join(opts.from, 'config.json'))) hub = readLlamaConfig(opts.from).shapes;
    const cfg = configFrom(opts, hub, 'model.decoder', opts.from ?? undefined);
    return { params: llamaParamShapes(cfg), hiddenDim: cfg.hidden_dim };
  },
});
