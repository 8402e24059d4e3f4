// Kernels the wasm backend lacks although training needs them (tfjs falls over with "Kernel 'X'
// not registered for backend 'wasm'" in the backward pass):
//   UnsortedSegmentSum    gradient of gather (token embedding, picking target log-probs):
//                         a scatter-add in JS straight on the wasm heap, O(size of x).
//   Conv2DBackpropFilter  gradient of conv2d's filter (a patch embedding written as a conv):
//                         im2col on the heap, then one XNNPACK product cols^T @ dy.
import * as tf from '@tensorflow/tfjs';
import { batchMatMul } from './matmul.ts';
import { heapView, type KernelArgs, type TensorInfo } from './wasm.ts';

/** out[segmentIds[i], ...] += x[i, ...]; ids outside [0, numSegments) are dropped (as TF). */
export function unsortedSegmentSum({ inputs, backend, attrs }: KernelArgs): TensorInfo {
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
export function conv2DBackpropFilter({ inputs, backend, attrs }: KernelArgs): TensorInfo {
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
