// The kernel replacements of issue 16's CPU speed work (core/kernels/): the leading-axis Sum's
// native column sums (native/blas.cc columnSums through core/kernels/native-kernels.ts) against a
// float64 reference, bit for bit against the JS loop they replace (VLM_NATIVE_FUSED=0) and close to
// the stock wasm kernel; and that VLM_FAST_KERNELS=0 gives the stock kernels back, the native
// switches the JS paths. The native parts skip without the addon (no compiler / OpenBLAS at
// `npm ci`), except in CI (CI=true).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../../helpers/backend.ts';
import { values } from '../../helpers/matmul-reference.ts';
import { installFastKernels, uninstallFastKernels } from '../../../core/kernels/index.ts';
import { installNativeMatMul, loadNativeBlas, nativeMatMulStatus } from '../../../core/kernels/native-matmul.ts';
import { nativeKernels } from '../../../core/kernels/native-kernels.ts';

const backend = await useTestBackend();
const wasmOnly = backend === 'wasm' ? {} : { skip: `fast kernels are wasm-only (test backend is ${backend})` };
const addon = loadNativeBlas() as unknown as Record<string, unknown> | null;
const current = addon !== null && typeof addon.columnSums === 'function';
const nativeOpts =
  backend !== 'wasm'
    ? wasmOnly
    : ['VLM_NATIVE_MATMUL', 'VLM_NATIVE_DIRECT', 'VLM_NATIVE_FUSED', 'VLM_FAST_KERNELS'].some((k) => process.env[k] === '0')
      ? { skip: 'native kernels turned off in the environment' }
      : current || process.env.CI === 'true'
        ? {}
        : { skip: addon ? 'the native addon predates columnSums: npm run build:native' : nativeMatMulStatus() };

const size = (shape: number[]) => shape.reduce((p, d) => p * d, 1);

/** f() with the native pass, with the JS path (VLM_NATIVE_FUSED=0) and with the stock kernels */
function nativeJsStock<T>(f: () => T): { native: T; js: T; stock: T } {
  installFastKernels('wasm');
  installNativeMatMul('wasm');
  assert.ok(nativeKernels('columnSums'), nativeMatMulStatus());
  const native = f();
  process.env.VLM_NATIVE_FUSED = '0';
  let js: T;
  try {
    assert.equal(nativeKernels('columnSums'), null);
    js = f();
  } finally {
    delete process.env.VLM_NATIVE_FUSED;
  }
  uninstallFastKernels('wasm');
  const stock = f();
  installFastKernels('wasm');
  return { native, js, stock };
}

test('Sum over leading axes: native column sums equal float64, the JS loop bit for bit, the stock kernel closely', nativeOpts, () => {
  const cases: [number[], number | number[], boolean][] = [
    [[640, 256], 0, false], // a decoder bias gradient
    [[8, 80, 256], [0, 1], false], // a norm-weight gradient
    [[8, 80, 256], [1, 0], true],
    [[3, 5, 7], 0, false],
    [[1, 9], 0, false],
    [[9, 1], 0, true],
    [[2000, 3], 0, false], // long columns: float32 accumulation would drift, double does not
    [[0, 4], 0, false], // no rows: zeros
    [[4, 0], 0, false], // no columns
  ];
  const before = tf.memory().numTensors;
  for (const [shape, axis, keepDims] of cases) {
    const what = `sum(${JSON.stringify(shape)}, ${JSON.stringify(axis)}, keepDims=${keepDims})`;
    const n = size(shape);
    const data = values(n, n + 11);
    for (let i = 0; i < n; i++) data[i] += 3; // a common offset: sums far from zero, large enough to show float32 drift
    const x = tf.tensor(data, shape);
    const { native, js, stock } = nativeJsStock(() => tf.sum(x, axis, keepDims));
    assert.deepEqual(native.shape, stock.shape, `${what}: shape`);
    assert.deepEqual(js.shape, stock.shape, `${what}: shape (JS)`);
    const N = native.dataSync();
    assert.deepEqual(Array.from(N), Array.from(js.dataSync()), `${what}: native vs JS loop`);
    // float64 reference: the leading axes flatten into rows
    const k = Array.isArray(axis) ? axis.length : 1;
    const inner = size(shape.slice(k));
    const rows = inner === 0 ? 0 : n / inner;
    const S = stock.dataSync();
    for (let j = 0; j < inner; j++) {
      let ref = 0;
      let abs = 0;
      for (let r = 0; r < rows; r++) {
        ref += data[r * inner + j];
        abs += Math.abs(data[r * inner + j]);
      }
      assert.equal(N[j], Math.fround(ref), `${what}[${j}]: ${N[j]} vs float64 ${ref}`);
      // the stock kernel accumulates in float32: within the sequential-summation bound
      assert.ok(Math.abs(S[j] - ref) <= rows * 2 ** -24 * abs + 1e-7, `${what}[${j}]: stock ${S[j]} vs float64 ${ref}`);
    }
    tf.dispose([x, native, js, stock]);
  }
  assert.equal(tf.memory().numTensors, before, 'no leaked tensors');
});

test('Sum: other reductions and dtypes go to the stock kernel with the native pass on', nativeOpts, () => {
  const x = tf.tensor(values(105, 3), [3, 5, 7]);
  const i32 = tf.tensor([[1, 2], [3, 4]], [2, 2], 'int32');
  for (const f of [() => tf.sum(x, 1), () => tf.sum(x, -1, true), () => tf.sum(x), () => tf.sum(i32, 0)]) {
    const { native, stock } = nativeJsStock(f);
    assert.deepEqual(native.shape, stock.shape);
    assert.deepEqual(Array.from(native.dataSync()), Array.from(stock.dataSync()));
    tf.dispose([native, stock]);
  }
  tf.dispose([x, i32]);
});

test('a bias gradient through the native Sum equals the JS path bit for bit', nativeOpts, () => {
  const x = tf.tensor(values(64 * 48, 5), [4, 16, 48]);
  const b = tf.tensor(values(48, 6), [48]);
  const w = tf.tensor(values(64 * 48, 7), [4, 16, 48]);
  const grad = () => tf.grad((b_: tf.Tensor) => tf.sum(tf.mul(tf.add(x, b_), w)))(b);
  const { native, js } = nativeJsStock(grad);
  assert.deepEqual(Array.from(native.dataSync()), Array.from(js.dataSync()));
  tf.dispose([x, b, w, native, js]);
});

test('VLM_FAST_KERNELS=0 registers the stock kernels and no native pass', wasmOnly, () => {
  const names = ['Sum'];
  uninstallFastKernels('wasm');
  const stock = names.map((n) => tf.getKernel(n, 'wasm')!.kernelFunc);
  process.env.VLM_FAST_KERNELS = '0';
  try {
    installFastKernels('wasm');
    names.forEach((n, i) => assert.equal(tf.getKernel(n, 'wasm')!.kernelFunc, stock[i], `${n}: stock`));
    assert.equal(nativeKernels('columnSums'), null);
  } finally {
    delete process.env.VLM_FAST_KERNELS;
    uninstallFastKernels('wasm');
  }
  installFastKernels('wasm');
  names.forEach((n, i) => assert.notEqual(tf.getKernel(n, 'wasm')!.kernelFunc, stock[i], `${n}: replaced`));
});
