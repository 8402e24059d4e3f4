// Native addon functions called directly rather than as tfjs kernels (issue 16: native/blas.cc
// adamwStep, sumSquares, matmulArrays), under the wasm backend when the native product kernels are
// installed (the same switch: core/kernels/native-matmul.ts; VLM_NATIVE_MATMUL=0 or
// VLM_FAST_KERNELS=0 turn all of them off; VLM_NATIVE_DIRECT=0 only these, to measure them).
// Each returns null / false when the addon is not in use, and the caller runs its tfjs path.
//
// AdamW (plugins/optimizer/adamw.ts) and the gradient norm (core/train/grads.ts globalNorm):
// A training step of `small` ran ~3,900 small tfjs kernels, most of them AdamW's ~13 per parameter
// tensor (mul, add, sqrt, div, sub, assign; each ~10-40 us of engine overhead plus its own pass
// over memory). Here one addon call per parameter tensor reads p, g, m, v once on the wasm heap
// (no copies: Float32Array views over the heap) and rounds every operation to float32 in the
// order of the tfjs chain, so the parameters are bit-identical to it.
//   - the moments are updated in place when no other tensor shares their buffer (a moment loaded
//     from a checkpoint shares the checkpoint tensor's: it is copied once first);
//   - the new parameter goes into a new buffer and the variable is assigned to it, as with the
//     tfjs chain: code that caches per parameter buffer (the decoder's generation weights,
//     core/host.ts) sees a new dataId after every step;
//   - host moments (adamw host_state) are the host Float32Arrays themselves.
// Generation's one-token products (plugins/decoder/llama-decode.ts decodeNext): host rows times a
// weight on the heap, one BLAS call each, without the tensor upload, kernel dispatch and read back
// of a tf.matMul (the same BLAS routine as the native kernel, so the same values).
// RoPE (plugins/decoder/llama.ts applyRope, forward and gradient): one pass instead of split, neg,
// concat, two mul and add (the split and concat copies were ~1 ms each on `small`), bit-identical.
// The vocabulary log-softmax of the loss (core/ops.ts crossEntropyIgnore): one pass each way; GELU's
// and SiLU's elementwise chains (core/ops.ts geluTanh, silu; the Sigmoid stays a tfjs kernel).
// RMSNorm and LayerNorm (core/ops.ts rmsNorm, layerNorm): one pass forward (instead of ~6 kernels)
// and one backward giving dx, dw and db (instead of ~10 kernels and two leading-axis sums), in
// double; the tape keeps only x and the weight (the gradient recomputes the row's mean and rsqrt).
// VLM_NATIVE_NORM=0 turns these two off alone (VLM_NATIVE_FUSED=0 turns off every fused pass).
// Attention's scores -> probabilities (core/ops.ts attention: / sqrt(hd), + the additive mask,
// softmax; ~3 kernels and passes each way, the wasm Softmax and Sum among them) in one addon pass
// forward and one backward, as a tfjs kernel of its own (VlmScaledSoftmax) so that the mask's
// gradient, like tf.add's, is computed only when something trains the mask (never in the built-in
// models); bit-identical to the chain (XNNPACK's exp algorithm and sum order).
// The decoder MLP's silu(gate) * up (core/ops.ts siluMul): one pass each way, the sigmoid computed
// in it with XNNPACK's algorithm (dgate and dup together; the tape keeps gate and up only),
// bit-identical to tf.mul(silu(gate), up).
// GELU (core/ops.ts geluTanh) likewise in one pass each way, the tape keeping x alone.
// VLM_NATIVE_ATTN_MLP=0 turns these three off alone (bench/fused-ops.ts measures them so).
// The plugins reach these through `nanovlm-ts/plugin-api`.
import * as tf from '@tensorflow/tfjs';
import { loadNativeBlas, nativeMatMulActive } from './native-matmul.ts';
import { customOp } from '../ops.ts';
import type { NativeBlas, WasmBackend } from './native-matmul.ts';

