// The decoder's fast path for generation (plugins/decoder/llama.ts is the model; this file only
// makes generation fast, and computes what the model computes up to float rounding):
//   LlamaKVCache      per-layer keys/values of the positions seen so far (nanoVLM v0.1 has no KV
//                     cache: it recomputes the whole sequence for every new token);
//   LlamaFastPath     generation weights (every block's weights transposed once to [in, out] and
//                     fused: q|k|v in one product, gate|up in one), the tensor KV-cache step
//                     (`linears`, used by LlamaDecoder.forward with a cache), the head on them
//                     (`head`), and `decodeNext`: one token per row with the attention, norms and
//                     SiLU on the host (tested against the model: test/plugins/decoder/).
import * as tf from '@tensorflow/tfjs';
import type { KVCache } from 'nanovlm-ts/plugin-api';
import { adaptedWeight, decodeAttendNative, FLOAT32_MIN, matMulRowsNative, splitHeads } from 'nanovlm-ts/plugin-api';
import { applyRope, keptPositions, ropeCosSin, type BlockLinears, type LlamaDecoder } from './llama.ts';

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

// ---- generation weights and the tensor KV-cache step --------------------------------------------------

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

/**
 * What generation runs on, for one LlamaDecoder: every block's weights transposed once to
 * [in, out] (plain right operands: XNNPACK packs each once and reuses it for every token) and
 * fused (q, k, v in one product; gate and up in one), the head transposed, host copies of the
 * RMSNorm weights. Built from the parameters on first use and rebuilt when one of them was
 * reassigned (a training step gives a variable a new dataId); disposed with the model. Costs one
 * extra copy of the block and head weights.
 */
export class LlamaFastPath {
  private generation: { sources: object[]; blocks: GenerationWeights[]; headT: tf.Tensor2D; host?: { norms: { norm1: Float32Array; norm2: Float32Array }[]; normF: Float32Array } } | null = null;

  constructor(private readonly model: LlamaDecoder) {}

  private get cfg() {
    return this.model.cfg;
  }
  private get headDim() {
    return this.model.headDim;
  }
  private p<T extends tf.Tensor = tf.Tensor2D>(name: string): T {
    return this.model.params.get(name) as unknown as T;
  }

  /** Block i's maps on the generation weights: one product for q|k|v, one for gate|up (same values as the model's). */
  linears(rope: { cos: Float32Array; sin: Float32Array }, T: number, rows = 1): (i: number) => BlockLinears {
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
  private generationWeights(): NonNullable<LlamaFastPath['generation']> {
    const names = [...this.model.params.keys()];
    const sources = names.map((n) => this.p(n).dataId);
    if (this.generation && this.generation.sources.length === sources.length && this.generation.sources.every((s, j) => s === sources[j])) return this.generation;
    this.dispose();
    const blocks = Array.from({ length: this.cfg.n_blocks }, (_, i) =>
      tf.tidy(() => {
        // with model.adapters: the merged weights (W + delta; generation has no dropout)
        const w = (name: string) => adaptedWeight(this.model, `blocks.${i}.${name}`, this.p(`blocks.${i}.${name}.weight`));
        const fuse = (rows: tf.Tensor2D[]) => tf.keep(tf.concat(rows, 0).transpose() as tf.Tensor2D); // [in, sum of outs]
        return {
          qkv: fuse([w('attn.q_proj'), w('attn.k_proj'), w('attn.v_proj')]), // [C, C + 2 kvDim]
          out: fuse([w('attn.out_proj')]), // [C, C]
          gateUp: fuse([w('mlp.gate_proj'), w('mlp.up_proj')]), // [C, 2 inter]
          down: fuse([w('mlp.down_proj')]), // [inter, C]
        };
      }),
    );
    const headT = tf.tidy(() => tf.keep(this.model.headWeight().transpose() as tf.Tensor2D)); // [C, V]
    this.generation = { sources, blocks, headT };
    return this.generation;
  }

  /** Host copies of the RMSNorm weights (decodeNext normalises on the host; host backends only: dataSync). */
  private hostNorms(): NonNullable<NonNullable<LlamaFastPath['generation']>['host']> {
    const gw = this.generationWeights();
    if (gw.host) return gw.host;
    const host = (name: string) => Float32Array.from(this.p(name).dataSync() as Float32Array);
    const norms = Array.from({ length: this.cfg.n_blocks }, (_, i) => ({ norm1: host(`blocks.${i}.norm1.weight`), norm2: host(`blocks.${i}.norm2.weight`) }));
    gw.host = { norms, normF: host('norm.weight') };
    return gw.host;
  }

  dispose(): void {
    for (const b of this.generation?.blocks ?? []) tf.dispose([b.qkv, b.out, b.gateUp, b.down]);
    this.generation?.headT.dispose();
    this.generation = null;
  }

  /** The model's head() on the transposed head weight: the same logits; no gradient reaches the parameters. */
  head(hidden: tf.Tensor3D): tf.Tensor3D {
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
      const direct = matMulRowsNative(rows, B, w); // one BLAS call on the heap (native addon), same values
      if (direct) return direct;
      const x = tf.tensor2d(rows, [B, w.shape[0]]);
      const y = tf.matMul(x, w);
      const out = y.dataSync() as Float32Array;
      x.dispose();
      y.dispose();
      return out;
    };
    const norm = (x: Float32Array, w: Float32Array) => hostRmsNorm(x, w, B, C, eps, new Float32Array(B * C));

    const attend = decodeAttendNative(); // the attention loop below in the addon (same arithmetic), or null
    const qAll = new Float32Array(H * hd);
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
        if (attend) {
          for (let h = 0; h < H; h++) hostRope(qkv, row + h * hd, cosOf(b), sinOf(b), hd, qAll, h * hd);
          attend(qAll, kv.k, kv.v, y, mask, H, G, hd, L, kv.cap, b * Hkv * kv.cap * hd, b * L, b * C, scale);
          continue;
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
}
