// Kernels that move data (no arithmetic), faster than the stock wasm ones:
//   Identity (clone(): every tensor the gradient tape saves), Cast to the same dtype -> the output
//                         shares the input's buffer, reference-counted (as cpu's and wasm's Reshape);
//   Tile (hence broadcastTo, tf.where with a broadcast mask) -> block copies (copyWithin);
//   Transpose of rank >= 5 after merging axes (patchify, pixel shuffle) -> contiguous runs copied
//                         with TypedArray.set when the last axis stays last; a (batched) matrix
//                         transpose (every transposed matMul operand) -> 32 x 32 tiles;
//   GatherV2 of whole rows (axis 0: the token embedding, picking rows) -> one block copy per index
//                         (the stock kernel computes every element's source index in wasm);
//   SplitV, Concat (attention's qkv split [B, N, 3C] -> 3 x [B, N, C] and its gradient) -> one block
//                         copy per row and piece, straight on the heap (the stock SplitV copies all of
//                         x off the heap once per piece; the stock Concat makes a subarray per block).
// Block copies are Uint8Array.copyWithin over the wasm heap (a memmove, no allocation): the same
// bytes as the stock kernels by construction.
import * as tf from '@tensorflow/tfjs';
import { heapView, stock, stridesOf, type HeapArray, type KernelArgs, type TensorInfo } from './wasm.ts';

/**
 * Identity (tensor.clone(), and every tensor the gradient tape saves is a clone): the stock wasm
 * kernel copies the data; tensors are immutable (a Variable's assign swaps its dataId), so the
 * output shares the buffer, reference-counted, as the cpu backend and the wasm Reshape do.
 */
