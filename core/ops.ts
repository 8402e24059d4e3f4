// Shared tensor ops of the model code, in one place so they can be optimised once (core/kernels/
// swaps backend kernels underneath; these functions stay plain tfjs). Semantics follow PyTorch:
// Linear weights are [out, in]; LayerNorm uses the biased variance; GELU is the tanh approximation
// (nn.GELU(approximate='tanh')); RMSNorm is nanoVLM's (x * rsqrt(mean(x^2) + eps) * weight).
// Also the seeded host-side RNG used to initialise parameters as nanoVLM does.
import * as tf from '@tensorflow/tfjs';
import { Rng } from './rng.ts';
import { activationNative, geluNative, logSoftmaxRows, normNative, scaledSoftmaxNative, siluMulNative } from './kernels/native-direct.ts';
import type { Module } from './types.ts';

/** y = x W^T + b for x [..., in], W [out, in], b [out] -> [..., out] (torch.nn.Linear). */
export function linear(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor | null): tf.Tensor {
  const inDim = x.shape[x.shape.length - 1];
  const lead = x.shape.slice(0, -1);
  const x2 = x.reshape([-1, inDim]) as tf.Tensor2D;
  let y: tf.Tensor = tf.matMul(x2, w as tf.Tensor2D, false, true); // [M, in] x [out, in]^T -> [M, out]
  if (b) y = tf.add(y, b);
  return y.reshape([...lead, w.shape[0]]);
}

/**
 * linear(x, W, b) of the module's layer `layer` (local name, e.g. "blocks.0.attn.q_proj"), plus
 * what an adapter on that layer adds (model.adapters; LoRA: + (alpha/r) B A dropout(x)).
 * x [..., in] -> [..., out].
 */
export function adaptedLinear(mod: Module, layer: string, x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor | null): tf.Tensor {
  const y = linear(x, w, b);
  const adapter = mod.adapters?.get(layer);
  return adapter ? tf.add(y, adapter.forward(x)) : y;
}

/** The weight [out, in] of the module's layer with its adapter merged (W + delta), for inference copies; W itself without one. */
export function adaptedWeight(mod: Module, layer: string, w: tf.Tensor2D): tf.Tensor2D {
  const adapter = mod.adapters?.get(layer);
  return adapter ? (tf.add(w, adapter.delta()) as tf.Tensor2D) : w;
}

// The norms and GELU below are tf.customGrad ops: the tape keeps only what their hand-written
// gradient reads (x or x-hat, the per-row scale, the sigmoid) instead of every intermediate of the
// elementwise chain, and each gradient runs in its own tf.tidy so its temporaries are freed at
// once (autodiff keeps them until the end of the whole backward pass). Forward values are
// computed as before.

/** Sum over every axis but the last: [..., C] -> [C] (the gradient of a per-channel weight). */
function sumToLast(x: tf.Tensor): tf.Tensor {
  return tf.sum(x.reshape([-1, x.shape[x.shape.length - 1]]), 0);
}

/** True while tfjs records a gradient tape (inside tf.grads / tf.variableGrads). */
function recordingGradients(): boolean {
  const state = (tf.engine() as unknown as { state?: { gradientDepth?: number } }).state;
  return (state?.gradientDepth ?? 1) > 0; // unknown engine internals: assume recording
}

type CustomGradFunc = Parameters<typeof tf.customGrad>[0];
type CustomGradBody = (...args: never[]) => { value: tf.Tensor; gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor | tf.Tensor[] };
/**
 * tf.customGrad(f) for a function with typed tensor arguments (tfjs types them Tensor | GradSaveFunc).
 * Outside a gradient tape f's forward runs directly (same kernels, same values): a customGrad op
 * costs ~50 us of engine bookkeeping per call, which adds up during generation.
 */
export function customOp(f: CustomGradBody): (...inputs: tf.Tensor[]) => tf.Tensor {
  const withGrad = tf.customGrad(f as unknown as CustomGradFunc) as (...inputs: tf.Tensor[]) => tf.Tensor;
  const noSave: tf.GradSaveFunc = () => {};
  return (...inputs) => (recordingGradients() ? withGrad(...inputs) : (f as unknown as (...a: unknown[]) => { value: tf.Tensor })(...inputs, noSave).value);
}