/** the scalars of one AdamW update (one group, one step); rounded to float32 in the addon */
export interface AdamWStepScalars {
  decay: number; // 1 - lr * weight_decay
  beta1: number;
  beta2: number;
  bc2Sqrt: number; // sqrt(1 - beta2^t)
  eps: number;
  stepSize: number; // lr / (1 - beta1^t)
  /** a float32 value every gradient value is multiplied by first, as tf.mul(g, s) would (the
   *  gradient-clipping coefficient, core/train/step.ts); absent: 1 */
  gradScale?: number;
}

/** the addon and the wasm backend when the native kernels are in use and the addon has `fn`, else null */
function active(fn: 'adamwStep' | 'sumSquares' | 'matmulArrays' | 'decodeAttend' | 'rope' | 'logSoftmax' | 'activation' | 'norm' | 'scaledSoftmax' | 'siluMul' | 'gelu'): { addon: NativeBlas; backend: WasmBackend } | null {
  if (!nativeMatMulActive() || tf.getBackend() !== 'wasm' || process.env.VLM_NATIVE_DIRECT === '0') return null;
  if ((fn === 'rope' || fn === 'decodeAttend' || fn === 'logSoftmax' || fn === 'activation' || fn === 'norm' || fn === 'scaledSoftmax' || fn === 'siluMul' || fn === 'gelu') && process.env.VLM_NATIVE_FUSED === '0') return null; // to measure them
  if (fn === 'norm' && process.env.VLM_NATIVE_NORM === '0') return null;
  if ((fn === 'scaledSoftmax' || fn === 'siluMul' || fn === 'gelu') && process.env.VLM_NATIVE_ATTN_MLP === '0') return null;
  const addon = loadNativeBlas()!;
  // an addon built before these functions existed (rebuild: npm run build:native) keeps the tfjs paths
  if (typeof addon[fn] !== 'function' || (fn === 'norm' && typeof addon.normGrad !== 'function')) return null;
  return { addon, backend: tf.backend() as unknown as WasmBackend };
}

/** true when adamwUpdateNative / sumSquaresNative / matMulRowsNative run (native addon on the wasm backend) */
export function nativeOptimizerActive(): boolean {
  return active('adamwStep') !== null && active('sumSquares') !== null && active('matmulArrays') !== null;
}

/** a tensor's values as a Float32Array view over the heap (take it after the last allocation: growth replaces the buffer) */
function view(backend: WasmBackend, t: tf.Tensor): Float32Array {
  return new Float32Array(backend.wasm.HEAPU8.buffer, backend.dataIdMap.get(t.dataId).memoryOffset, t.size);
}

/** a new float32 tensor of `shape` on the heap (uninitialised: the caller writes every value) */
function uninitialised(backend: WasmBackend, shape: number[]): tf.Tensor {
  const info = backend.makeOutput(shape, 'float32');
  return (tf.engine() as unknown as { makeTensorFromTensorInfo(i: unknown, b: unknown): tf.Tensor }).makeTensorFromTensorInfo(info, backend);
}

/** make `v` the only tensor on its buffer (in-place writes must not change another tensor) */
function own(backend: WasmBackend, v: tf.Variable): void {
  if (backend.refCount(v.dataId) <= 1) return;
  const copy = uninitialised(backend, v.shape);
  view(backend, copy).set(view(backend, v));
  v.assign(copy);
  copy.dispose();
}

/**
 * One AdamW step of parameter `p` with gradient `g` in the addon; `m` / `v` (exp_avg, exp_avg_sq)
 * are variables (updated in place) or host arrays (host_state). Assigns p its new value and
 * returns true; false (nothing done) when the addon is not in use or a tensor is not float32.
 */
