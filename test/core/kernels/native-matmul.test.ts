// The native OpenBLAS product kernels (core/kernels/native-matmul.ts, native/blas.cc) against a
// float64 reference and against the XNNPACK kernels they replace (core/kernels/matmul.ts): every
// transpose combination, batched and broadcast batches, one-row / one-column products (sgemv),
// empty inner sizes, the fused variant with bias and each activation, gradients, no leaks, the
// addon's bounds check. Without the addon (no compiler / OpenBLAS at `npm ci`) the tests skip
// with the reason, except in CI (CI=true), where the addon must have been built.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../../helpers/backend.ts';
import { assertMatmulGradientsAgree, operands, reference, values } from '../../helpers/matmul-reference.ts';
import { installFastKernels } from '../../../core/kernels/index.ts';
import { installNativeMatMul, loadNativeBlas, nativeMatMulActive, nativeMatMulStatus, uninstallNativeMatMul } from '../../../core/kernels/native-matmul.ts';

const backend = await useTestBackend();
const built = loadNativeBlas() !== null;
const inCI = process.env.CI === 'true';
const opts =
  backend !== 'wasm'
    ? { skip: `native products are wasm-only (test backend is ${backend})` }
    : built || inCI
      ? {}
      : { skip: `${nativeMatMulStatus()}` };

test('CI builds the native addon (npm ci with build-essential + libopenblas-dev)', { skip: inCI ? undefined : 'not CI' }, () => {
  assert.ok(built, `CI=true but ${nativeMatMulStatus()}`);
});

function maxDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
  return worst;
}

// [a shape (untransposed: [..., M, K]), b shape [..., K, N]]
const CASES: [number[], number[]][] = [
  [[5, 7], [7, 3]],
  [[1, 1], [1, 1]],
  [[33, 64], [64, 17]],
  [[1, 64], [64, 300]], // one row (generation): sgemv
  [[40, 96], [96, 1]], // one column: sgemv
  [[3, 1, 16], [16, 40]], // a batch of one-row products folded into rows
  [[4, 6, 8], [4, 8, 5]], // batched, equal batches
  [[4, 6, 8], [8, 5]], // broadcast b (2D)
  [[4, 6, 8], [1, 8, 5]], // broadcast b (batch 1)
  [[6, 8], [3, 8, 5]], // broadcast a
  [[1, 6, 8], [3, 8, 5]],
  [[2, 3, 6, 8], [2, 1, 8, 5]], // 4D, broadcast inner batch (shared kv heads)
  [[2, 1, 6, 8], [1, 3, 8, 5]], // both broadcast
  [[2, 3, 10, 16], [2, 3, 16, 10]], // attention-like
  [[4, 1, 16], [4, 16, 1]], // batched one-by-one
  [[3, 0], [0, 4]], // empty inner size: zeros
  [[130, 200], [200, 70]], // past OpenBLAS's blocking sizes
];

/** f() with the native kernels, then with the XNNPACK kernels (core/kernels/matmul.ts) */
function nativeAndXnnpack<T>(f: () => T): [T, T] {
  installFastKernels('wasm');
  installNativeMatMul('wasm');
  assert.ok(nativeMatMulActive(), nativeMatMulStatus());
  const native = f();
  uninstallNativeMatMul('wasm');
  try {
    return [native, f()];
  } finally {
    installNativeMatMul('wasm');
  }
}

test('native matMul equals the float64 reference and the XNNPACK kernel (all transposes, batched, broadcast)', opts, () => {
  let seed = 1;
  for (const [aShape, bShape] of CASES)
    for (const tA of [false, true])
      for (const tB of [false, true]) {
        const what = `matMul(${aShape}, ${bShape}, tA=${tA}, tB=${tB})`;
        const before = tf.memory();
        const [a, b] = operands(aShape, bShape, tA, tB, seed++);
        const expected = reference(a, b, tA, tB);
        const [native, xnn] = nativeAndXnnpack(() => tf.matMul(a, b, tA, tB));
        assert.deepEqual(native.shape, expected.shape, `${what}: shape`);
        assert.ok(maxDiff(native.dataSync(), expected.data) <= 1e-4, `${what}: native vs float64 ${maxDiff(native.dataSync(), expected.data)}`);
        assert.ok(maxDiff(native.dataSync(), xnn.dataSync()) <= 1e-4, `${what}: native vs XNNPACK`);
        tf.dispose([a, b, native, xnn]);
        assert.equal(tf.memory().numTensors, before.numTensors, `${what}: no leaked tensors`);
        assert.equal(tf.memory().numDataBuffers, before.numDataBuffers, `${what}: no leaked wasm buffers`);
      }
});