/** LayerNorm over the last axis (biased variance, as torch.nn.LayerNorm). */
export function layerNorm(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, eps: number): tf.Tensor {
  const fused = normNative(x, weight, bias, eps); // one addon pass each way when native (core/kernels/native-direct.ts)
  if (fused) return fused;
  const op = customOp((x_: tf.Tensor, w: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    const axis = x_.shape.length - 1;
    const d = tf.sub(x_, tf.mean(x_, axis, true));
    const r = tf.rsqrt(tf.add(tf.mean(tf.square(d), axis, true), eps)); // [..., 1]
    const xhat = tf.mul(d, r);
    save([xhat, r, w]);
    return {
      value: tf.add(tf.mul(xhat, w), b),
      // dxhat = dy w;  dx = r (dxhat - mean(dxhat) - xhat mean(dxhat xhat));  dw = sum(dy xhat);  db = sum(dy)
      gradFunc: (dy: tf.Tensor, [xh, rr, ww]: tf.Tensor[]) =>
        tf.tidy(() => {
          const g = tf.mul(dy, ww);
          const centred = tf.sub(g, tf.mean(g, axis, true));
          const dx = tf.mul(rr, tf.sub(centred, tf.mul(xh, tf.mean(tf.mul(g, xh), axis, true))));
          return [dx, sumToLast(tf.mul(dy, xh)), sumToLast(dy)];
        }),
    };
  });
  return op(x, weight, bias);
}

/** nanoVLM RMSNorm: x * rsqrt(mean(x^2, -1) + eps) * weight. */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor {
  const fused = normNative(x, weight, null, eps); // one addon pass each way when native (core/kernels/native-direct.ts)
  if (fused) return fused;
  const op = customOp((x_: tf.Tensor, w: tf.Tensor, save: tf.GradSaveFunc) => {
    const axis = x_.shape.length - 1;
    const r = tf.rsqrt(tf.add(tf.mean(tf.square(x_), axis, true), eps)); // [..., 1]
    save([x_, r, w]);
    return {
      value: tf.mul(tf.mul(x_, r), w),
      // g = dy w;  dx = r (g - x r^2 mean(g x));  dw = sum(dy x r)
      gradFunc: (dy: tf.Tensor, [xx, rr, ww]: tf.Tensor[]) =>
        tf.tidy(() => {
          const g = tf.mul(dy, ww);
          const dx = tf.mul(rr, tf.sub(g, tf.mul(tf.mul(xx, tf.square(rr)), tf.mean(tf.mul(g, xx), axis, true))));
          return [dx, sumToLast(tf.mul(dy, tf.mul(xx, rr)))];
        }),
    };
  });
  return op(x, weight);
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_CUBIC = 0.044715;
/**
 * GELU, tanh approximation: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), computed as
 * x sigmoid(2u) (the same function: 1 + tanh(u) = 2 sigmoid(2u)); the wasm backend's Sigmoid is
 * vectorised (XNNPACK), its Tanh is a scalar loop ~10x slower.
 *   dy/dx = s + x s (1 - s) 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2), s = sigmoid(2u)
 */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  // the whole function in one addon pass each way when native, the tape keeping x only (bit-identical)
  const fused = geluNative(x, GELU_CUBIC, 2 * SQRT_2_OVER_PI, 3 * GELU_CUBIC);
  if (fused) return fused;
  const op = customOp((x_: tf.Tensor, save: tf.GradSaveFunc) => {
    // the elementwise chains: one addon pass each when native (bit-identical: core/kernels/native-direct.ts)
    const u2 = activationNative(0, x_, null, null, GELU_CUBIC, 2 * SQRT_2_OVER_PI) ?? tf.mul(tf.add(x_, tf.mul(tf.mul(tf.mul(x_, x_), x_), GELU_CUBIC)), 2 * SQRT_2_OVER_PI); // 2u
    const s = tf.sigmoid(u2);
    save([x_, s]);
    return {
      value: tf.mul(x_, s),
      gradFunc: (dy: tf.Tensor, [xx, ss]: tf.Tensor[]) =>
        tf.tidy(() => {
          const fused = activationNative(1, xx, ss, dy, 0, 2 * SQRT_2_OVER_PI, 3 * GELU_CUBIC);
          if (fused) return fused;
          const du2 = tf.mul(tf.add(tf.mul(tf.square(xx), 3 * GELU_CUBIC), 1), 2 * SQRT_2_OVER_PI); // d(2u)/dx
          const slope = tf.add(ss, tf.mul(tf.mul(xx, tf.mul(ss, tf.sub(1, ss))), du2));
          return tf.mul(dy, slope);
        }),
    };
  });
  return op(x);
}

/** SiLU: x * sigmoid(x); gradient s (1 + x (1 - s)), s = sigmoid(x) (the tape keeps x and s). */
export function silu(x: tf.Tensor): tf.Tensor {
  const op = customOp((x_: tf.Tensor, save: tf.GradSaveFunc) => {
    const s = tf.sigmoid(x_);
    save([x_, s]);
    return {
      value: tf.mul(x_, s),
      gradFunc: (dy: tf.Tensor, [xx, ss]: tf.Tensor[]) => tf.tidy(() => activationNative(2, xx, ss, dy) ?? tf.mul(dy, tf.mul(ss, tf.add(1, tf.mul(xx, tf.sub(1, ss)))))),
    };
  });
  return op(x);
}