export function adamwUpdateNative(p: tf.Variable, g: tf.Tensor, m: tf.Variable | Float32Array, v: tf.Variable | Float32Array, s: AdamWStepScalars): boolean {
  const n = active('adamwStep');
  if (!n || p.size === 0 || p.dtype !== 'float32' || g.dtype !== 'float32' || g.size !== p.size) return false;
  const { addon, backend } = n;
  const scale = s.gradScale ?? 1;
  if (scale !== 1 && !(addon as unknown as { adamwGradScale?: boolean }).adamwGradScale) return false; // an addon built before gradScale
  for (const x of [m, v]) {
    if (x instanceof Float32Array) {
      if (x.length !== p.size) return false;
    } else {
      if (x.dtype !== 'float32' || x.size !== p.size) return false;
      own(backend, x);
    }
  }
  const next = uninitialised(backend, p.shape);
  const moment = (x: tf.Variable | Float32Array) => (x instanceof Float32Array ? x : view(backend, x));
  addon.adamwStep(view(backend, p), view(backend, g), moment(m), moment(v), view(backend, next), s.decay, s.beta1, s.beta2, s.bc2Sqrt, s.eps, s.stepSize, Math.fround(scale));
  p.assign(next);
  next.dispose();
  return true;
}

/** sum(x^2) of each tensor (float64 accumulation) in the addon, or null when it is not in use */
export function sumSquaresNative(ts: tf.Tensor[]): Float64Array | null {
  const n = active('sumSquares');
  if (!n || ts.some((t) => t.dtype !== 'float32')) return null;
  return n.addon.sumSquares(ts.map((t) => (t.size === 0 ? new Float32Array(0) : view(n.backend, t))));
}

/**
 * rows [B, K] (host) times w [K, N] (a float32 tensor) -> host [B, N], one BLAS call on the heap
 * (what tf.matMul(rows, w) gives with the native kernels); null when the addon is not in use.
 */
export function matMulRowsNative(rows: Float32Array, B: number, w: tf.Tensor2D): Float32Array | null {
  const n = active('matmulArrays');
  const [K, N] = w.shape;
  if (!n || w.dtype !== 'float32' || B < 1 || K < 1 || N < 1 || rows.length !== B * K) return null;
  const out = new Float32Array(B * N);
  n.addon.matmulArrays(rows, view(n.backend, w), out, B, K, N);
  return out;
}

/** the attention of one row over the KV cache in generation (native/blas.cc decodeAttend; see DecodeAttend) */
export type DecodeAttend = (q: Float32Array, K: Float32Array, V: Float32Array, y: Float32Array, mask: Int32Array | null, H: number, G: number, hd: number, L: number, cap: number, kvBase: number, m0: number, yAt: number, scale: number) => void;

/**
 * Generation's attention over the KV cache (plugins/decoder/llama-decode.ts decodeNext) in the
 * addon: one call per row for all its query heads, the arithmetic of the decoder's JavaScript loop
 * (hostAttend; its dot products in double, four cached positions at a time); null when the addon
 * is not in use (VLM_NATIVE_DIRECT=0 or VLM_NATIVE_FUSED=0 included), and the caller runs its loop. Taken once per
 * token: the checks are not repeated per head.
 */
export function decodeAttendNative(): DecodeAttend | null {
  const n = active('decodeAttend');
  return n ? n.addon.decodeAttend.bind(n.addon) : null;
}

/**
 * Rotary embedding of x [B, H, T, hd] with cos, sin [1 or B, 1, T, hd] in one addon pass:
 * x cos + rotate_half(x) sin, or (inverse) the adjoint dy cos + rotate_half^T(dy sin), bit-identical
 * to plugins/decoder/llama.ts applyRope's tfjs chain (split, neg, concat, two mul, add: ~6 kernels
 * each way); null when the addon is not in use (the caller runs the chain).
 */
export function ropeNative(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor, inverse: boolean): tf.Tensor | null {
  const n = active('rope');
  if (!n || x.rank !== 4 || cos.rank !== 4 || sin.rank !== 4) return null;
  const [B, H, T, hd] = x.shape;
  const rows = cos.shape[0];
  const tableOk = (t: tf.Tensor) => t.dtype === 'float32' && (t.shape[0] === 1 || t.shape[0] === B) && t.shape[0] === rows && t.shape[1] === 1 && t.shape[2] === T && t.shape[3] === hd;
  if (x.dtype !== 'float32' || x.size === 0 || hd % 2 !== 0 || !tableOk(cos) || !tableOk(sin)) return null;
  const out = uninitialised(n.backend, x.shape);
  n.addon.rope(view(n.backend, x), view(n.backend, cos), view(n.backend, sin), view(n.backend, out), B, H, T, hd, rows, inverse);
  return out;
}