test('native products are bit-for-bit reproducible and do not grow the wasm heap', opts, () => {
  installFastKernels('wasm');
  assert.ok(nativeMatMulActive(), nativeMatMulStatus());
  const a = tf.tensor(values(64 * 96, 3), [4, 16, 96]);
  const b = tf.tensor(values(80 * 96, 4), [80, 96]);
  const first = tf.matMul(a, b, false, true);
  const heap = (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8;
  const bytes = heap.byteLength;
  for (let i = 0; i < 20; i++) {
    const again = tf.matMul(a, b, false, true);
    assert.deepEqual(again.dataSync(), first.dataSync());
    again.dispose();
  }
  assert.equal((tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.byteLength, bytes);
  tf.dispose([a, b, first]);
});

test('native fused matMul: bias (per column, scalar), every activation; prelu goes to XNNPACK', opts, () => {
  const acts: [string, (x: number) => number][] = [
    ['linear', (x) => x],
    ['relu', (x) => Math.max(0, x)],
    ['relu6', (x) => Math.min(6, Math.max(0, x))],
    ['leakyrelu', (x) => (x < 0 ? 0.2 * x : x)],
    ['sigmoid', (x) => 1 / (1 + Math.exp(-x))],
    ['elu', (x) => (x < 0 ? Math.expm1(x) : x)],
  ];
  let seed = 500;
  for (const [aShape, bShape] of CASES) {
    if (aShape.length > 3 || bShape.length > 3) continue; // fused.matMul takes rank <= 3
    for (const tA of [false, true])
      for (const tB of [false, true])
        for (const [act, fn] of acts)
          for (const biasSize of ['N', 1, 'none'] as const) {
            const [a, b] = operands(aShape, bShape, tA, tB, seed++);
            const N = bShape[bShape.length - 1];
            const bias = biasSize === 'none' ? undefined : tf.tensor1d(values(biasSize === 'N' ? N : 1, seed++));
            const what = `fused(${aShape}, ${bShape}, tA=${tA}, tB=${tB}, ${act}, bias ${biasSize})`;
            const run = () => tf.fused.matMul({ a, b, transposeA: tA, transposeB: tB, bias, activation: act as tf.fused.Activation, leakyreluAlpha: 0.2 });
            const [native, xnn] = nativeAndXnnpack(run);
            const ref = reference(a, b, tA, tB);
            const B = bias?.dataSync();
            const want = ref.data.map((v, i) => fn(v + (B ? B[B.length === 1 ? 0 : i % N] : 0)));
            assert.deepEqual(native.shape, ref.shape, what);
            assert.ok(maxDiff(native.dataSync(), want) <= 1e-4, `${what}: native vs float64 ${maxDiff(native.dataSync(), want)}`);
            // a scalar bias with N > 1 (the wasm kernels read N bias values, past the tensor) and
            // an empty inner size (they drop the bias): only the float64 reference is right there
            const K = aShape[aShape.length - 1];
            if ((biasSize !== 1 || N === 1) && K > 0) assert.ok(maxDiff(native.dataSync(), xnn.dataSync()) <= 1e-4, `${what}: native vs XNNPACK`);
            tf.dispose([a, b, native, xnn]);
            bias?.dispose();
          }
  }
  // prelu: handed to the XNNPACK kernel, same values
  const [a, b] = operands([6, 8], [8, 5], false, false, 9);
  const alpha = tf.tensor1d(values(5, 10));
  const [native, xnn] = nativeAndXnnpack(() => tf.fused.matMul({ a, b, activation: 'prelu', preluActivationWeights: alpha }));
  assert.ok(maxDiff(native.dataSync(), xnn.dataSync()) === 0);
  tf.dispose([a, b, alpha, native, xnn]);
});

test('gradients through matMul: native equals XNNPACK', opts, () => {
  assertMatmulGradientsAgree((grads) => nativeAndXnnpack(grads), assert);
});

test('mismatched inner sizes are the usual tfjs error; the addon refuses offsets outside the heap', opts, () => {
  installFastKernels('wasm');
  const a = tf.ones([3, 4]);
  const b = tf.ones([5, 2]);
  assert.throws(() => tf.matMul(a, b), /inner shapes \(4\) and \(5\)/);
  const heap = (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8;
  const blas = loadNativeBlas()!;
  const end = heap.byteLength - 16; // 4 floats left: a 2x4 output does not fit
  assert.throws(() => blas.gemm(heap, false, false, 2, 4, 1, 1, 4, 4, Uint32Array.of(0, 0, end)), /outside the heap/);
  assert.throws(() => blas.gemm(heap, false, false, 1, 1, 1, 1, 1, 1, Uint32Array.of(2, 0, 0)), /outside the heap/); // unaligned
  tf.dispose([a, b]);
});
