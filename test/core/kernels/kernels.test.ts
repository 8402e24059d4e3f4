// The fast wasm matMul kernels (core/kernels/) against a float64 reference and against the
// stock tfjs kernels they replace: all four transpose combinations, batched and broadcast
// shapes, the fused variant with bias/activation, and the gradients tfjs builds from matMul.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../../helpers/backend.ts';
import { assertMatmulGradientsAgree, operands, reference, values } from '../../helpers/matmul-reference.ts';
import { installFastKernels, uninstallFastKernels } from '../../../core/kernels/index.ts';

// the XNNPACK kernels of core/kernels.ts, not the native products installed over them when built
// (test/perf/native-matmul.test.ts tests those against these)
process.env.VLM_NATIVE_MATMUL = '0';
const backend = await useTestBackend();
const wasmOnly = backend === 'wasm' ? {} : { skip: `fast kernels are wasm-only (test backend is ${backend})` };

function assertClose(actual: tf.Tensor, expected: { data: ArrayLike<number>; shape: number[] }, what: string): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  const got = actual.dataSync();
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - expected.data[i]));
  assert.ok(worst <= 1e-4, `${what}: max abs diff ${worst}`);
}

// [a shape (untransposed, i.e. [..., M, K]), b shape [..., K, N]]
const CASES: [number[], number[]][] = [
  [[5, 7], [7, 3]], // plain 2D
  [[1, 1], [1, 1]],
  [[33, 64], [64, 17]],
  [[4, 6, 8], [4, 8, 5]], // batched, equal batches
  [[4, 6, 8], [8, 5]], // broadcast b (2D)
  [[4, 6, 8], [1, 8, 5]], // broadcast b (batch 1)
  [[6, 8], [3, 8, 5]], // broadcast a
  [[1, 6, 8], [3, 8, 5]],
  [[2, 3, 6, 8], [2, 1, 8, 5]], // 4D with broadcast inner batch (attention with shared kv heads)
  [[2, 1, 6, 8], [1, 3, 8, 5]], // both broadcast
  [[2, 3, 10, 16], [2, 3, 16, 10]], // attention-like
  [[1, 64], [64, 300]], // one token through a Linear (generation): the few-rows path when tB
  [[2, 1, 16], [16, 40]],
  [[32, 8], [8, 9]], // the few-rows threshold
  [[40, 96], [96, 300]], // 40 rows but 40 * (2*96 + 300) < 96 * 300: (W x^T)^T too (ViT / prompt at inference)
];

test('fast matMul equals the float64 reference and the stock kernel (all transposes, batched, broadcast)', wasmOnly, () => {
  installFastKernels('wasm');
  let seed = 1;
  for (const [aShape, bShape] of CASES)
    for (const tA of [false, true])
      for (const tB of [false, true]) {
        const what = `matMul(${aShape}, ${bShape}, tA=${tA}, tB=${tB})`;
        const before = tf.memory();
        const [a, b] = operands(aShape, bShape, tA, tB, seed++);
        const expected = reference(a, b, tA, tB);
        const fast = tf.matMul(a, b, tA, tB);
        assertClose(fast, expected, `${what} fast`);
        // the stock wasm kernel maps output item i to a[i % batchA], b[i % batchB]: right only
        // when the flat batches are equal or one of them is 1 (it is wrong for [2,3,..] x [2,1,..])
        const batchA = aShape.slice(0, -2).reduce((p, d) => p * d, 1);
        const batchB = bShape.slice(0, -2).reduce((p, d) => p * d, 1);
        if (batchA === batchB || batchA === 1 || batchB === 1) {
          uninstallFastKernels('wasm');
          const stock = tf.matMul(a, b, tA, tB);
          installFastKernels('wasm');
          assertClose(stock, expected, `${what} stock`);
          const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(fast, stock))).dataSync()[0]);
          assert.ok(diff <= 1e-4, `${what}: fast vs stock ${diff}`);
          stock.dispose();
        }
        tf.dispose([a, b, fast]);
        assert.equal(tf.memory().numTensors, before.numTensors, `${what}: no leaked tensors`);
        assert.equal(tf.memory().numDataBuffers, before.numDataBuffers, `${what}: no leaked wasm buffers`);
      }
});