/**
 * tf.logSoftmax over the last axis of x [rows, V] in one addon pass ((x - max) - log(sum(exp(x -
 * max))), the sum in double), with its gradient dy - sum(dy) exp(y) in one pass too; tf.logSoftmax
 * when the addon is not in use (another backend, no addon, VLM_NATIVE_DIRECT=0). The vocabulary
 * log-softmax of the loss: the wasm build's Exp is a scalar loop, ~10 ns an element, run twice.
 */
export function logSoftmaxRows(x: tf.Tensor2D): tf.Tensor2D {
  const n = active('logSoftmax');
  if (!n || x.dtype !== 'float32' || x.size === 0) return tf.logSoftmax(x);
  const [rows, V] = x.shape;
  const op = customOp((x_: tf.Tensor, save: tf.GradSaveFunc) => {
    const y = uninitialised(n.backend, [rows, V]);
    n.addon.logSoftmax(view(n.backend, x_), view(n.backend, y), rows, V, null);
    save([y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) => {
        const dx = uninitialised(n.backend, [rows, V]);
        n.addon.logSoftmax(view(n.backend, saved), view(n.backend, dx), rows, V, view(n.backend, dy));
        return dx;
      },
    };
  });
  return op(x) as tf.Tensor2D;
}

/**
 * One elementwise pass of core/ops.ts's GELU / SiLU chains (native/blas.cc activation): kind 0
 * GELU's 2u from x, 1 GELU's gradient, 2 SiLU's gradient from x, s = sigmoid(.) and dy; the
 * constants as the tfjs chain's float32 scalars. Bit-identical to the chain it replaces; null when
 * the addon is not in use or a tensor is not float32 of x's size (the caller runs the chain).
 */
export function activationNative(kind: 0 | 1 | 2, x: tf.Tensor, s: tf.Tensor | null, dy: tf.Tensor | null, c1 = 0, c2 = 0, c3 = 0): tf.Tensor | null {
  const n = active('activation');
  const ok = (t: tf.Tensor | null) => t !== null && t.dtype === 'float32' && t.size === x.size;
  if (!n || !ok(x) || x.size === 0 || (kind !== 0 && (!ok(s) || !ok(dy)))) return null;
  const out = uninitialised(n.backend, x.shape);
  const v = (t: tf.Tensor | null) => (t === null ? null : view(n.backend, t));
  n.addon.activation(kind, view(n.backend, x), kind === 0 ? null : v(s), kind === 0 ? null : v(dy), view(n.backend, out), Math.fround(c1), Math.fround(c2), Math.fround(c3));
  return out;
}

/**
 * RMSNorm (b null: x r w) or LayerNorm ((x - mean) r w + b) over the last axis of x [..., C], with
 * r = rsqrt(mean((x - mu)^2) + eps), as one addon pass (native/blas.cc norm, in double) and its
 * gradient dx, dw (and db) as one more (normGrad; the weight's column sums accumulated in double,
 * row by row); the tape keeps x and w only. Null when the addon is not in use or the shapes are
 * not x [..., C], w [C], b [C] of float32 (the caller runs core/ops.ts's tfjs chain).
 */
export function normNative(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor | null, eps: number): tf.Tensor | null {
  const n = active('norm');
  const C = x.shape[x.rank - 1];
  const vec = (t: tf.Tensor | null) => t !== null && t.dtype === 'float32' && t.rank === 1 && t.shape[0] === C;
  if (!n || x.rank < 1 || x.dtype !== 'float32' || x.size === 0 || !vec(w) || (b !== null && !vec(b))) return null;
  const { addon, backend } = n;
  const rows = x.size / C;
  const kind = b === null ? 0 : 1;
  const op = customOp((...args: tf.Tensor[]) => {
    const [x_, w_] = args;
    const save = args[args.length - 1] as unknown as tf.GradSaveFunc;
    const y = uninitialised(backend, x_.shape);
    addon.norm(kind, view(backend, x_), view(backend, w_), kind ? view(backend, args[2]) : null, view(backend, y), rows, C, eps);
    save([x_, w_]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [xx, ww]: tf.Tensor[]) => {
        const dx = uninitialised(backend, xx.shape);
        const dw = uninitialised(backend, [C]);
        const db = kind ? uninitialised(backend, [C]) : null;
        // views after the last allocation (growth replaces the heap's buffer)
        addon.normGrad(kind, view(backend, xx), view(backend, ww), view(backend, dy), view(backend, dx), view(backend, dw), db && view(backend, db), rows, C, eps);
        return db ? [dx, dw, db] : [dx, dw];
      },
    };
  });
  return b === null ? op(x, w) : op(x, w, b);
}

