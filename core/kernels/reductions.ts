// Reductions and elementwise kernels with a cheaper special case than the stock wasm ones:
//   Pow with a scalar exponent 2 (tf.norm, hence gradient clipping) -> Square (std::pow per
//                         element is ~8x slower than x*x);
//   Sum over leading axes (every bias / norm-weight gradient: [tokens, C] -> [C]): the stock kernel
//                         transposes the reduced axes to the end first (a copy, ~5 ns/element); a
//                         row-by-row accumulation on the heap reads x once; with the native addon
//                         in use (native-kernels.ts) the same accumulation in C (native/blas.cc
//                         columnSums: the same order, so the same values, 2.5-5x faster than the JS loop).
import * as tf from '@tensorflow/tfjs';
import { heapView, stock, type KernelArgs, type TensorInfo } from './wasm.ts';
import { nativeKernels } from './native-kernels.ts';

/** x ** 2 with a scalar exponent -> the Square kernel; anything else -> the stock Pow. */
export function pow(args: KernelArgs): TensorInfo {
  const { inputs, backend } = args;
  const a = inputs.a!;
  const b = inputs.b!;
  const bSize = b.shape.reduce((p, d) => p * d, 1);
  if (a.dtype === 'float32' && b.dtype === 'float32' && bSize === 1 && b.shape.length <= a.shape.length && heapView(b, backend)[0] === 2) {
    const square = tf.getKernel('Square', 'wasm')!.kernelFunc;
    return square({ inputs: { x: a } as any, backend: backend as any, attrs: {} }) as TensorInfo;
  }
  return stock('Pow').kernelFunc(args as any) as TensorInfo;
}

/**
 * tf.sum over the leading axes 0..k-1 of a float32 x [outer..., inner...] -> [inner...]: rows of
 * `inner` values added in order into a float64 accumulator, rounded to float32 once (in the addon
 * when it is in use, else in JS: the same order, the same values); any other reduction -> the stock kernel.
 */
export function sum(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const x = inputs.x!;
  const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape).sort((a, b) => a - b);
  const k = axes.length;
  const leading = k > 0 && k < x.shape.length && axes.every((a, i) => a === i);
  if (x.dtype !== 'float32' || !leading) return stock('Sum').kernelFunc(args as any) as TensorInfo;
  const innerShape = x.shape.slice(k);
  const inner = innerShape.reduce((p, d) => p * d, 1);
  const outShape = attrs.keepDims ? [...Array(k).fill(1), ...innerShape] : innerShape;
  const out = backend.makeOutput(outShape, 'float32');
  const xs = heapView(x, backend) as Float32Array; // views after makeOutput (the heap may grow)
  const os = heapView(out, backend) as Float32Array;
  const rows = inner === 0 ? 0 : xs.length / inner;
  const addon = nativeKernels('columnSums');
  if (addon) addon.columnSums(xs, os, rows, inner);
  else columnSumsJs(xs, os, rows, inner);
  return out;
}

/** out[j] = sum_r x[r, j] of x [rows, inner], a float64 accumulator per column, rows in order */
export function columnSumsJs(xs: Float32Array, out: Float32Array, rows: number, inner: number): void {
  const acc = new Float64Array(inner);
  let r = 0;
  // four rows per sweep (one load and store of the accumulator instead of four), still added in row order
  for (; r + 4 <= rows; r += 4) {
    const b0 = r * inner;
    const b1 = b0 + inner;
    const b2 = b1 + inner;
    const b3 = b2 + inner;
    for (let j = 0; j < inner; j++) acc[j] = acc[j] + xs[b0 + j] + xs[b1 + j] + xs[b2 + j] + xs[b3 + j];
  }
  for (; r < rows; r++) for (let j = 0, b = r * inner; j < inner; j++) acc[j] += xs[b + j];
  out.set(acc);
}