test('fast fused matMul (bias, relu) equals matMul + bias + relu', wasmOnly, () => {
  installFastKernels('wasm');
  let seed = 100;
  for (const [aShape, bShape] of CASES)
    for (const tA of [false, true])
      for (const tB of [false, true]) {
        if (aShape.length > 3 || bShape.length > 3) continue; // fused.matMul takes rank <= 3
        const [a, b] = operands(aShape, bShape, tA, tB, seed++);
        const N = bShape[bShape.length - 1];
        const bias = tf.tensor1d(values(N, seed++));
        const fused = tf.fused.matMul({ a, b, transposeA: tA, transposeB: tB, bias, activation: 'relu' });
        const ref = reference(a, b, tA, tB);
        const B = bias.dataSync();
        const expected = { shape: ref.shape, data: ref.data.map((v, i) => Math.max(0, v + B[i % N])) };
        assertClose(fused, expected, `fused(${aShape}, ${bShape}, tA=${tA}, tB=${tB})`);
        tf.dispose([a, b, bias, fused]);
      }
});

test('gradients through matMul are unchanged by the fast kernels', wasmOnly, () => {
  assertMatmulGradientsAgree((grads) => {
    installFastKernels('wasm');
    const fast = grads();
    uninstallFastKernels('wasm');
    const stock = grads();
    installFastKernels('wasm');
    return [fast, stock];
  }, assert);
});

function stockVsFast(f: () => tf.Tensor): [tf.Tensor, tf.Tensor] {
  installFastKernels('wasm');
  const fast = f();
  uninstallFastKernels('wasm');
  const stock = f();
  installFastKernels('wasm');
  return [fast, stock];
}

test('fast Tile / broadcastTo equal the stock kernel (float32, int32, bool)', wasmOnly, () => {
  const cases: [number[], number[]][] = [
    [[1, 1, 5, 7], [3, 4, 1, 1]],
    [[2, 3], [2, 3]],
    [[4], [5]],
    [[2, 1, 3], [1, 4, 2]],
    [[3, 2, 2, 1, 2], [2, 1, 3, 2, 1]],
  ];
  for (const [shape, reps] of cases)
    for (const dtype of ['float32', 'int32', 'bool'] as const) {
      const n = shape.reduce((p, d) => p * d, 1);
      const v = values(n, n + reps[0]);
      const x = dtype === 'float32' ? tf.tensor(v, shape) : dtype === 'int32' ? tf.tensor(v.map((a) => Math.round(a * 100)), shape, 'int32') : tf.tensor(v, shape).greater(0);
      const [fast, stock] = stockVsFast(() => tf.tile(x, reps));
      assert.equal(fast.dtype, dtype);
      assert.deepEqual(fast.shape, stock.shape);
      assert.deepEqual(Array.from(fast.dataSync()), Array.from(stock.dataSync()), `tile(${shape}, ${reps}) ${dtype}`);
      tf.dispose([x, fast, stock]);
    }
  const m = tf.tensor([1, 0, 0, 1], [1, 1, 2, 2]).cast('bool');
  const [fast, stock] = stockVsFast(() => tf.broadcastTo(m, [2, 3, 2, 2]));
  assert.deepEqual(Array.from(fast.dataSync()), Array.from(stock.dataSync()));
  tf.dispose([m, fast, stock]);
});

