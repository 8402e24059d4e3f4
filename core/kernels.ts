// Faster kernels registered over tfjs defaults for the backends we run on (performance work,
// issue 7). Called once by core/runtime.ts after a backend is chosen; model code keeps writing
// natural ops (`tf.matMul(x, w, false, true)`) and the gradients tfjs builds from them
// (matMul with transposeA / transposeB) take the fast path too.
//
// Why (tfjs-backend-wasm 4.22, src/cc/batch_mat_mul_impl.cc): BatchMatMul / _FusedMatMul call
// XNNPACK's fully-connected operator (~45 GFLOP/s here) ONLY when neither input is transposed
// and both batch sizes are 1; every other case (any transpose, any batched product such as
// attention's [B*H, T, hd] x [B*H, hd, T]) falls into a scalar triple loop at ~1.5-3.5 GFLOP/s.
// The replacements below:
//   1. transpose an input with the wasm Transpose kernel when asked (an O(n^2) copy), then
//   2. run plain products on XNNPACK: a batch-1 right operand folds the left batch into rows
//      (one call); otherwise one call per batch item on *aliases*: extra tensor ids registered
//      with the wasm module that point into the existing buffers (no copies), released right
//      after (that also drops XNNPACK's operator cached on the alias id).
//   3. few rows times a transposed shared weight (generation: one token through a Linear) runs
//      as (W @ x^T)^T, so the weight is neither transposed nor re-packed for every token.
// Results equal the original kernels up to float32 summation order (test/perf/kernels.test.ts).
//
// Kernels the wasm backend lacks although training needs them (tfjs falls over with "Kernel 'X'
// not registered for backend 'wasm'" in the backward pass):
//   UnsortedSegmentSum    gradient of gather (token embedding, picking target log-probs):
//                         a scatter-add in JS straight on the wasm heap, O(size of x).
//   Conv2DBackpropFilter  gradient of conv2d's filter (a patch embedding written as a conv):
//                         im2col on the heap, then one XNNPACK product cols^T @ dy.
// Stock kernels that copy where sharing is enough:
//   Identity (clone(): every tensor the gradient tape saves), Cast to the same dtype -> the output
//                         shares the input's buffer, reference-counted (as cpu's and wasm's Reshape).
// Stock kernels that compute every element's source index one by one (~50 ns/element):
//   Tile (hence broadcastTo, tf.where with a broadcast mask)  -> block copies (copyWithin).
//   Transpose of rank >= 5 after merging axes (patchify, pixel shuffle) -> contiguous runs
//                         copied with TypedArray.set when the last axis stays last; a (batched)
//                         matrix transpose (every transposed matMul operand) -> 32 x 32 tiles.
//   Pow with a scalar exponent 2 (tf.norm, hence gradient clipping) -> Square (std::pow per
//                         element is ~8x slower than x*x).
//   Sum over leading axes (every bias / norm-weight gradient: [tokens, C] -> [C]): the stock
//                         kernel transposes the reduced axes to the end first (a copy, ~5 ns/element);
//                         a row-by-row accumulation on the heap reads x once.
import * as tf from '@tensorflow/tfjs';
import { setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { installNativeMatMul, uninstallNativeMatMul } from './kernels/native-matmul.ts';

type TensorInfo = { dataId: object; shape: number[]; dtype: tf.DataType };
type WasmData = { id: number; memoryOffset: number; shape: number[]; dtype: string; refCount: number };
interface WasmBackend {
  wasm: {
    cwrap(name: string, ret: null, args: string[]): (...args: unknown[]) => void;
    tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
  };
  dataIdMap: { get(dataId: object): WasmData };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: string): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}
type KernelArgs = { inputs: Record<string, TensorInfo | undefined>; backend: WasmBackend; attrs: Record<string, any> };

const installed = new Set<string>();
/** Kernel configs we replaced, to restore them (tests compare against the originals). */
const originals = new Map<string, tf.KernelConfig>();
/** Kernels we added where tfjs has none (kept by uninstall: nothing to go back to). */
const added = new Set<string>();

/** Kernels tfjs lacks on wasm: always registered (training cannot run without them). */
const MISSING_ON_WASM = ['UnsortedSegmentSum', 'Conv2DBackpropFilter'];