export function identity({ inputs, backend }: KernelArgs): TensorInfo {
  const x = inputs.x!;
  if (x.dtype === 'string') return stock('Identity').kernelFunc({ inputs, backend, attrs: {} } as never) as TensorInfo;
  (backend as unknown as { incRef(d: object): void }).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/** Cast to the same dtype (toFloat() of a float tensor, in several gradients): shared like Identity. */
export function cast({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const x = inputs.x!;
  if (attrs.dtype === x.dtype && x.dtype !== 'string') return identity({ inputs, backend, attrs });
  return stock('Cast').kernelFunc({ inputs, backend, attrs } as never) as TensorInfo;
}

/** tf.tile: fill one copy of each axis' block, then replicate it with copyWithin. */
export function tile({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const x = inputs.x!;
  const reps = attrs.reps as number[];
  const S = x.shape;
  const outShape = S.map((d, i) => d * reps[i]);
  const out = backend.makeOutput(outShape, x.dtype);
  if (outShape.some((d) => d === 0)) return out;
  if (S.length === 0) {
    heapView(out, backend).set(heapView(x, backend));
    return out;
  }
  const o = heapView(out, backend);
  const xs = heapView(x, backend);
  const xst = stridesOf(S);
  const ost = stridesOf(outShape);
  const last = S.length - 1;
  const fill = (d: number, xOff: number, oOff: number): void => {
    if (d === last) {
      o.set(xs.subarray(xOff, xOff + S[d]), oOff);
      for (let r = 1; r < reps[d]; r++) o.copyWithin(oOff + r * S[d], oOff, oOff + S[d]);
      return;
    }
    for (let i = 0; i < S[d]; i++) fill(d + 1, xOff + i * xst[d], oOff + i * ost[d]);
    const block = S[d] * ost[d];
    for (let r = 1; r < reps[d]; r++) o.copyWithin(oOff + r * block, oOff, oOff + block);
  };
  fill(0, 0, 0);
  return out;
}

/** Rank <= 4 (after dropping size-1 axes and merging axes that stay neighbours) -> stock kernel. */
export function transpose(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const x = inputs.x!;
  const perm = attrs.perm as number[];
  // drop size-1 axes, then merge input axes that stay adjacent and in order
  const keep = x.shape.map((d, i) => (d !== 1 ? i : -1)).filter((i) => i >= 0);
  const rank = new Map(keep.map((a, i) => [a, i]));
  const p1 = perm.filter((a) => x.shape[a] !== 1).map((a) => rank.get(a)!);
  const s1 = keep.map((a) => x.shape[a]);
  const groups: number[][] = []; // groups of input axes, in output order
  for (const a of p1) {
    const g = groups[groups.length - 1];
    if (g && g[g.length - 1] + 1 === a) g.push(a);
    else groups.push([a]);
  }
  const order = [...groups].sort((g, h) => g[0] - h[0]); // groups in input order
  const inShape = order.map((g) => g.reduce((p, a) => p * s1[a], 1));
  // a matrix transpose [R, C] -> [C, R], or a batch of them [Bt, R, C] -> [Bt, C, R]
  const mperm = groups.map((g) => order.indexOf(g));
  if ((mperm.length === 2 && mperm[0] === 1) || (mperm.length === 3 && mperm[0] === 0 && mperm[1] === 2)) {
    const [Bt, R, C] = mperm.length === 2 ? [1, inShape[0], inShape[1]] : inShape;
    const out = backend.makeOutput(perm.map((a) => x.shape[a]), x.dtype);
    blockedTranspose(heapView(x, backend), heapView(out, backend), Bt, R, C);
    return out;
  }
  if (groups.length <= 4) return stock('Transpose').kernelFunc(args as any) as TensorInfo;
  const inStr = stridesOf(inShape);
  const pos = new Map(order.map((g, i) => [g, i]));
  const outDims = groups.map((g) => inShape[pos.get(g)!]);
  const srcStride = groups.map((g) => inStr[pos.get(g)!]);
  const outShape = perm.map((a) => x.shape[a]);
  const out = backend.makeOutput(outShape, x.dtype);
  const o = heapView(out, backend);
  const xs = heapView(x, backend);
  const R = groups.length;
  const run = srcStride[R - 1] === 1 ? outDims[R - 1] : 1; // contiguous source run
  const outer = R - (run > 1 ? 1 : 0);
  const idx = new Array<number>(outer).fill(0);
  let src = 0;
  let dst = 0;
  const total = o.length;
  while (dst < total) {
    if (run > 1) {
      o.set(xs.subarray(src, src + run), dst);
      dst += run;
    } else {
      o[dst++] = xs[src];
    }
    // odometer over the outer output axes
    for (let k = outer - 1; k >= 0; k--) {
      idx[k]++;
      src += srcStride[k];
      if (idx[k] < outDims[k]) break;
      src -= srcStride[k] * outDims[k];
      idx[k] = 0;
    }
  }
  return out;
}

/**
 * o[b, j, i] = x[b, i, j] for x [Bt, R, C], in 32 x 32 tiles (both sides stay in cache), the inner
 * loop along the longer side (a 4096-float output stride hits the same L1 sets: 3x slower):
 * [640, 768] 1.3 -> 0.6 ms, [4096, 256] 8.9 -> 2 ms against the stock wasm kernel (every
 * transposed operand of a training step's products goes through it).
 */
function blockedTranspose(x: HeapArray, o: HeapArray, Bt: number, R: number, C: number): void {
  const T = 32;
  for (let b = 0; b < Bt; b++) {
    const base = b * R * C;
    for (let i0 = 0; i0 < R; i0 += T) {
      const i1 = Math.min(R, i0 + T);
      for (let j0 = 0; j0 < C; j0 += T) {
        const j1 = Math.min(C, j0 + T);
        if (R > C) {
          // tall: write runs of the output row (the strided side is the shorter input row)
          for (let j = j0; j < j1; j++) {
            const dst = base + j * R;
            for (let i = i0; i < i1; i++) o[dst + i] = x[base + i * C + j];
          }
        } else {
          for (let i = i0; i < i1; i++) {
            const src = base + i * C;
            for (let j = j0; j < j1; j++) o[base + j * R + i] = x[src + j];
          }
        }
      }
    }
  }
}

const sizeOf = (shape: number[]): number => shape.reduce((p, d) => p * d, 1);
const bytesPer = (dtype: string): number => (dtype === 'bool' ? 1 : 4);
/** the wasm heap's bytes (take it after the last makeOutput: growth replaces the buffer) and a tensor's byte offset */
const heapBytes = (backend: KernelArgs['backend']): Uint8Array => (backend.wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8;
const offsetOf = (t: TensorInfo, backend: KernelArgs['backend']): number => backend.dataIdMap.get(t.dataId).memoryOffset;

/**
 * tf.gather(x, indices) along axis 0 (batchDims 0): out [...indices, ...x.shape[1:]], row i =
 * x[indices[i]] copied as one block. Indices outside [0, x.shape[0]) throw the stock kernel's
 * error; other axes, batchDims, strings -> the stock kernel.
 */
export function gatherV2(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const x = inputs.x!;
  const indices = inputs.indices!;
  const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0];
  if (axis !== 0 || (attrs.batchDims ?? 0) !== 0 || indices.dtype !== 'int32' || x.dtype === 'string') {
    return stock('GatherV2').kernelFunc(args as any) as TensorInfo;
  }
  const n = x.shape[0];
  const idx = heapView(indices, backend) as Int32Array;
  for (let i = 0; i < idx.length; i++) {
    const v = idx[i];
    if (!(v >= 0 && v <= n - 1)) throw new Error(`GatherV2: the index value ${v} is not in [0, ${n - 1}]`);
  }
  const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
  const rowBytes = sizeOf(x.shape.slice(1)) * bytesPer(x.dtype);
  if (idx.length === 0 || rowBytes === 0) return out;
  const heap = heapBytes(backend);
  const ids = heapView(indices, backend) as Int32Array; // again: makeOutput may have grown the heap
  const src = offsetOf(x, backend);
  let dst = offsetOf(out, backend);
  for (let i = 0; i < ids.length; i++, dst += rowBytes) {
    const from = src + ids[i] * rowBytes;
    heap.copyWithin(dst, from, from + rowBytes);
  }
  return out;
}

/**
 * tf.split(x, sizes, axis): x [outer, D, inner] -> pieces [outer, s_k, inner], each piece one block
 * copy per outer row (one in all when outer = 1); strings -> the stock kernel.
 */
export function splitV(args: KernelArgs): TensorInfo[] {
  const { inputs, backend, attrs } = args;
  const x = inputs.x!;
  if (x.dtype === 'string') return stock('SplitV').kernelFunc(args as any) as unknown as TensorInfo[];
  const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, attrs.numOrSizeSplits as number | number[], axis);
  const outer = sizeOf(x.shape.slice(0, axis));
  const innerBytes = sizeOf(x.shape.slice(axis + 1)) * bytesPer(x.dtype);
  const rowBytes = x.shape[axis] * innerBytes; // one outer row of x
  const outs = sizes.map((s) => backend.makeOutput(x.shape.map((d, i) => (i === axis ? s : d)), x.dtype));
  const heap = heapBytes(backend);
  let begin = offsetOf(x, backend);
  sizes.forEach((s, k) => {
    const block = s * innerBytes;
    const dst = offsetOf(outs[k], backend);
    if (block > 0 && (outer === 1 || block === rowBytes)) heap.copyWithin(dst, begin, begin + outer * block);
    else if (block > 0) for (let r = 0; r < outer; r++) heap.copyWithin(dst + r * block, begin + r * rowBytes, begin + r * rowBytes + block);
    begin += block;
  });
  return outs;
}

/**
 * tf.concat(xs, axis): out [outer, sum of D_k, inner], each outer row the inputs' rows one after the
 * other, one block copy each; a single non-empty input is shared (Identity); strings -> the stock kernel.
 */
export function concat(args: KernelArgs): TensorInfo {
  const { backend, attrs } = args;
  const xs = args.inputs as unknown as TensorInfo[];
  if (xs[0].dtype === 'string') return stock('Concat').kernelFunc(args as any) as TensorInfo;
  const axis = tf.util.parseAxisParam(attrs.axis as number, xs[0].shape)[0];
  const shapes = xs.map((t) => t.shape);
  tf.backend_util.assertParamsConsistent(shapes, axis);
  const outShape = tf.backend_util.computeOutShape(shapes, axis);
  const parts = xs.filter((t) => sizeOf(t.shape) > 0);
  if (parts.length === 1) return identity({ inputs: { x: parts[0] }, backend, attrs: {} });
  const out = backend.makeOutput(outShape, xs[0].dtype);
  if (sizeOf(outShape) === 0) return out;
  const outer = sizeOf(outShape.slice(0, axis));
  const bpe = bytesPer(xs[0].dtype);
  const blocks = parts.map((t) => sizeOf(t.shape.slice(axis)) * bpe); // one outer row of each input
  const heap = heapBytes(backend);
  const srcs = parts.map((t) => offsetOf(t, backend));
  let dst = offsetOf(out, backend);
  if (outer === 1) {
    parts.forEach((_, k) => {
      heap.copyWithin(dst, srcs[k], srcs[k] + blocks[k]);
      dst += blocks[k];
    });
    return out;
  }
  for (let r = 0; r < outer; r++)
    for (let k = 0; k < parts.length; k++) {
      const from = srcs[k] + r * blocks[k];
      heap.copyWithin(dst, from, from + blocks[k]);
      dst += blocks[k];
    }
  return out;
}
