// Native matrix products under the wasm backend (issue 16): BatchMatMul and _FusedMatMul run
// OpenBLAS sgemm (Accelerate on macOS) from the optional addon native/blas.cc, straight on the
// wasm module's heap: the operands' and the output's byte offsets inside the heap are passed
// with a typed array over it, so nothing is copied and the heap does not grow (the output is the
// tensor the backend allocates anyway). Transposes are BLAS flags (no transposed copies), a
// broadcast batch is a list of offsets (one sgemm per item, in C), one-row products are sgemv.
//
// Why: XNNPACK compiled to wasm SIMD128 reaches ~35-45 GFLOP/s on the products that dominate a
// training step; OpenBLAS on the same core 60-180 (AVX2 / AVX-512). Figures: docs/performance.md.
//
// installed by core/kernels/index.ts installFastKernels over its XNNPACK kernels (which stay as the
// fallback: prelu activations, non-float32 dtypes), and removed first by uninstallFastKernels.
// The addon is built at `npm ci` by scripts/build-native.mjs when a compiler and a BLAS are
// present; VLM_NATIVE_MATMUL=0 in the environment keeps the XNNPACK kernels. BLAS threads follow
// runtime.threads (setNativeThreads, called by core/runtime.ts).
import * as tf from '@tensorflow/tfjs';
import { broadcastIndexer, outShapeOf } from './matmul.ts';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export type TensorInfo = { dataId: object; shape: number[]; dtype: tf.DataType };
type WasmData = { memoryOffset: number };
export interface WasmBackend {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): WasmData };
  makeOutput(shape: number[], dtype: string): TensorInfo;
  refCount(dataId: object): number;
}
type KernelArgs = { inputs: Record<string, TensorInfo | undefined>; backend: WasmBackend; attrs: Record<string, any> };

/** The addon's functions (native/blas.cc). */
export interface NativeBlas {
  gemm(heap: Uint8Array, tA: boolean, tB: boolean, M: number, N: number, K: number, lda: number, ldb: number, ldc: number, offsets: Uint32Array): void;
  biasActivation(heap: Uint8Array, cOffset: number, rows: number, N: number, biasOffset: number, biasSize: number, act: number, alpha: number): void;
  adamwStep(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, out: Float32Array, decay: number, beta1: number, beta2: number, bc2Sqrt: number, eps: number, stepSize: number, gradScale?: number): void;
  sumSquares(xs: Float32Array[]): Float64Array;
  activation(kind: number, x: Float32Array, s: Float32Array | null, dy: Float32Array | null, out: Float32Array, c1: number, c2: number, c3: number): void;
  logSoftmax(x: Float32Array, out: Float32Array, rows: number, V: number, dy: Float32Array | null): void;
  rope(x: Float32Array, cos: Float32Array, sin: Float32Array, out: Float32Array, B: number, H: number, T: number, hd: number, cosRows: number, inverse: boolean): void;
  matmulArrays(x: Float32Array, w: Float32Array, y: Float32Array, rows: number, K: number, N: number): void;
  decodeAttend(q: Float32Array, K: Float32Array, V: Float32Array, y: Float32Array, mask: Int32Array | null, H: number, G: number, hd: number, L: number, cap: number, kvBase: number, m0: number, yAt: number, scale: number): void;
  norm(kind: number, x: Float32Array, w: Float32Array, b: Float32Array | null, y: Float32Array, rows: number, C: number, eps: number): void;
  normGrad(kind: number, x: Float32Array, w: Float32Array, dy: Float32Array, dx: Float32Array, dw: Float32Array, db: Float32Array | null, rows: number, C: number, eps: number): void;
  scaledSoftmax(x: Float32Array, bias: Float32Array | null, out: Float32Array, dy: Float32Array | null, B: number, H: number, Tq: number, Tk: number, scale: number, sb: number, sh: number, sq: number, sk: number): void;
  siluMul(g: Float32Array, u: Float32Array, dy: Float32Array | null, out: Float32Array, out2: Float32Array | null): void;
  gelu(x: Float32Array, dy: Float32Array | null, out: Float32Array, c1: number, c2: number, c3: number): void;
  setThreads(n: number): void;
  threads(): number;
  info(): { library: string; corename: string; config: string };
}

export const NATIVE_ADDON = fileURLToPath(new URL('../../native/build/nanovlm_blas.node', import.meta.url));