/**
 * Register the wasm kernels. VLM_FAST_KERNELS=0 in the environment registers only the missing
 * ones (to measure the stock kernels: `VLM_FAST_KERNELS=0 npm run bench`).
 */
export function installFastKernels(backend: string): void {
  if (backend !== 'wasm' || installed.has(backend)) return;
  installed.add(backend);
  const stock = process.env.VLM_FAST_KERNELS === '0';
  for (const k of wasmKernels()) if (!stock || MISSING_ON_WASM.includes(k.kernelName)) replaceKernel(k);
  if (!stock) installNativeMatMul(backend); // OpenBLAS products over the XNNPACK ones, when built (issue 16)
}

/** Put back the stock tfjs kernels (for tests measuring the replacements against them). */
export function uninstallFastKernels(backend: string): void {
  if (!installed.delete(backend)) return;
  uninstallNativeMatMul(backend);
  for (const [key, config] of originals) {
    if (config.backendName !== backend) continue;
    tf.unregisterKernel(config.kernelName, config.backendName);
    tf.registerKernel(config);
    originals.delete(key);
  }
}

export function fastKernelsInstalled(backend: string): boolean {
  return installed.has(backend);
}

function replaceKernel(config: tf.KernelConfig): void {
  const old = tf.getKernel(config.kernelName, config.backendName);
  if (old) {
    originals.set(`${config.kernelName}/${config.backendName}`, old);
    tf.unregisterKernel(config.kernelName, config.backendName);
  } else {
    added.add(`${config.kernelName}/${config.backendName}`);
  }
  tf.registerKernel(config);
  // registerKernel runs setupFunc only when the backend initialises later; run it now if the
  // backend already exists (the normal case: runtime chose and initialised it first).
  const b = tf.engine().registry[config.backendName];
  if (b && config.setupFunc) config.setupFunc(b);
}

// ---- wasm ------------------------------------------------------------------------------------

let wasmBatchMatMul: (...a: unknown[]) => void;
let wasmFusedMatMul: (...a: unknown[]) => void;

const FUSED_ACTIVATION: Record<string, number> = { linear: 0, relu: 1, relu6: 2, prelu: 3, leakyrelu: 4, sigmoid: 5, elu: 6 };

function wasmKernels(): tf.KernelConfig[] {
  return [
    {
      kernelName: 'BatchMatMul',
      backendName: 'wasm',
      setupFunc: (b) => {
        wasmBatchMatMul = (b as unknown as WasmBackend).wasm.cwrap('BatchMatMul', null, [
          'number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number',
        ]);
      },
      kernelFunc: batchMatMul as unknown as tf.KernelFunc,
    },
    {
      kernelName: '_FusedMatMul',
      backendName: 'wasm',
      setupFunc: (b) => {
        wasmFusedMatMul = (b as unknown as WasmBackend).wasm.cwrap('_FusedMatMul', null, [
          'number', 'array', 'number', 'number', 'array', 'number', 'number', 'number',
          'number', 'number', 'number', 'number', 'number',
        ]);
      },
      kernelFunc: fusedMatMul as unknown as tf.KernelFunc,
    },
    { kernelName: 'Identity', backendName: 'wasm', kernelFunc: identity as unknown as tf.KernelFunc },
    { kernelName: 'Cast', backendName: 'wasm', kernelFunc: cast as unknown as tf.KernelFunc },
    { kernelName: 'Tile', backendName: 'wasm', kernelFunc: tile as unknown as tf.KernelFunc },
    { kernelName: 'Transpose', backendName: 'wasm', kernelFunc: transpose as unknown as tf.KernelFunc },
    { kernelName: 'Pow', backendName: 'wasm', kernelFunc: pow as unknown as tf.KernelFunc },
    { kernelName: 'Sum', backendName: 'wasm', kernelFunc: sum as unknown as tf.KernelFunc },
    { kernelName: 'UnsortedSegmentSum', backendName: 'wasm', kernelFunc: unsortedSegmentSum as unknown as tf.KernelFunc },
    { kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: conv2DBackpropFilter as unknown as tf.KernelFunc },
  ];
}

/**
 * Identity (tensor.clone(), and every tensor the gradient tape saves is a clone): the stock wasm
 * kernel copies the data; tensors are immutable (a Variable's assign swaps its dataId), so the
 * output shares the buffer, reference-counted, as the cpu backend and the wasm Reshape do.
 */