/**
 * The decoder MLP's silu(gate) * up (SwiGLU): one addon pass each way when native (bit-identical:
 * core/kernels/native-direct.ts siluMulNative), else tf.mul(silu(gate), up).
 *   gate, up [..., inter] -> [..., inter]
 */
export function siluMul(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  return siluMulNative(gate, up) ?? tf.mul(silu(gate), up);
}

/** Softmax over the last axis. */
export function softmax(x: tf.Tensor): tf.Tensor {
  return tf.softmax(x, -1);
}

/** [B, T, H*hd] -> [B, H, T, hd] */
export function splitHeads(x: tf.Tensor, nHeads: number): tf.Tensor4D {
  const [B, T, C] = x.shape;
  if (T === 1) return x.reshape([B, nHeads, 1, C / nHeads]); // one position: the same memory order
  return x.reshape([B, T, nHeads, C / nHeads]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
}

/** [B, H, T, hd] -> [B, T, H*hd] */
export function mergeHeads(x: tf.Tensor): tf.Tensor3D {
  const [B, H, T, hd] = x.shape;
  if (T === 1) return x.reshape([B, 1, H * hd]); // one position: the same memory order
  return x.transpose([0, 2, 1, 3]).reshape([B, T, H * hd]) as tf.Tensor3D;
}

/** float32 min (torch.finfo(torch.float32).min), nanoVLM's additive padding-mask value */
export const FLOAT32_MIN = -3.4028234663852886e38;

/**
 * Scaled dot-product attention as nanoVLM's manual path computes it.
 *   q [B, H, Tq, hd]; k, v [B, Hkv, Tk, hd] with H = Hkv * G. Query head h uses kv head h // G
 *   (torch repeat_interleave(G, dim=1)); instead of repeating k/v G times, the G query heads of a
 *   kv head are stacked along the time axis and multiplied against that kv head once.
 *   bias: additive mask broadcastable to [B, H, Tq, Tk] (see attentionBias), or null.
 * Returns [B, H, Tq, hd].
 */
export function attention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  opts: { bias?: tf.Tensor | null; dropout?: number; training?: boolean } = {},
): tf.Tensor4D {
  const [B, H, Tq, hd] = q.shape;
  const [, Hkv, Tk] = k.shape;
  const G = H / Hkv;
  const qg = q.reshape([B, Hkv, G * Tq, hd]); // [B, H, Tq, hd] -> [B, Hkv, G*Tq, hd]
  let scores: tf.Tensor = tf.matMul(qg, k, false, true); // [B, Hkv, G*Tq, Tk]
  scores = scores.reshape([B, H, Tq, Tk]);
  // softmax(scores / sqrt(hd) + bias): one addon pass each way when native (core/kernels/native-direct.ts)
  let probs = scaledSoftmaxNative(scores, Math.sqrt(hd), opts.bias ?? null);
  if (!probs) {
    scores = tf.div(scores, Math.sqrt(hd)); // [B, H, Tq, Tk]
    if (opts.bias) scores = tf.add(scores, opts.bias);
    probs = softmax(scores);
  }
  if (opts.training && opts.dropout) probs = tf.dropout(probs, opts.dropout);
  const y = tf.matMul(probs.reshape([B, Hkv, G * Tq, Tk]), v); // [B, Hkv, G*Tq, hd]
  return y.reshape([B, H, Tq, hd]) as tf.Tensor4D;
}

/**
 * The additive attention mask of nanoVLM's manual path, built once per forward: -inf where key j is
 * in the future of query i (absolute query position Tk - Tq + i), plus (1 - mask) * finfo(float32).min
 * on padded keys. Adding -inf equals masked_fill(-inf), and -inf + finfo.min stays -inf.
 *   padMask [B, Tk] (1 real, 0 padding) or null -> [B or 1, 1, Tq, Tk]
 */
export function attentionBias(Tq: number, Tk: number, padMask: tf.Tensor2D | null): tf.Tensor4D {
  const off = Tk - Tq;
  const rows = tf.range(0, Tq, 1, 'int32').reshape([Tq, 1]);
  const cols = tf.range(0, Tk, 1, 'int32').reshape([1, Tk]);
  const future = tf.greater(cols, tf.add(rows, tf.scalar(off, 'int32'))); // [Tq, Tk]
  let bias: tf.Tensor = tf.where(future, tf.fill([Tq, Tk], -Infinity), tf.zeros([Tq, Tk])).reshape([1, 1, Tq, Tk]);
  if (padMask) {
    const [B] = padMask.shape;
    const pad = tf.mul(tf.sub(1, padMask.toFloat()), FLOAT32_MIN).reshape([B, 1, 1, Tk]);
    bias = tf.add(bias, pad); // [B, 1, Tq, Tk]
  }
  return bias as tf.Tensor4D;
}