let addon: NativeBlas | null | undefined;
let loadError = '';
/** the OPENBLAS_CORETYPE this process gave OpenBLAS (autoBlasCore), or null */
let autoCore: string | null = null;

/** The addon, or null with the reason in nativeMatMulStatus() (loaded once). */
export function loadNativeBlas(): NativeBlas | null {
  if (addon !== undefined) return addon;
  addon = null;
  if (!existsSync(NATIVE_ADDON)) {
    loadError = 'native addon not built (needs a C++ compiler and OpenBLAS: apt-get install build-essential libopenblas-dev, then npm run build:native)';
  } else {
    // OpenBLAS reads OPENBLAS_CORETYPE once, when it loads (with the addon, just below): set for
    // that moment only, so that child processes (PyTorch references, ...) keep the user's environment
    autoCore = autoBlasCore(process.env, cpuFlags());
    const before = process.env.OPENBLAS_CORETYPE; // unset or empty
    if (autoCore) process.env.OPENBLAS_CORETYPE = autoCore;
    try {
      addon = createRequire(import.meta.url)(NATIVE_ADDON) as NativeBlas;
      addon.setThreads(threads);
    } catch (e) {
      loadError = `native addon failed to load (${String((e as Error).message ?? e).split('\n')[0]})`;
    } finally {
      if (autoCore && before === undefined) delete process.env.OPENBLAS_CORETYPE;
      else if (autoCore) process.env.OPENBLAS_CORETYPE = before;
    }
  }
  return addon;
}

let threads = 1;
const saved = new Map<string, tf.KernelConfig>();

/** BLAS threads (runtime.threads; default 1). */
export function setNativeThreads(n: number | null | undefined): void {
  threads = n && n > 1 ? Math.floor(n) : 1;
  addon?.setThreads(threads);
}

/**
 * Whether installNativeMatMul will register the native products on the wasm backend (the addon
 * loads and neither VLM_NATIVE_MATMUL=0 nor VLM_FAST_KERNELS=0 is set): decided before the backend
 * starts, because with them core/runtime.ts gives runtime.threads to BLAS, not to a threaded wasm build.
 */
export function nativeMatMulWillRun(): boolean {
  return process.env.VLM_FAST_KERNELS !== '0' && process.env.VLM_NATIVE_MATMUL !== '0' && loadNativeBlas() !== null;
}

export function nativeMatMulActive(): boolean {
  return saved.size > 0;
}

/** One line for `vlm run` / `vlm bench`: which product kernel runs, with how many threads. */
export function nativeMatMulStatus(): string {
  if (nativeMatMulActive()) {
    const i = addon!.info();
    const core = i.corename ? `, ${i.corename} kernels${autoCore ? ', picked from the CPU flags as OPENBLAS_CORETYPE is unset' : ''}` : '';
    // the direct calls of core/kernels/native-direct.ts (an addon built before them has none)
    const direct = typeof addon!.adamwStep === 'function' && process.env.VLM_NATIVE_DIRECT !== '0' ? '; AdamW, gradient norm and one-token products too' : '';
    const n = addon!.threads() || threads;
    return `products: ${i.library} sgemm on the wasm heap (native addon${core}${direct}), ${n} thread${n === 1 ? '' : 's'}`;
  }
  const why = process.env.VLM_NATIVE_MATMUL === '0' ? 'VLM_NATIVE_MATMUL=0' : loadError || 'native addon not installed';
  return `products: XNNPACK (wasm); ${why}`;
}

// OpenBLAS cores without AVX2/FMA kernels: chosen on a CPU that has them, OpenBLAS did not recognise it
const OLD_CORES = new Set(['prescott', 'core2', 'penryn', 'dunnington', 'nehalem', 'atom', 'katmai', 'coppermine', 'northwood', 'banias', 'sandybridge']);

/**
 * A hint when OpenBLAS runs kernels far below what the CPU can do, or null. Debian 12's OpenBLAS
 * 0.3.21 does not recognise recent Intel Xeons and falls back to Prescott (SSE3) kernels, ~3-5x
 * slower on a product than its AVX2 (Haswell) or AVX-512 (SkylakeX) kernels; OPENBLAS_CORETYPE,
 * read by OpenBLAS when it loads, picks them. Never when the user set OPENBLAS_CORETYPE.
 *   corename: openblas_get_corename(); cpuFlags: /proc/cpuinfo's flags
 */