function identity({ inputs, backend }: KernelArgs): TensorInfo {
  const x = inputs.x!;
  if (x.dtype === 'string') return originals.get('Identity/wasm')!.kernelFunc({ inputs, backend, attrs: {} } as never) as TensorInfo;
  (backend as unknown as { incRef(d: object): void }).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/** Cast to the same dtype (toFloat() of a float tensor, in several gradients): shared like Identity. */
function cast({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const x = inputs.x!;
  if (attrs.dtype === x.dtype && x.dtype !== 'string') return identity({ inputs, backend, attrs });
  return originals.get('Cast/wasm')!.kernelFunc({ inputs, backend, attrs } as never) as TensorInfo;
}

function shapeBytes(shape: number[]): Uint8Array {
  return new Uint8Array(new Int32Array(shape).buffer);
}

/** Swap the last two axes with the wasm Transpose kernel (a real copy). */
function transposeLast2(x: TensorInfo, backend: WasmBackend): TensorInfo {
  const r = x.shape.length;
  const perm = [...Array(r).keys()];
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  const transpose = tf.getKernel('Transpose', 'wasm')!.kernelFunc;
  return transpose({ inputs: { x } as any, backend: backend as any, attrs: { perm } }) as TensorInfo;
}

/**
 * out[i] = a[ia(i)] @ b[ib(i)] for every item of the broadcast batch, with a [..., M, K] and
 * b [..., K, N] already untransposed. `call(aId, aShape, bId, bShape, outId)` runs one plain
 * product on XNNPACK.
 */
function plainProducts(
  a: TensorInfo,
  b: TensorInfo,
  out: TensorInfo,
  backend: WasmBackend,
  call: (aId: number, aShape: number[], bId: number, bShape: number[], outId: number) => void,
): void {
  const M = a.shape[a.shape.length - 2];
  const K = a.shape[a.shape.length - 1];
  const N = b.shape[b.shape.length - 1];
  const aOuter = a.shape.slice(0, -2);
  const bOuter = b.shape.slice(0, -2);
  const batchA = aOuter.reduce((p, d) => p * d, 1);
  const batchB = bOuter.reduce((p, d) => p * d, 1);
  const ad = backend.dataIdMap.get(a.dataId);
  const bd = backend.dataIdMap.get(b.dataId);
  const od = backend.dataIdMap.get(out.dataId);
  if (batchB === 1) {
    // the same right operand for every item: fold the batch into rows, one product
    call(ad.id, [1, batchA * M, K], bd.id, [1, K, N], od.id);
    return;
  }
  const outOuter = tf.backend_util.assertAndGetBroadcastShape(aOuter, bOuter);
  const batch = outOuter.reduce((p, d) => p * d, 1);
  const aIndex = broadcastIndexer(aOuter, outOuter);
  const bIndex = broadcastIndexer(bOuter, outOuter);
  const tfjs = backend.wasm.tfjs;
  const alias = (base: WasmData, item: number, size: number): number => {
    const id = backend.dataIdNextNumber++;
    tfjs.registerTensor(id, size, base.memoryOffset + item * size * 4);
    return id;
  };
  const aAliases = new Map<number, number>();
  const temps: number[] = [];
  try {
    for (let i = 0; i < batch; i++) {
      const ia = aIndex(i);
      const ib = bIndex(i);
      let aId = aAliases.get(ia);
      if (aId === undefined) {
        aId = batchA === 1 ? ad.id : alias(ad, ia, M * K);
        if (batchA !== 1) temps.push(aId);
        aAliases.set(ia, aId);
      }
      const bId = alias(bd, ib, K * N);
      const oId = alias(od, i, M * N);
      try {
        call(aId, [1, M, K], bId, [1, K, N], oId);
      } finally {
        tfjs.disposeData(bId); // also frees XNNPACK's operator cached on this id
        tfjs.disposeData(oId);
      }
    }
  } finally {
    for (const id of temps) tfjs.disposeData(id);
  }
}

/** flat index in the broadcast output batch -> flat index in an operand's own batch */
function broadcastIndexer(shape: number[], outShape: number[]): (i: number) => number {
  const size = shape.reduce((p, d) => p * d, 1);
  if (size === 1) return () => 0;
  const padded = [...Array(outShape.length - shape.length).fill(1), ...shape];
  if (padded.every((d, k) => d === outShape[k])) return (i) => i;
  const strides = padded.map((_, k) => padded.slice(k + 1).reduce((p, d) => p * d, 1));
  return (i) => {
    let rest = i;
    let idx = 0;
    for (let k = outShape.length - 1; k >= 0; k--) {
      const c = rest % outShape[k];
      rest = (rest - c) / outShape[k];
      if (padded[k] !== 1) idx += c * strides[k];
    }
    return idx;
  };
}

function outShapeOf(a: TensorInfo, b: TensorInfo, tA: boolean, tB: boolean): { outShape: number[]; M: number; N: number; K: number } {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const K = tA ? a.shape[ra - 2] : a.shape[ra - 1];
  const K2 = tB ? b.shape[rb - 1] : b.shape[rb - 2];
  const M = tA ? a.shape[ra - 1] : a.shape[ra - 2];
  const N = tB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (K !== K2) {
    throw new Error(
      `Error in matMul: inner shapes (${K}) and (${K2}) of Tensors with shapes ${a.shape} and ${b.shape} and transposeA=${tA} and transposeB=${tB} must match.`,
    );
  }
  const outer = tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  return { outShape: [...outer, M, N], M, N, K };
}

function batchMatMul({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const a = inputs.a!;
  const b = inputs.b!;
  const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
  if (a.dtype !== 'float32' || b.dtype !== 'float32') {
    throw new Error('BatchMatMul for non non-float32 tensors not yet supported.');
  }
  const { outShape, N, K } = outShapeOf(a, b, transposeA, transposeB);
  const rows = (outShape.reduce((p, d) => p * d, 1) / (N || 1)) | 0;
  const batchB = b.shape.slice(0, -2).reduce((p, d) => p * d, 1);
  if (transposeB && !transposeA && batchB === 1 && rows > 0 && N > 0 && K > 0 && (rows <= SMALL_ROWS || rows * (2 * K + N) < N * K)) {
    return fewRowsTimesTransposed(a, b, rows, N, K, outShape, backend);
  }
  const out = backend.makeOutput(outShape, 'float32');
  if (outShape.some((d) => d === 0) || a.shape.some((d) => d === 0)) {
    if (outShape.every((d) => d > 0)) fill(out, backend, 0);
    return out;
  }
  const aT = transposeA ? transposeLast2(a, backend) : a;
  const bT = transposeB ? transposeLast2(b, backend) : b;
  try {
    plainProducts(aT, bT, out, backend, (aId, aShape, bId, bShape, outId) =>
      wasmBatchMatMul(aId, shapeBytes(aShape), 3, bId, shapeBytes(bShape), 3, false, false, outId),
    );
  } finally {
    if (aT !== a) backend.disposeData(aT.dataId);
    if (bT !== b) backend.disposeData(bT.dataId);
  }
  return out;
}

/**
 * Below this many output rows, x @ W^T (W [N, K] shared by every row: a Linear layer during
 * generation, one token at a time) is computed as (W @ x^T)^T: transposing and packing the few
 * rows of x instead of the whole weight (which costs more than the product itself when M = 1).
 * Also whenever the two transposes of that route (x: rows*K, the output: rows*N, plus packing x)
 * move less than transposing and packing W (2*N*K): rows * (2K + N) < N*K, e.g. a ViT or a
 * decoder Linear on one image / one prompt (64-80 rows) at inference; never on training batches.
 */
const SMALL_ROWS = 32;

function fewRowsTimesTransposed(a: TensorInfo, b: TensorInfo, rows: number, N: number, K: number, outShape: number[], backend: WasmBackend): TensorInfo {
  const xT = transposeLast2({ dataId: a.dataId, shape: [rows, K], dtype: 'float32' }, backend); // [K, rows]
  const tmp = backend.makeOutput([N, rows], 'float32');
  try {
    const bd = backend.dataIdMap.get(b.dataId);
    const xd = backend.dataIdMap.get(xT.dataId);
    wasmBatchMatMul(bd.id, shapeBytes([1, N, K]), 3, xd.id, shapeBytes([1, K, rows]), 3, false, false, backend.dataIdMap.get(tmp.dataId).id);
    const out = transposeLast2(tmp, backend); // [rows, N]
    return { ...out, shape: outShape };
  } finally {
    backend.disposeData(xT.dataId);
    backend.disposeData(tmp.dataId);
  }
}

function fusedMatMul({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const { a, b, bias, preluActivationWeights } = inputs as Record<string, TensorInfo>;
  const { transposeA, transposeB, activation, leakyreluAlpha } = attrs;
  if (a.dtype !== 'float32' || b.dtype !== 'float32') {
    throw new Error('_FusedMatMul for non non-float32 tensors not yet supported.');
  }
  const act = FUSED_ACTIVATION[activation as string];
  if (act === undefined) throw new Error(`${activation} activation not yet supported for _FusedMatMul in the wasm backend.`);
  let biasId = 0;
  if (bias != null) {
    const bd = backend.dataIdMap.get(bias.dataId);
    if (bd.shape.length !== 1) throw new Error(`_FusedMatMul only supports rank-1 bias but got rank ${bd.shape.length}.`);
    biasId = bd.id;
  }
  const { outShape, N } = outShapeOf(a, b, transposeA, transposeB);
  const preluId = preluActivationWeights == null ? 0 : backend.dataIdMap.get(preluActivationWeights.dataId).id;
  // per-item calls see one [M, N] slice: a bias must be per-column (size N); prelu goes to the stock kernel
  const slicesOk =
    (bias == null || [1, N].includes(bias.shape[0])) &&
    preluActivationWeights == null &&
    !outShape.some((d) => d === 0) &&
    !(bias != null && bias.shape[0] === 1 && N !== 1); // XNNPACK reads N bias values
  if (!slicesOk) {
    const orig = originals.get('_FusedMatMul/wasm')!;
    return orig.kernelFunc({ inputs: inputs as any, backend: backend as any, attrs }) as TensorInfo;
  }
  const out = backend.makeOutput(outShape, 'float32');
  const aT = transposeA ? transposeLast2(a, backend) : a;
  const bT = transposeB ? transposeLast2(b, backend) : b;
  try {
    plainProducts(aT, bT, out, backend, (aId, aShape, bId, bShape, outId) =>
      wasmFusedMatMul(aId, shapeBytes(aShape), 3, bId, shapeBytes(bShape), 3, false, false,
        act, biasId, preluId, leakyreluAlpha || 0, outId),
    );
  } finally {
    if (aT !== a) backend.disposeData(aT.dataId);
    if (bT !== b) backend.disposeData(bT.dataId);
  }
  return out;
}

function fill(t: TensorInfo, backend: WasmBackend, v: number): void {
  const d = backend.dataIdMap.get(t.dataId);
  const size = t.shape.reduce((p, x) => p * x, 1);
  const heap = (backend.wasm as unknown as { HEAPF32: Float32Array }).HEAPF32;
  heap.fill(v, d.memoryOffset / 4, d.memoryOffset / 4 + size);
}

type HeapArray = Float32Array | Int32Array | Uint8Array;
function heapView(t: TensorInfo, backend: WasmBackend): HeapArray {
  const d = backend.dataIdMap.get(t.dataId);
  const size = t.shape.reduce((p, x) => p * x, 1);
  const buf = (backend.wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8.buffer;
  if (t.dtype === 'int32') return new Int32Array(buf, d.memoryOffset, size);
  if (t.dtype === 'bool') return new Uint8Array(buf, d.memoryOffset, size);
  if (t.dtype === 'float32') return new Float32Array(buf, d.memoryOffset, size);
  throw new Error(`wasm kernels: unsupported dtype ${t.dtype}`);
}

function stridesOf(shape: number[]): number[] {
  const st = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

/** tf.tile: fill one copy of each axis' block, then replicate it with copyWithin. */
function tile({ inputs, backend, attrs }: KernelArgs): TensorInfo {
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
function transpose(args: KernelArgs): TensorInfo {
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
  if (groups.length <= 4) return originals.get('Transpose/wasm')!.kernelFunc(args as any) as TensorInfo;
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

/** out[segmentIds[i], ...] += x[i, ...]; ids outside [0, numSegments) are dropped (as TF). */
function unsortedSegmentSum({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const x = inputs.x!;
  const ids = inputs.segmentIds!;
  const numSegments = attrs.numSegments as number;
  const inner = x.shape.slice(ids.shape.length).reduce((p, d) => p * d, 1);
  const out = backend.makeOutput([numSegments, ...x.shape.slice(ids.shape.length)], x.dtype);
  // views are taken after makeOutput: an allocation may grow (and replace) the heap buffer
  const o = heapView(out, backend);
  o.fill(0);
  const xs = heapView(x, backend);
  const is = heapView(ids, backend);
  for (let i = 0; i < is.length; i++) {
    const s = is[i];
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++) o[dst + j] += xs[src + j];
  }
  return out;
}

/** dW [fh, fw, inC, outC] of conv2d(x NHWC, W) from dy: im2col, then cols^T @ dy on XNNPACK. */
function conv2DBackpropFilter({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const x = inputs.x!;
  const dy = inputs.dy!;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs;
  if (dataFormat !== undefined && dataFormat !== 'NHWC') {
    throw new Error(`Conv2DBackpropFilter on wasm supports NHWC only, got ${dataFormat}`);
  }
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast',
  );
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: OC } = info;
  const { filterHeight: FH, filterWidth: FW, strideHeight: SH, strideWidth: SW, dilationHeight: DH, dilationWidth: DW } = info;
  const { top, left } = info.padInfo;
  const rows = N * OH * OW;
  const colsW = FH * FW * C;
  const cols = backend.makeOutput([rows, colsW], 'float32');
  const c = heapView(cols, backend);
  const xs = heapView(x, backend);
  let r = 0;
  for (let n = 0; n < N; n++)
    for (let oh = 0; oh < OH; oh++)
      for (let ow = 0; ow < OW; ow++, r++) {
        let k = r * colsW;
        for (let fh = 0; fh < FH; fh++) {
          const ih = oh * SH - top + fh * DH;
          for (let fw = 0; fw < FW; fw++) {
            const iw = ow * SW - left + fw * DW;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) {
              c.fill(0, k, k + C);
            } else {
              const src = ((n * H + ih) * W + iw) * C;
              c.set(xs.subarray(src, src + C), k);
            }
            k += C;
          }
        }
      }
  const dy2: TensorInfo = { dataId: dy.dataId, shape: [rows, OC], dtype: 'float32' };
  try {
    const dw = batchMatMul({ inputs: { a: cols, b: dy2 }, backend, attrs: { transposeA: true, transposeB: false } });
    return { ...dw, shape: [FH, FW, C, OC] };
  } finally {
    backend.disposeData(cols.dataId);
  }
}

// ---- wasm threads under Node ------------------------------------------------------------------
// tfjs-backend-wasm ships a threaded+SIMD build (XNNPACK on a pthreadpool), but its loader is
// written for browsers and fails under Node in three places; enableWasmThreads() bridges them
// for the duration of the backend's initialisation, then puts everything back:
//   1. it passes the pthread worker script and the main script as Blobs / blob: URLs, which a
//      Node worker cannot load -> Blob is recorded, URL.createObjectURL writes the text to a
//      temp file and returns its path; the worker's "load" message gets that path instead of
//      the Blob (worker_threads.Worker.prototype.postMessage);
//   2. the main script is the bundle's factory function as text, which refers to the bundle's
//      module-scope helpers (require$$0.., commonjsGlobal, _scriptDir) -> defined in a prelude;
//   3. the pool size is os.cpus().length / 2 (hyper-threading assumption), i.e. 1 on a 2-core
//      machine -> os.cpus() reports 2 x threads while the module initialises;
// and WASM_HAS_MULTITHREAD_SUPPORT (false under Node) is set to true. Afterwards the pool's
// workers are unref'ed, or the process would never exit.
// Call BEFORE tf.setBackend('wasm'); returns a function that restores the patched globals
// (call it once tf.ready() resolved). threads <= 1 does nothing.
export function enableWasmThreads(threads: number): () => void {
  if (!(threads > 1)) return () => {};
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nanovlm-wasm-'));
  const mainPath = path.join(dir, 'main.js');
  const OrigBlob = globalThis.Blob;
  const origCreate = URL.createObjectURL;
  const origPost = Worker.prototype.postMessage;
  const origCpus = os.cpus;
  const texts = new WeakMap<object, string>();
  const files = new WeakMap<object, string>();
  let n = 0;
  const fileOf = (b: object): string => {
    let p = files.get(b);
    if (p) return p;
    let text = texts.get(b)!;
    if (text.startsWith('var WasmBackendModuleThreadedSimd')) {
      const prelude =
        'var require$$0=require("fs"),require$$1=require("path"),require$$3=require("perf_hooks"),' +
        `require$$4=require("os"),commonjsGlobal=global,_scriptDir=${JSON.stringify(mainPath)};\n`;
      text = prelude + text;
      p = mainPath;
    } else {
      p = path.join(dir, `worker-${n++}.js`);
    }
    fs.writeFileSync(p, text);
    files.set(b, p);
    return p;
  };
  class RecordingBlob extends OrigBlob {
    constructor(parts: any[], opts?: any) {
      super(parts, opts);
      texts.set(this, parts.map(String).join(''));
    }
  }
  (globalThis as { Blob: typeof Blob }).Blob = RecordingBlob as typeof Blob;
  URL.createObjectURL = (b: Blob) => (texts.has(b) ? fileOf(b) : origCreate(b));
  Worker.prototype.postMessage = function (this: Worker, msg: any, ...rest: any[]) {
    if (msg && msg.cmd === 'load' && texts.has(msg.urlOrBlob)) msg = { ...msg, urlOrBlob: fileOf(msg.urlOrBlob) };
    return (origPost as (...a: unknown[]) => void).call(this, msg, ...rest);
  } as typeof origPost;
  const cpus = origCpus();
  (os as { cpus: typeof os.cpus }).cpus = () => Array.from({ length: 2 * threads }, (_, i) => cpus[i % cpus.length]);
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  setThreadsCount(threads);
  return () => {
    // the pool's workers would keep Node alive after the program ends: unref them
    const wasm = (tf.findBackend('wasm') as unknown as { wasm?: { PThread?: { unusedWorkers: Worker[]; runningWorkers: Worker[] } } } | undefined)?.wasm;
    for (const w of [...(wasm?.PThread?.unusedWorkers ?? []), ...(wasm?.PThread?.runningWorkers ?? [])]) w.unref();
    (globalThis as { Blob: typeof Blob }).Blob = OrigBlob;
    URL.createObjectURL = origCreate;
    Worker.prototype.postMessage = origPost;
    (os as { cpus: typeof os.cpus }).cpus = origCpus;
    fs.rmSync(dir, { recursive: true, force: true });
  };
}

/** x ** 2 with a scalar exponent -> the Square kernel; anything else -> the stock Pow. */
function pow(args: KernelArgs): TensorInfo {
  const { inputs, backend } = args;
  const a = inputs.a!;
  const b = inputs.b!;
  const bSize = b.shape.reduce((p, d) => p * d, 1);
  if (a.dtype === 'float32' && b.dtype === 'float32' && bSize === 1 && b.shape.length <= a.shape.length && heapView(b, backend)[0] === 2) {
    const square = tf.getKernel('Square', 'wasm')!.kernelFunc;
    return square({ inputs: { x: a } as any, backend: backend as any, attrs: {} }) as TensorInfo;
  }
  return originals.get('Pow/wasm')!.kernelFunc(args as any) as TensorInfo;
}

/**
 * tf.sum over the leading axes 0..k-1 of a float32 x [outer..., inner...] -> [inner...]: rows of
 * `inner` values added in order into a float64 accumulator; any other reduction -> the stock kernel.
 */
function sum(args: KernelArgs): TensorInfo {
  const { inputs, backend, attrs } = args;
  const x = inputs.x!;
  const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape).sort((a, b) => a - b);
  const k = axes.length;
  const leading = k > 0 && k < x.shape.length && axes.every((a, i) => a === i);
  if (x.dtype !== 'float32' || !leading) return originals.get('Sum/wasm')!.kernelFunc(args as any) as TensorInfo;
  const innerShape = x.shape.slice(k);
  const inner = innerShape.reduce((p, d) => p * d, 1);
  const outShape = attrs.keepDims ? [...Array(k).fill(1), ...innerShape] : innerShape;
  const out = backend.makeOutput(outShape, 'float32');
  const xs = heapView(x, backend) as Float32Array; // views after makeOutput (the heap may grow)
  const acc = new Float64Array(inner);
  const rows = xs.length / (inner || 1);
  for (let r = 0; r < rows; r++) {
    const row = xs.subarray(r * inner, (r + 1) * inner);
    for (let j = 0; j < inner; j++) acc[j] += row[j];
  }
  (heapView(out, backend) as Float32Array).set(acc);
  return out;
}