const SCALED_SOFTMAX = 'VlmScaledSoftmax';
type Info = { dataId: object; shape: number[]; dtype: tf.DataType };
const sizeOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** bias [..] right-aligned on x [B, H, Tq, Tk]: element strides (0 on a broadcast axis), or null when it does not broadcast to x */
function biasStrides(xShape: number[], biasShape: number[]): number[] | null {
  if (biasShape.length > 4) return null;
  const padded = [...Array(4 - biasShape.length).fill(1), ...biasShape];
  const strides = [0, 0, 0, 0];
  let step = 1;
  for (let k = 3; k >= 0; k--) {
    if (padded[k] !== 1 && padded[k] !== xShape[k]) return null;
    strides[k] = padded[k] === 1 ? 0 : step;
    step *= padded[k];
  }
  return strides;
}

/** the forward kernel: inputs x [B, H, Tq, Tk] and optional bias; attrs scale, strides */
function scaledSoftmaxKernel({ inputs, backend, attrs }: { inputs: { x: Info; bias?: Info }; backend: WasmBackend; attrs: { scale: number; strides: number[] } }): Info {
  const { x, bias } = inputs;
  const out = backend.makeOutput(x.shape, 'float32');
  const heap = (t: Info) => new Float32Array(backend.wasm.HEAPU8.buffer, backend.dataIdMap.get(t.dataId).memoryOffset, sizeOf(t.shape));
  const [B, H, Tq, Tk] = x.shape;
  const st = attrs.strides;
  loadNativeBlas()!.scaledSoftmax(heap(x), bias ? heap(bias) : null, heap(out), null, B, H, Tq, Tk, attrs.scale, st[0], st[1], st[2], st[3]);
  return out;
}

/** (dy p - sum(dy p) p) / scale over the last axis: native when the addon is in use, else the tfjs chain (the same float32 operations) */
function scaledSoftmaxGrad(dy: tf.Tensor, p: tf.Tensor, scale: number): tf.Tensor {
  const n = active('scaledSoftmax');
  if (!n || dy.dtype !== 'float32') {
    const dyp = tf.mul(dy, p);
    return tf.div(tf.sub(dyp, tf.mul(tf.sum(dyp, -1, true), p)), scale);
  }
  const [B, H, Tq, Tk] = p.shape;
  const out = uninitialised(n.backend, p.shape);
  n.addon.scaledSoftmax(view(n.backend, p), null, view(n.backend, out), view(n.backend, dy), B, H, Tq, Tk, scale, 0, 0, 0, 0);
  return out;
}

let scaledSoftmaxRegistered = false;
function registerScaledSoftmax(): void {
  if (scaledSoftmaxRegistered) return;
  scaledSoftmaxRegistered = true;
  tf.registerKernel({ kernelName: SCALED_SOFTMAX, backendName: 'wasm', kernelFunc: scaledSoftmaxKernel as unknown as tf.KernelFunc });
  tf.registerGradient({
    kernelName: SCALED_SOFTMAX,
    outputsToSave: [true], // the probabilities
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const g = dy as tf.Tensor;
      const [p] = saved;
      const scale = attrs.scale as number;
      return {
        x: () => scaledSoftmaxGrad(g, p, scale),
        // as tf.add's gradient: only when something trains the bias (the tape asks for it)
        bias: () => {
          const shape = attrs.biasShape as number[];
          const dz = scaledSoftmaxGrad(g, p, 1);
          const axes = tf.backend_util.getReductionAxes(shape, p.shape);
          return (axes.length > 0 ? tf.sum(dz, axes) : dz).reshape(shape);
        },
      };
    },
  });
}

