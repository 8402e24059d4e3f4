// The native passes behind some kernel replacements of this folder (issue 16): when the addon
// (native/blas.cc) is in use, reductions.ts's leading-axis Sum runs its column sums there; without
// it (no addon, another backend) the JS loops run. The same switches as the other native passes
// (core/kernels/native-direct.ts): VLM_NATIVE_MATMUL=0 or VLM_FAST_KERNELS=0 (no native products
// installed), VLM_NATIVE_DIRECT=0, VLM_NATIVE_FUSED=0 turn them off, to measure them.
import { loadNativeBlas, nativeMatMulActive } from './native-matmul.ts';

/** The addon's functions used by kernel replacements (native/blas.cc, "kernel replacements" block). */
export interface NativeKernels {
  /** out[j] = sum_r x[r, j] for x [rows, inner], in double, rows in order, rounded once */
  columnSums(x: Float32Array, out: Float32Array, rows: number, inner: number): void;
}

/** The addon when the native kernels are in use and it has `fn` (an older build keeps the JS path), else null. */
export function nativeKernels(fn: keyof NativeKernels): NativeKernels | null {
  if (!nativeMatMulActive() || process.env.VLM_NATIVE_DIRECT === '0' || process.env.VLM_NATIVE_FUSED === '0') return null;
  const addon = loadNativeBlas() as unknown as Partial<NativeKernels> | null;
  return addon && typeof addon[fn] === 'function' ? (addon as NativeKernels) : null;
}