test('fast Transpose (rank >= 5, and tiled matrix transposes) equals the stock kernel', wasmOnly, () => {
  const cases: [number[], number[]][] = [
    [[2, 3, 2, 4, 2, 4], [0, 2, 4, 1, 3, 5]], // patchify
    [[2, 3, 2, 4, 2, 4], [5, 4, 3, 2, 1, 0]], // last axis moves
    [[2, 2, 3, 2, 3, 5], [0, 1, 3, 2, 4, 5]], // pixel shuffle
    [[2, 1, 3, 1, 4, 5], [4, 0, 2, 1, 5, 3]], // size-1 axes
    [[2, 3, 4, 5, 6], [0, 1, 2, 4, 3]], // merges down to rank 3
    [[2, 3, 4], [2, 0, 1]],
    [[37, 70], [1, 0]], // matrix, wide: tiles with remainders
    [[70, 37], [1, 0]], // tall: the other loop order
    [[3, 33, 65], [0, 2, 1]], // a batch of matrices
    [[2, 3, 33, 5], [0, 1, 3, 2]], // merges to a batch of matrices
    [[1, 40, 1, 9], [0, 3, 2, 1]], // size-1 axes dropped: a matrix
  ];
  for (const [shape, perm] of cases)
    for (const dtype of ['float32', 'int32'] as const) {
      const n = shape.reduce((p, d) => p * d, 1);
      const x = dtype === 'float32' ? tf.tensor(values(n, n), shape) : tf.range(0, n, 1, 'int32').reshape(shape);
      const [fast, stock] = stockVsFast(() => tf.transpose(x, perm));
      assert.deepEqual(fast.shape, stock.shape);
      assert.deepEqual(Array.from(fast.dataSync()), Array.from(stock.dataSync()), `transpose(${shape}, ${perm}) ${dtype}`);
      tf.dispose([x, fast, stock]);
    }
});

test('UnsortedSegmentSum (missing on stock wasm) and the gather gradient', wasmOnly, () => {
  installFastKernels('wasm');
  const x = tf.tensor(values(6 * 4, 3), [6, 4]);
  const ids = tf.tensor1d([2, 0, 2, -1, 7, 1], 'int32'); // -1 and 7 (>= numSegments) are dropped
  const y = tf.unsortedSegmentSum(x, ids, 3);
  const X = x.arraySync() as number[][];
  const expected = [X[1], X[5], X[0].map((v, j) => v + X[2][j])];
  assert.deepEqual(y.shape, [3, 4]);
  (y.arraySync() as number[][]).forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(v - expected[i][j]) < 1e-6)));
  // embedding gradient: d/dE sum(gather(E, ids) * w) = scatter-add of w rows
  const E = tf.tensor(values(5 * 3, 4), [5, 3]);
  const tok = tf.tensor2d([[1, 3], [3, 0]], [2, 2], 'int32');
  const w = tf.tensor(values(2 * 2 * 3, 5), [2, 2, 3]);
  const dE = tf.grad((e: tf.Tensor) => tf.sum(tf.mul(tf.gather(e, tok), w)))(E);
  const W = w.arraySync() as number[][][];
  const want = Array.from({ length: 5 }, () => [0, 0, 0]);
  [[1, 3], [3, 0]].forEach((r, i) => r.forEach((t, j) => W[i][j].forEach((v, k) => (want[t][k] += v))));
  (dE.arraySync() as number[][]).forEach((row, i) => row.forEach((v, k) => assert.ok(Math.abs(v - want[i][k]) < 1e-6)));
  tf.dispose([x, ids, y, E, tok, w, dE]);
});

