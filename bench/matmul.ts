// `npx tsx bench/matmul.ts [--threads N] [--ms 300]`: GFLOP/s of the wasm backend's matrix-product
// kernels per shape (issue 16): the native OpenBLAS kernel (core/kernels/native-matmul.ts) and the
// XNNPACK one it replaces (core/kernels/matmul.ts), side by side in one process, on the products of a
// `small` and a 222M training step (forward and the two backward products of a Linear, attention
// batches) and on square sizes. Each figure: median time of one tf.matMul (dataSync'ed) over
// repetitions filling --ms milliseconds, after one warm-up. Prints which OpenBLAS kernel runs.
import { parseArgs } from 'node:util';
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { initRuntime } from '../core/runtime.ts';
import { installNativeMatMul, loadNativeBlas, nativeMatMulStatus, uninstallNativeMatMul } from '../core/kernels/native-matmul.ts';

const { values } = parseArgs({ options: { threads: { type: 'string' }, ms: { type: 'string' } } });
const threads = Number(values.threads ?? 1);
const budget = Number(values.ms ?? 300);
const info = await initRuntime('wasm', { threads });
console.log(`${nativeMatMulStatus()} · wasm threads ${info.threads ?? 1} · OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'} · load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
const blas = loadNativeBlas();
if (blas) console.log(`OpenBLAS config: ${blas.info().config}`);

// [label, a shape (as stored), b shape (as stored), transposeA, transposeB]
const SHAPES: [string, number[], number[], boolean, boolean][] = [
  ['square 256', [256, 256], [256, 256], false, false],
  ['square 512', [512, 512], [512, 512], false, false],
  ['square 1024', [1024, 1024], [1024, 1024], false, false],
  ['small: decoder MLP x W^T', [640, 256], [768, 256], false, true],
  ['small: decoder MLP dX = dY W', [640, 768], [768, 256], false, false],
  ['small: decoder MLP dW = dY^T X', [640, 768], [640, 256], true, false],
  ['small: ViT MLP x W^T', [512, 192], [768, 192], false, true],
  ['small: lm head x W^T', [640, 256], [4096, 256], false, true],
  ['small: attention q k^T', [8, 2, 160, 64], [8, 2, 80, 64], false, true],
  ['small: attention p v', [8, 2, 160, 80], [8, 2, 80, 64], false, false],
  ['222M: decoder MLP x W^T', [1024, 576], [1536, 576], false, true],
  ['222M: decoder MLP dW = dY^T X', [1024, 1536], [1024, 576], true, false],
  ['222M: ViT MLP x W^T', [1568, 768], [3072, 768], false, true],
  ['222M: generation, 1 token x W^T', [1, 576], [1536, 576], false, true],
];

function flops(a: number[], b: number[], tA: boolean, tB: boolean): number {
  const M = tA ? a[a.length - 1] : a[a.length - 2];
  const K = tA ? a[a.length - 2] : a[a.length - 1];
  const N = tB ? b[b.length - 2] : b[b.length - 1];
  const batch = a.slice(0, -2).reduce((p, d) => p * d, 1);
  return 2 * batch * M * N * K;
}

function time(a: tf.Tensor, b: tf.Tensor, tA: boolean, tB: boolean): number {
  tf.matMul(a, b, tA, tB).dispose(); // warm-up
  const times: number[] = [];
  const start = performance.now();
  while (performance.now() - start < budget || times.length < 3) {
    const t0 = performance.now();
    const y = tf.matMul(a, b, tA, tB);
    y.dataSync();
    times.push(performance.now() - t0);
    y.dispose();
  }
  times.sort((x, y) => x - y);
  return times[times.length >> 1];
}

console.log(`| shape | op | XNNPACK ms | GFLOP/s | native ms | GFLOP/s | speed-up |`);
console.log(`|---|---|---:|---:|---:|---:|---:|`);
for (const [label, as, bs, tA, tB] of SHAPES) {
  const a = tf.randomNormal(as, 0, 1, 'float32', 1);
  const b = tf.randomNormal(bs, 0, 1, 'float32', 2);
  uninstallNativeMatMul('wasm');
  const x = time(a, b, tA, tB);
  const native = installNativeMatMul('wasm');
  const n = native ? time(a, b, tA, tB) : NaN;
  const f = flops(as, bs, tA, tB) / 1e6; // MFLOP -> GFLOP/s when divided by ms
  const op = `[${as}]${tA ? 'ᵀ' : ''} x [${bs}]${tB ? 'ᵀ' : ''}`;
  console.log(`| ${label} | ${op} | ${x.toFixed(3)} | ${(f / x).toFixed(1)} | ${n.toFixed(3)} | ${(f / n).toFixed(1)} | ${(x / n).toFixed(2)}x |`);
  tf.dispose([a, b]);
}
console.log(`load after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