export function blasCoreHint(corename: string, cpuFlags: Set<string>, coretypeEnv: string | undefined): string | null {
  const best = bestBlasCore(cpuFlags);
  if (coretypeEnv || !OLD_CORES.has(corename.toLowerCase()) || !best) return null;
  return `note: OpenBLAS did not recognise this CPU and runs its ${corename} kernels (no AVX2); products are 2-4x faster with OPENBLAS_CORETYPE=${best}${best === 'SkylakeX' ? ' (AVX-512; or Haswell, AVX2)' : ' (AVX2)'} in the environment (what nanovlm-ts sets by itself unless VLM_BLAS_AUTOCORE=0)`;
}

/** The CPU's feature flags (Linux: /proc/cpuinfo), or null elsewhere (macOS: Accelerate picks its own kernels). */
export function cpuFlags(): Set<string> | null {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    return new Set((line?.split(':')[1] ?? '').trim().split(/\s+/));
  } catch {
    return null;
  }
}

/** The best OpenBLAS x86-64 core these CPU flags run: SkylakeX (AVX-512 F/BW/VL/DQ), Haswell (AVX2 + FMA), or null. */
export function bestBlasCore(flags: Set<string>): 'SkylakeX' | 'Haswell' | null {
  if (flags.has('avx512f') && flags.has('avx512bw') && flags.has('avx512vl') && flags.has('avx512dq')) return 'SkylakeX';
  return flags.has('avx2') && flags.has('fma') ? 'Haswell' : null;
}

/**
 * The OPENBLAS_CORETYPE to load OpenBLAS with when the user set none: bestBlasCore of the CPU, so
 * that an OpenBLAS older than the CPU does not fall back to SSE3 kernels (Debian 12's 0.3.21 on a
 * recent Xeon: Prescott, 2-4x slower products; blasCoreHint). null, leaving OpenBLAS its own
 * detection: OPENBLAS_CORETYPE set (the user's choice; empty counts as unset), VLM_BLAS_AUTOCORE=0, no
 * /proc/cpuinfo (flags null), or a CPU without AVX2. On a CPU OpenBLAS does know this asks for the
 * kernels it would run anyway (SkylakeX on AVX-512 Xeons; on AMD Zen its Zen target uses the
 * Haswell sgemm kernels).
 */
export function autoBlasCore(env: Record<string, string | undefined>, flags: Set<string> | null): string | null {
  if (env.OPENBLAS_CORETYPE || env.VLM_BLAS_AUTOCORE === '0' || !flags) return null;
  return bestBlasCore(flags);
}

/** autoBlasCore for this process on this machine: the core the addon will ask OpenBLAS for, or null */
export function autoBlasCoreHere(): string | null {
  return autoBlasCore(process.env, cpuFlags());
}

/** blasCoreHint for the loaded addon on this machine (Linux: /proc/cpuinfo), or null */
export function nativeBlasHint(): string | null {
  if (!nativeMatMulActive()) return null;
  const flags = cpuFlags();
  const corename = addon!.info().corename;
  if (autoCore && flags && OLD_CORES.has(corename.toLowerCase()))
    return `note: OpenBLAS runs its ${corename} kernels although OPENBLAS_CORETYPE=${autoCore} was asked (a build without DYNAMIC_ARCH?); products are 2-4x slower than this CPU allows: an OpenBLAS built for it (or Debian/Ubuntu's libopenblas0-pthread) fixes that`;
  return flags && blasCoreHint(corename, flags, process.env.OPENBLAS_CORETYPE);
}

/** Register the native BatchMatMul / _FusedMatMul over the current wasm ones; false if unavailable. */
export function installNativeMatMul(backend: string): boolean {
  if (backend !== 'wasm' || nativeMatMulActive()) return nativeMatMulActive();
  if (process.env.VLM_NATIVE_MATMUL === '0' || !loadNativeBlas()) return false;
  for (const [name, kernelFunc] of [['BatchMatMul', batchMatMul], ['_FusedMatMul', fusedMatMul]] as const) {
    const prev = tf.getKernel(name, 'wasm');
    if (!prev) continue;
    saved.set(name, prev);
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  }
  return true;
}