test('Conv2DBackpropFilter (missing on stock wasm) equals a direct sum', wasmOnly, () => {
  installFastKernels('wasm');
  for (const [stride, pad, k] of [[4, 'valid', 4], [1, 'same', 3], [2, 'valid', 3]] as const) {
    const x = tf.tensor(values(2 * 8 * 8 * 3, k), [2, 8, 8, 3]) as tf.Tensor4D;
    const f = tf.tensor(values(k * k * 3 * 5, 9), [k, k, 3, 5]) as tf.Tensor4D;
    const y = tf.conv2d(x, f, stride, pad);
    const dy = tf.tensor(values(y.size, 11), y.shape) as tf.Tensor4D;
    const dw = tf.grad((w: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, w as tf.Tensor4D, stride, pad), dy)))(f);
    // direct: dW[a,b,c,o] = sum x[n, oh*s - pt + a, ow*s - pl + b, c] * dy[n, oh, ow, o]
    const info = tf.backend_util.computeConv2DInfo(x.shape, f.shape, stride, 1, pad);
    const X = x.arraySync();
    const DY = dy.arraySync();
    const got = dw.arraySync() as number[][][][];
    for (let a = 0; a < k; a++)
      for (let b = 0; b < k; b++)
        for (let c = 0; c < 3; c++)
          for (let o = 0; o < 5; o++) {
            let s = 0;
            for (let n = 0; n < 2; n++)
              for (let oh = 0; oh < info.outHeight; oh++)
                for (let ow = 0; ow < info.outWidth; ow++) {
                  const ih = oh * stride - info.padInfo.top + a;
                  const iw = ow * stride - info.padInfo.left + b;
                  if (ih >= 0 && ih < 8 && iw >= 0 && iw < 8) s += X[n][ih][iw][c] * DY[n][oh][ow][o];
                }
            assert.ok(Math.abs(got[a][b][c][o] - s) < 1e-4, `conv grad k=${k} s=${stride} ${pad} at ${[a, b, c, o]}: ${got[a][b][c][o]} vs ${s}`);
          }
    tf.dispose([x, f, y, dy, dw]);
  }
});

test('Pow: x ** 2 (Square path) and other exponents equal the stock kernel', wasmOnly, () => {
  const x = tf.tensor(values(40, 21).map((v) => v * 3), [5, 8]);
  for (const e of [2, 3, 0.5, -2]) {
    const [fast, stock] = stockVsFast(() => tf.pow(e === 0.5 ? tf.abs(x) : x, e));
    assert.deepEqual(fast.shape, stock.shape);
    const F = fast.dataSync();
    const S = stock.dataSync();
    for (let i = 0; i < F.length; i++) assert.ok(Math.abs(F[i] - S[i]) <= 1e-6 * Math.max(1, Math.abs(S[i])), `pow(x, ${e})[${i}]: ${F[i]} vs ${S[i]}`);
    tf.dispose([fast, stock]);
  }
  const [fast, stock] = stockVsFast(() => tf.pow(x, tf.tensor([[2]]))); // [1,1] exponent: still [5, 8]
  assert.deepEqual(fast.shape, stock.shape);
  assert.deepEqual(Array.from(fast.dataSync()), Array.from(stock.dataSync()));
  tf.dispose([x, fast, stock]);
});

test('Sum over leading axes equals the stock kernel (other reductions go to it)', wasmOnly, () => {
  const cases: [number[], number | number[], boolean][] = [
    [[64, 48], 0, false], // a bias gradient
    [[4, 16, 24], [0, 1], false], // a norm-weight gradient
    [[4, 16, 24], [1, 0], true],
    [[3, 5, 7], 0, false],
    [[3, 5, 7], 1, false], // not leading: stock
    [[3, 5, 7], -1, true], // last axis: stock
    [[3, 5, 7], [0, 1, 2], false], // everything: stock
  ];
  for (const [shape, axis, keepDims] of cases) {
    const n = shape.reduce((p, d) => p * d, 1);
    const x = tf.tensor(values(n, n + 7), shape);
    const [fast, stock] = stockVsFast(() => tf.sum(x, axis, keepDims));
    assert.deepEqual(fast.shape, stock.shape, `sum(${shape}, ${axis}) shape`);
    const F = fast.dataSync();
    const S = stock.dataSync();
    for (let i = 0; i < F.length; i++) assert.ok(Math.abs(F[i] - S[i]) <= 1e-5, `sum(${shape}, ${axis})[${i}]: ${F[i]} vs ${S[i]}`);
    tf.dispose([x, fast, stock]);
  }
  const i32 = tf.tensor([[1, 2], [3, 4]], [2, 2], 'int32');
  const [fast, stock] = stockVsFast(() => tf.sum(i32, 0)); // int32: stock
  assert.deepEqual(Array.from(fast.dataSync()), Array.from(stock.dataSync()));
  tf.dispose([i32, fast, stock]);
});