/** true when attention's softmax runs as the fused pass (core/train/memory.ts: its tape keeps less) */
export function fusedAttentionActive(): boolean {
  return active('scaledSoftmax') !== null;
}

/**
 * softmax(x / scale + bias) over the last axis of the attention scores x [B, H, Tq, Tk] (bias: the
 * additive mask, broadcastable to x without growing it, or null) in one addon pass each way, bit
 * for bit as the tfjs chain tf.softmax(tf.add(tf.div(x, scale), bias)) and its gradient (XNNPACK's
 * exp algorithm and sum order). Dropout on the result stays a tfjs op after it.
 * null when the addon is not in use or a tensor is not float32 (the caller runs the chain).
 */
export function scaledSoftmaxNative(x: tf.Tensor, scale: number, bias: tf.Tensor | null): tf.Tensor | null {
  const n = active('scaledSoftmax');
  if (!n || x.rank !== 4 || x.dtype !== 'float32' || x.size === 0 || (bias && bias.dtype !== 'float32')) return null;
  const strides = bias ? biasStrides(x.shape, bias.shape) : [0, 0, 0, 0];
  if (!strides) return null;
  registerScaledSoftmax();
  const attrs = { scale: Math.fround(scale), strides, biasShape: bias ? bias.shape : [] };
  const inputs = bias ? { x, bias } : { x };
  return tf.engine().runKernel(SCALED_SOFTMAX, inputs as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
}

/**
 * silu(gate) * up in one addon pass (the sigmoid computed in it as the wasm Sigmoid kernel does),
 * and dgate, dup in one pass (the tape keeps gate and up only; the sigmoid is recomputed), bit for
 * bit as tf.mul(core/ops.ts silu(gate), up); null when the addon is not in use or gate, up are not
 * float32 tensors of one shape (the caller runs the chain).
 */
export function siluMulNative(gate: tf.Tensor, up: tf.Tensor): tf.Tensor | null {
  const n = active('siluMul');
  if (!n || gate.dtype !== 'float32' || up.dtype !== 'float32' || gate.size === 0 || !tf.util.arraysEqual(gate.shape, up.shape)) return null;
  const { addon, backend } = n;
  const op = customOp((g: tf.Tensor, u: tf.Tensor, save: tf.GradSaveFunc) => {
    const out = uninitialised(backend, g.shape);
    addon.siluMul(view(backend, g), view(backend, u), null, view(backend, out), null);
    save([g, u]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor, [gg, uu]: tf.Tensor[]) => {
        const dgate = uninitialised(backend, gg.shape);
        const dup = uninitialised(backend, gg.shape);
        addon.siluMul(view(backend, gg), view(backend, uu), view(backend, dy), view(backend, dgate), view(backend, dup));
        return [dgate, dup];
      },
    };
  });
  return op(gate, up);
}

/**
 * core/ops.ts geluTanh (x sigmoid(2u), 2u = (x + x^3 c1) c2) in one addon pass, the sigmoid computed
 * in it as the wasm Sigmoid kernel does, and its gradient in one pass (the tape keeps x only; the
 * sigmoid is recomputed), bit for bit as geluTanh's chain; null when the addon is not in use or x
 * is not float32 (the caller runs the chain). c3 is the gradient's 3 c1.
 */
export function geluNative(x: tf.Tensor, c1: number, c2: number, c3: number): tf.Tensor | null {
  const n = active('gelu');
  if (!n || x.dtype !== 'float32' || x.size === 0) return null;
  const { addon, backend } = n;
  const [f1, f2, f3] = [c1, c2, c3].map(Math.fround);
  const op = customOp((x_: tf.Tensor, save: tf.GradSaveFunc) => {
    const out = uninitialised(backend, x_.shape);
    addon.gelu(view(backend, x_), null, view(backend, out), f1, f2, f3);
    save([x_]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor, [xx]: tf.Tensor[]) => {
        const dx = uninitialised(backend, xx.shape);
        addon.gelu(view(backend, xx), view(backend, dy), view(backend, dx), f1, f2, f3);
        return dx;
      },
    };
  });
  return op(x);
}
