// Matrix products on XNNPACK for every case (see index.ts: tfjs-backend-wasm 4.22 calls XNNPACK
// only for untransposed, batch-1 operands and falls into a scalar triple loop otherwise):
//   BatchMatMul, _FusedMatMul  transpose an operand with the wasm Transpose kernel when asked, then
//                              plain products on XNNPACK: a batch-1 right operand folds the left
//                              batch into rows (one call); otherwise one call per batch item on
//                              aliases into the existing buffers (no copies);
//   few rows x a transposed shared weight (generation: one token through a Linear) runs as
//   (W @ x^T)^T, so the weight is neither transposed nor re-packed for every token.
import * as tf from '@tensorflow/tfjs';
import { fill, shapeBytes, stock, type KernelArgs, type TensorInfo, type WasmBackend, type WasmData } from './wasm.ts';

let wasmBatchMatMul: (...a: unknown[]) => void;
let wasmFusedMatMul: (...a: unknown[]) => void;

/** setupFunc of BatchMatMul: the wasm module's own product entry point */
export function setupBatchMatMul(b: object): void {
  wasmBatchMatMul = (b as WasmBackend).wasm.cwrap('BatchMatMul', null, [
    'number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number',
  ]);
}
/** setupFunc of _FusedMatMul */
export function setupFusedMatMul(b: object): void {
  wasmFusedMatMul = (b as WasmBackend).wasm.cwrap('_FusedMatMul', null, [
    'number', 'array', 'number', 'number', 'array', 'number', 'number', 'number',
    'number', 'number', 'number', 'number', 'number',
  ]);
}

const FUSED_ACTIVATION: Record<string, number> = { linear: 0, relu: 1, relu6: 2, prelu: 3, leakyrelu: 4, sigmoid: 5, elu: 6 };

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

/** flat index in the broadcast output batch -> flat index in an operand's own batch (also the native kernels') */
export function broadcastIndexer(shape: number[], outShape: number[]): (i: number) => number {
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

/** op(a) @ op(b)'s output shape and sizes; tfjs's error when the inner sizes differ (`op` names the kernel) */
export function outShapeOf(a: TensorInfo, b: TensorInfo, tA: boolean, tB: boolean, op = 'matMul'): { outShape: number[]; M: number; N: number; K: number } {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const K = tA ? a.shape[ra - 2] : a.shape[ra - 1];
  const K2 = tB ? b.shape[rb - 1] : b.shape[rb - 2];
  const M = tA ? a.shape[ra - 1] : a.shape[ra - 2];
  const N = tB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (K !== K2) {
    throw new Error(
      `Error in ${op}: inner shapes (${K}) and (${K2}) of Tensors with shapes ${a.shape} and ${b.shape} and transposeA=${tA} and transposeB=${tB} must match.`,
    );
  }
  const outer = tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  return { outShape: [...outer, M, N], M, N, K };
}

export function batchMatMul({ inputs, backend, attrs }: KernelArgs): TensorInfo {
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

export function fusedMatMul({ inputs, backend, attrs }: KernelArgs): TensorInfo {
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
    const orig = stock('_FusedMatMul');
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
