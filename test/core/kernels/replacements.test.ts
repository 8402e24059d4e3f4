// The kernel replacements of issue 16's CPU speed work (core/kernels/): the leading-axis Sum's
// native column sums (native/blas.cc columnSums through core/kernels/native-kernels.ts) against a
// float64 reference, bit for bit against the JS loop they replace (VLM_NATIVE_FUSED=0) and close to
// the stock wasm kernel; GatherV2's block copies (layout.ts) bit for bit against the stock kernel,
// out-of-range indices rejected with its error; SplitV's and Concat's block copies bit for bit
// against the stock kernels (every axis, dtypes, empty pieces, their gradients); and that VLM_FAST_KERNELS=0 gives the stock
// kernels back, the native switches the JS paths. The native parts skip without the addon (no compiler / OpenBLAS at
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

/** f() with our kernels, then with the stock ones */
function oursAndStock<T>(f: () => T): [T, T] {
  installFastKernels('wasm');
  const ours = f();
  uninstallFastKernels('wasm');
  try {
    return [ours, f()];
  } finally {
    installFastKernels('wasm');
  }
}

/** the same dtype, shape and values (bit for bit: NaN and -0 included) */
function assertSame(ours: tf.Tensor, stock: tf.Tensor, what: string): void {
  assert.equal(ours.dtype, stock.dtype, `${what}: dtype`);
  assert.deepEqual(ours.shape, stock.shape, `${what}: shape`);
  const a = ours.dataSync();
  const b = stock.dataSync();
  assert.equal(a.length, b.length, `${what}: size`);
  for (let i = 0; i < a.length; i++) assert.ok(Object.is(a[i], b[i]), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

function tensorOf(shape: number[], dtype: 'float32' | 'int32' | 'bool', seed: number): tf.Tensor {
  const v = values(size(shape), seed);
  if (dtype === 'float32') return tf.tensor(v, shape);
  if (dtype === 'bool') return tf.tensor(Array.from(v, (x) => x > 0), shape, dtype);
  return tf.tensor(Array.from(v, (x) => Math.round(x * 1000)), shape, dtype);
}

test('GatherV2 along axis 0 equals the stock kernel bit for bit (float32, int32, bool; any index shape)', wasmOnly, () => {
  const cases: [number[], number[], 'float32' | 'int32' | 'bool'][] = [
    [[4096, 256], [8, 64], 'float32'], // the token embedding
    [[50, 7], [248], 'float32'],
    [[20, 3, 4], [5, 2], 'float32'],
    [[10], [6], 'float32'], // rank 1: rows of one value
    [[30, 5], [9], 'int32'],
    [[30, 5], [9], 'bool'],
    [[12, 3], [], 'float32'], // a scalar index
    [[12, 3], [0], 'float32'], // no indices
    [[12, 0], [4], 'float32'], // empty rows
  ];
  const before = tf.memory().numTensors;
  for (const [xs, is, dtype] of cases) {
    const what = `gather(${dtype} ${JSON.stringify(xs)}, ${JSON.stringify(is)})`;
    const x = tensorOf(xs, dtype, size(xs) + 1);
    const idx = tf.tensor(Array.from(values(size(is), 9), (v) => Math.floor((v + 1) * 0.5 * xs[0]) % xs[0]), is, 'int32');
    const [ours, stock] = oursAndStock(() => tf.gather(x, idx));
    if (size(xs) === 0) {
      // the stock kernel returns its internal [1, 1, 4, 0] for an empty x (it skips its final reshape)
      assert.deepEqual(stock.shape, [1, 1, ...is, 0], `${what}: the stock kernel's shape`);
      assert.deepEqual(ours.shape, [...is, ...xs.slice(1)], `${what}: shape`);
      assert.equal(ours.size, 0);
    } else assertSame(ours, stock, what);
    tf.dispose([x, idx, ours, stock]);
  }
  // repeated and boundary indices; other axes go to the stock kernel (so do batchDims > 0, not
  // compared here: the stock wasm kernel reads out of bounds now and then with batchDims 1)
  const x = tensorOf([6, 4, 5], 'float32', 3);
  const idx = tf.tensor([5, 0, 5, 5, 1], [5], 'int32');
  for (const f of [() => tf.gather(x, idx), () => tf.gather(x, tf.tensor([3, 0, 3], [3], 'int32'), 1), () => tf.gather(x, tf.tensor([[1, 0], [4, 2]], [2, 2], 'int32'), 2)]) {
    const [ours, stock] = oursAndStock(() => tf.tidy(f));
    assertSame(ours, stock, 'gather (repeats, other axes)');
    tf.dispose([ours, stock]);
  }
  tf.dispose([x, idx]);
  assert.equal(tf.memory().numTensors, before, 'no leaked tensors');
});

test('GatherV2: out-of-range indices are rejected with the stock kernel\'s error, nothing leaked', wasmOnly, () => {
  const x = tensorOf([7, 3], 'float32', 4);
  const before = tf.memory().numTensors;
  for (const bad of [[0, 7], [-1, 2], [3, 100000]]) {
    const idx = tf.tensor(bad, [2], 'int32');
    const [ours, stock] = oursAndStock(() => {
      try {
        tf.gather(x, idx);
        return 'no error';
      } catch (e) {
        return (e as Error).message;
      }
    });
    assert.match(stock, /GatherV2: the index value -?\d+ is not in \[0, 6\]/, `stock rejects ${bad}`);
    assert.equal(ours, stock, `ours rejects ${bad} as stock does`);
    idx.dispose();
  }
  assert.equal(tf.memory().numTensors, before, 'no leaked tensors');
  x.dispose();
});

test('SplitV equals the stock kernel bit for bit (every axis, float32 / int32 / bool, empty pieces)', wasmOnly, () => {
  const cases: [number[], number | number[], number, 'float32' | 'int32' | 'bool'][] = [
    [[8, 64, 576], 3, -1, 'float32'], // the ViT's qkv split
    [[8, 4, 80, 64], [32, 32], -1, 'float32'],
    [[5, 6, 7], [2, 0, 4], 1, 'float32'], // an empty piece
    [[6, 5], [1, 5], 0, 'float32'], // leading axis: one copy per piece
    [[3, 10], [4, -1], 1, 'int32'], // -1: the rest
    [[4, 3, 6], 2, 2, 'bool'],
    [[4, 0, 6], 2, 2, 'float32'], // empty x
  ];
  const before = tf.memory().numTensors;
  for (const [shape, split, axis, dtype] of cases) {
    const what = `split(${dtype} ${JSON.stringify(shape)}, ${JSON.stringify(split)}, ${axis})`;
    const x = tensorOf(shape, dtype, size(shape) + 2);
    const [ours, stock] = oursAndStock(() => tf.split(x, split, axis));
    assert.equal(ours.length, stock.length, `${what}: pieces`);
    ours.forEach((o, k) => assertSame(o, stock[k], `${what} piece ${k}`));
    tf.dispose([x, ...ours, ...stock]);
  }
  assert.equal(tf.memory().numTensors, before, 'no leaked tensors');
});

test('Concat equals the stock kernel bit for bit (every axis, float32 / int32 / bool, empty inputs)', wasmOnly, () => {
  const cases: [number[][], number, 'float32' | 'int32' | 'bool'][] = [
    [[[8, 64, 192], [8, 64, 192], [8, 64, 192]], -1, 'float32'], // the qkv gradient
    [[[8, 16, 256], [8, 64, 256]], 1, 'float32'], // image tokens before text tokens
    [[[2, 3], [4, 3], [1, 3]], 0, 'float32'], // leading axis: one copy per input
    [[[3, 2, 4], [3, 0, 4], [3, 5, 4]], 1, 'int32'], // an empty input
    [[[3, 2], [3, 1]], 1, 'bool'],
    [[[0, 4], [5, 4]], 0, 'float32'], // one non-empty input: shared
    [[[7]], 0, 'float32'],
  ];
  const before = tf.memory().numTensors;
  for (const [shapes, axis, dtype] of cases) {
    const what = `concat(${dtype} ${JSON.stringify(shapes)}, ${axis})`;
    const xs = shapes.map((sh, i) => tensorOf(sh, dtype, size(sh) + 10 * i + 3));
    const [ours, stock] = oursAndStock(() => tf.concat(xs, axis));
    assertSame(ours, stock, what);
    tf.dispose([...xs, ours, stock]);
  }
  // a shared single input stays valid after its source is disposed
  const a = tensorOf([0, 4], 'float32', 1);
  const b = tensorOf([5, 4], 'float32', 2);
  const expected = Array.from(b.dataSync());
  installFastKernels('wasm');
  const c = tf.concat([a, b], 0);
  tf.dispose([a, b]);
  assert.deepEqual(Array.from(c.dataSync()), expected);
  c.dispose();
  assert.equal(tf.memory().numTensors, before, 'no leaked tensors');
});

test('the gradients of split and concat (each other) equal the stock kernels\' bit for bit', wasmOnly, () => {
  const x = tensorOf([8, 16, 96], 'float32', 5);
  const w = tensorOf([8, 16, 96], 'float32', 6);
  const ys = [0, 1, 2].map((i) => tensorOf([8, 16, 32], 'float32', 7 + i));
  const f = () =>
    tf.tidy(() => {
      const dx = tf.grad((x_: tf.Tensor) => {
        const [q, k, v] = tf.split(x_, 3, -1);
        return tf.sum(tf.mul(tf.concat([v, q, k], -1), w));
      })(x);
      const dys = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(tf.concat([a, b, c], -1), w)))(ys);
      return [dx, ...dys];
    });
  const [ours, stock] = oursAndStock(f);
  ours.forEach((o, i) => assertSame(o, stock[i], `gradient ${i}`));
  tf.dispose([x, w, ...ys, ...ours, ...stock]);
});

test('VLM_FAST_KERNELS=0 registers the stock kernels and no native pass', wasmOnly, () => {
  const names = ['Sum', 'GatherV2', 'SplitV', 'Concat'];
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