/** Put back the kernels that were registered before installNativeMatMul. */
export function uninstallNativeMatMul(backend: string): void {
  if (backend !== 'wasm') return;
  for (const [name, prev] of saved) {
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel(prev);
  }
  saved.clear();
}

function previous(name: string, args: KernelArgs): TensorInfo {
  return saved.get(name)!.kernelFunc(args as never) as TensorInfo;
}

const prod = (s: number[]): number => s.reduce((p, d) => p * d, 1);

/**
 * out = op(a) @ op(b) on the heap: a [..., M, K] (or [..., K, M] when tA), b [..., K, N] (or
 * [..., N, K] when tB); returns the output tensor and the product's sizes.
 */
function product(a: TensorInfo, b: TensorInfo, tA: boolean, tB: boolean, backend: WasmBackend, op: string): { out: TensorInfo; rows: number; N: number } {
  const { outShape, M, N, K } = outShapeOf(a, b, tA, tB, op);
  const aOuter = a.shape.slice(0, -2);
  const bOuter = b.shape.slice(0, -2);
  const outer = outShape.slice(0, -2);
  const out = backend.makeOutput([...outer, M, N], 'float32');
  const batch = prod(outer);
  const rows = batch * M;
  if (rows === 0 || N === 0) return { out, rows, N };
  const base = (t: TensorInfo) => backend.dataIdMap.get(t.dataId).memoryOffset;
  const [aBase, bBase, oBase] = [base(a), base(b), base(out)];
  const lda = Math.max(1, tA ? M : K); // BLAS wants leading dimensions >= 1 (K = 0: zeros)
  const ldb = Math.max(1, tB ? K : N);
  let offsets: Uint32Array;
  let m = M;
  if (prod(bOuter) === 1 && !tA) {
    // one right operand for every item and a row-major left one: the batch folds into rows
    offsets = Uint32Array.of(aBase, bBase, oBase);
    m = rows;
  } else {
    const ia = broadcastIndexer(aOuter, outer);
    const ib = broadcastIndexer(bOuter, outer);
    offsets = new Uint32Array(3 * batch);
    for (let i = 0; i < batch; i++) {
      offsets[3 * i] = aBase + ia(i) * M * K * 4;
      offsets[3 * i + 1] = bBase + ib(i) * K * N * 4;
      offsets[3 * i + 2] = oBase + i * M * N * 4;
    }
  }
  // the heap view is read after makeOutput: an allocation may grow (and replace) the heap buffer
  addon!.gemm(backend.wasm.HEAPU8, tA, tB, m, N, K, lda, ldb, N, offsets);
  return { out, rows, N };
}

function batchMatMul(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const a = inputs.a!;
  const b = inputs.b!;
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return previous('BatchMatMul', args);
  return product(a, b, !!attrs.transposeA, !!attrs.transposeB, backend, 'matMul').out;
}

/** tfjs _FusedMatMul activation -> the addon's code (prelu: the XNNPACK kernel) */
const ACTIVATION: Record<string, number> = { linear: 0, relu: 1, relu6: 2, leakyrelu: 4, sigmoid: 5, elu: 6 };

function fusedMatMul(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { a, b, bias, preluActivationWeights } = inputs as Record<string, TensorInfo | undefined>;
  const act = ACTIVATION[(attrs.activation as string) ?? 'linear'];
  const N = attrs.transposeB ? b!.shape[b!.shape.length - 2] : b!.shape[b!.shape.length - 1];
  const biasOk = bias == null || (bias.dtype === 'float32' && bias.shape.length === 1 && (bias.shape[0] === N || bias.shape[0] === 1));
  if (a!.dtype !== 'float32' || b!.dtype !== 'float32' || preluActivationWeights != null || act === undefined || !biasOk) {
    return previous('_FusedMatMul', args);
  }
  const { out, rows } = product(a!, b!, !!attrs.transposeA, !!attrs.transposeB, backend, '_FusedMatMul');
  if (rows > 0 && N > 0 && (bias != null || act !== 0)) {
    const biasOffset = bias == null ? -1 : backend.dataIdMap.get(bias.dataId).memoryOffset;
    const cOffset = backend.dataIdMap.get(out.dataId).memoryOffset;
    addon!.biasActivation(backend.wasm.HEAPU8, cOffset, rows, N, biasOffset, bias?.shape[0] ?? 0, act, attrs.leakyreluAlpha ?? 0);
  }
  return out;
}