/**
 * Packed rows with a block-diagonal mask (not in nanoVLM): keys of another sample get finfo.min
 * (padding keys, segment 0, have theirs from the attention mask).
 *   segments [B, T] (1, 2, ... per sample; 0 = padding or separator) -> bias [B, 1, T, T], added to
 *   attentionBias (causal + padding). Built on the host: segment ids are small.
 */
export function segmentBias(segments: ArrayLike<number>, B: number, T: number): tf.Tensor4D {
  const out = new Float32Array(B * T * T);
  for (let b = 0; b < B; b++)
    for (let q = 0; q < T; q++) {
      const sq = segments[b * T + q];
      const row = (b * T + q) * T;
      if (sq === 0) continue; // a padded query row: attentionBias alone (it is zeroed after attention)
      for (let k = 0; k < T; k++) {
        const sk = segments[b * T + k];
        if (sk !== 0 && sk !== sq) out[row + k] = FLOAT32_MIN; // padded keys already carry finfo.min (twice would be -inf)
      }
    }
  return tf.tensor4d(out, [B, 1, T, T]);
}

/** RoPE position ids that restart at 0 for each sample of a packed row: segments [B, T] -> [B * T] (0 on padding). */
export function segmentPositions(segments: ArrayLike<number>, B: number, T: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < B; b++) {
    let start = 0;
    for (let t = 0; t < T; t++) {
      const s = segments[b * T + t];
      if (t === 0 || s !== segments[b * T + t - 1]) start = t;
      out.push(s === 0 ? 0 : t - start);
    }
  }
  return out;
}

/** Dropout when training and p > 0, identity otherwise. */
export function maybeDropout(x: tf.Tensor, p: number, training: boolean | undefined): tf.Tensor {
  return training && p > 0 ? tf.dropout(x, p) : x;
}

/**
 * Cross-entropy over logits [B, T, V] and int targets [B, T], ignoring -100, averaged over the
 * counted tokens of the whole batch (F.cross_entropy(..., ignore_index=-100)).
 */
export function crossEntropyIgnore(logits: tf.Tensor3D, targets: tf.Tensor2D, ignoreIndex = -100): tf.Scalar {
  const [B, T, V] = logits.shape;
  const N = B * T;
  const logp = logSoftmaxRows(logits.reshape([N, V])); // [N, V] (one addon pass when native: core/kernels/native-direct.ts)
  const t = targets.reshape([N]).toInt();
  const valid = tf.notEqual(t, ignoreIndex); // [N]
  const safeT = tf.where(valid, t, tf.zerosLike(t));
  const flatIdx = tf.add(tf.mul(tf.range(0, N, 1, 'int32'), tf.scalar(V, 'int32')), safeT);
  const picked = tf.gather(logp.reshape([N * V]), flatIdx); // [N]
  const validF = valid.toFloat();
  const count = tf.sum(validF);
  return tf.div(tf.neg(tf.sum(tf.mul(picked, validF))), count) as tf.Scalar;
}

// ---- seeded initialisation ----------------------------------------------------------------------

export { Rng }; // core/rng.ts: the one PRNG (weight initialisation draws from it)

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

let skipInit = 0;
/**
 * Build modules whose weights are loaded right after (checkpoints, Hub backbones): random
 * initialisation is skipped (zeros), which saves seconds on a 222M-parameter model. Builds are
 * sequential, so a counter is enough.
 */
export async function withoutInit<T>(build: () => T | Promise<T>): Promise<T> {
  skipInit++;
  try {
    return await build();
  } finally {
    skipInit--;
  }
}

/** N(0, std) (torch.nn.init.normal_) */
export function normalInit(rng: Rng, shape: number[], std: number): Float32Array {
  const a = new Float32Array(numel(shape));
  if (skipInit) return a;
  for (let i = 0; i < a.length; i++) a[i] = rng.normal() * std;
  return a;
}
/** U[0, 1) (torch.rand) */
export function uniformInit(rng: Rng, shape: number[]): Float32Array {
  const a = new Float32Array(numel(shape));
  if (skipInit) return a;
  for (let i = 0; i < a.length; i++) a[i] = rng.next();
  return a;
}
export function constInit(shape: number[], value: number): Float32Array {
  return new Float32Array(numel(shape)).fill(value);
}

/** A trainable variable from host data (unnamed: tfjs variable names must be globally unique). */
export function param(data: Float32Array, shape: number[]): tf.Variable {
  const t = tf.tensor(data, shape, 'float32');
  const v = tf.variable(t, true); // shares t's data (ref-counted)
  t.dispose();
  return v;
}
