// The fused RMSNorm / LayerNorm passes of the native addon (core/kernels/native-direct.ts normNative,
// native/blas.cc norm / normGrad) behind core/ops.ts rmsNorm and layerNorm: value, dx, dw and db
// within 2e-6 (relative to each output's largest value) of a float64 reference and close to the
// tfjs chain they replace, for the ViT's and the decoder's shapes, odd channel counts, one row and
// several eps; no kernels run, no leaked tensors, nothing on the heap but the outputs; the forward
// outside a gradient tape; the switches (VLM_NATIVE_NORM=0, VLM_NATIVE_FUSED=0, no addon) and
// shapes it does not take run the chain. Skips without the addon (no compiler / OpenBLAS at
// `npm ci`), except in CI (CI=true).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../../helpers/backend.ts';
import { values } from '../../helpers/matmul-reference.ts';
import { installFastKernels } from '../../../core/kernels/index.ts';
import { installNativeMatMul, loadNativeBlas, nativeMatMulStatus, uninstallNativeMatMul } from '../../../core/kernels/native-matmul.ts';
import { normNative } from '../../../core/kernels/native-direct.ts';
import { layerNorm, rmsNorm } from '../../../core/ops.ts';

const backend = await useTestBackend();
const addon = loadNativeBlas() as unknown as Record<string, unknown> | null;
// an addon built before native/blas.cc had norm / normGrad: rebuild it (CI always builds afresh)
const current = addon !== null && typeof addon.norm === 'function' && typeof addon.normGrad === 'function';
const opts =
  backend !== 'wasm'
    ? { skip: `native kernels are wasm-only (test backend is ${backend})` }
    : ['VLM_NATIVE_MATMUL', 'VLM_NATIVE_DIRECT', 'VLM_NATIVE_FUSED', 'VLM_NATIVE_NORM'].some((k) => process.env[k] === '0')
      ? { skip: 'native kernels turned off in the environment (VLM_NATIVE_MATMUL / _DIRECT / _FUSED / _NORM=0)' }
      : current || process.env.CI === 'true'
        ? {}
        : { skip: addon ? 'the native addon predates norm / normGrad: npm run build:native' : `${nativeMatMulStatus()}` };

if (backend === 'wasm') {
  installFastKernels('wasm');
  installNativeMatMul('wasm');
}

/** f() with the native kernels, then with the tfjs ones (the addon uninstalled) */
function nativeAndTfjs<T>(f: () => T): [T, T] {
  const native = f();
  uninstallNativeMatMul('wasm');
  try {
    return [native, f()];
  } finally {
    installNativeMatMul('wasm');
  }
}

/** float64 value and gradients of RMSNorm (centred false) or LayerNorm over the last axis of x [rows, C] */
function reference(X: Float32Array, W: Float32Array, B: Float32Array | null, G: Float32Array, C: number, eps: number) {
  const rows = X.length / C;
  const y = new Float64Array(X.length);
  const dx = new Float64Array(X.length);
  const dw = new Float64Array(C);
  const db = new Float64Array(C);
  for (let i = 0; i < rows; i++) {
    const o = i * C;
    let mu = 0;
    if (B) {
      for (let j = 0; j < C; j++) mu += X[o + j];
      mu /= C;
    }
    let v = 0;
    for (let j = 0; j < C; j++) v += (X[o + j] - mu) ** 2;
    const r = 1 / Math.sqrt(v / C + eps);
    const xh = Array.from({ length: C }, (_, j) => (X[o + j] - mu) * r);
    const g = Array.from({ length: C }, (_, j) => G[o + j] * W[j]);
    const mg = B ? g.reduce((a, b) => a + b, 0) / C : 0;
    const mgx = g.reduce((a, gj, j) => a + gj * xh[j], 0) / C;
    for (let j = 0; j < C; j++) {
      y[o + j] = xh[j] * W[j] + (B ? B[j] : 0);
      dx[o + j] = r * (g[j] - mg - xh[j] * mgx);
      dw[j] += G[o + j] * xh[j];
      db[j] += G[o + j];
    }
  }
  return B ? [y, dx, dw, db] : [y, dx, dw];
}

/** max |a - b| / max |b| (the error relative to the output's scale) */
function relMax(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return err / Math.max(scale, 1e-30);
}

const CASES: { shape: number[]; eps: number; offset?: number }[] = [
  { shape: [8, 64, 192], eps: 1e-6 }, // the ViT's LayerNorm (nanoVLM's SigLIP ln_eps)
  { shape: [8, 80, 256], eps: 1e-5 }, // the decoder's RMSNorm
  { shape: [3, 5, 37], eps: 1e-5, offset: 3 }, // odd channels, rows far from zero mean
  { shape: [1, 7], eps: 0.1 }, // one row, a large eps
  { shape: [2, 1], eps: 1e-12 }, // one channel: LayerNorm's x - mean is 0
  { shape: [4, 9, 2], eps: 0 },
];

for (const kind of ['rmsNorm', 'layerNorm'] as const) {
  test(`${kind}: value, dx, dw${kind === 'layerNorm' ? ', db' : ''} within 2e-6 of float64 and the tfjs chain; no leaks, only the outputs on the heap`, opts, () => {
    for (const { shape, eps, offset = 0 } of CASES) {
      if (eps === 0 && kind === 'layerNorm') continue; // a constant row would divide by 0: not a case to compare
      const C = shape[shape.length - 1];
      const size = shape.reduce((a, b) => a * b, 1);
      const x = tf.tensor(values(size, 31).map((v, i) => v * (1 + (i % 5)) + offset), shape);
      const w = tf.tensor1d(values(C, 32).map((v) => 1 + v / 2));
      const b = tf.tensor1d(values(C, 33));
      const dy = tf.tensor(values(size, 34), shape);
      const inputs = kind === 'rmsNorm' ? [x, w] : [x, w, b];
      const f = (...a: tf.Tensor[]) => (kind === 'rmsNorm' ? rmsNorm(a[0], a[1], eps) : layerNorm(a[0], a[1], a[2], eps));
      const run = () =>
        tf.tidy(() => {
          const { value, grads } = tf.valueAndGrads(f)(inputs, dy);
          return [value, ...grads].map((t) => t.dataSync().slice());
        });
      const tag = `${kind} [${shape}] eps ${eps}`;
      const before = tf.memory();
      const [native, chain] = nativeAndTfjs(run);
      assert.equal(tf.memory().numTensors, before.numTensors, `${tag}: no leaked tensors`);
      const ref = reference(x.dataSync() as Float32Array, w.dataSync() as Float32Array, kind === 'layerNorm' ? (b.dataSync() as Float32Array) : null, dy.dataSync() as Float32Array, C, eps);
      const names = ['value', 'dx', 'dw', 'db'];
      for (let k = 0; k < ref.length; k++) {
        if (kind === 'layerNorm' && C === 1 && k !== 0 && k !== 3) continue; // xhat = 0: dx, dw are 0 (the chain's too)
        const e = relMax(native[k], ref[k]);
        if (process.env.VLM_TEST_VERBOSE) console.log(tag, names[k], e, relMax(chain[k], ref[k]));
        assert.ok(e <= 2e-6, `${tag}: ${names[k]} vs float64 ${e}`);
        if (C === 1 && k === 1) continue; // one channel: dx is 0 up to eps, the chain's is its rounding noise
        // the chain rounds every step to float32 (and sums in its own order): near, not equal
        const c = relMax(native[k], chain[k]);
        assert.ok(c <= 2e-6, `${tag}: ${names[k]} vs the tfjs chain ${c}`);
      }
      // what the fused passes leave on the heap is their outputs (the column sums are native memory)
      const p = tf.tidy(() => {
        const live = tf.memory().numBytes;
        const { value, grads } = tf.valueAndGrads(f)(inputs, dy);
        const kept = tf.memory().numBytes - live;
        const outputs = [value, ...grads].reduce((a, t) => a + t.size * 4, 0);
        return { kept, outputs };
      });
      assert.equal(p.kept, p.outputs, `${tag}: ${p.kept} bytes kept for ${p.outputs} of outputs`);
      const heap = () => (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer.byteLength;
      const heapBefore = heap();
      run();
      assert.equal(heap(), heapBefore, `${tag}: the wasm heap does not grow`);
      tf.dispose([x, w, b, dy]);
    }
  });
}

test('norms: the fused pass runs no tfjs kernel either way; outside a tape it gives the same values; shapes it does not take and the switches run the chain', opts, async () => {
  const x = tf.tensor3d(values(2 * 3 * 40, 41), [2, 3, 40]);
  const w = tf.tensor1d(values(40, 42));
  const b = tf.tensor1d(values(40, 43));
  const dy = tf.tensor3d(values(2 * 3 * 40, 44), [2, 3, 40]);
  for (const f of [(a: tf.Tensor, c: tf.Tensor) => rmsNorm(a, c, 1e-5), (a: tf.Tensor, c: tf.Tensor) => layerNorm(a, c, b, 1e-5)]) {
    const prof = await tf.profile(() => tf.tidy(() => tf.grads(f)([x, w], dy)));
    // tf.customGrad's own bookkeeping only (an Identity of the value, 'forward'): none of the ~15 of the chain
    assert.ok(prof.kernelNames.every((k) => k === 'Identity' || k === 'forward'), `kernels run: ${prof.kernelNames.join(', ')}`);
    const taped = tf.tidy(() => tf.valueAndGrads(f)([x, w], dy).value.dataSync().slice());
    const before = tf.memory().numTensors;
    const plain = f(x, w);
    assert.equal(tf.memory().numTensors, before + 1, 'outside a tape: the value only');
    assert.deepEqual(plain.dataSync(), taped, 'outside a tape: the same values');
    plain.dispose();
  }
  assert.ok(normNative(x, w, null, 1e-5) !== null, 'the addon runs the norm');
  tf.tidy(() => {
    assert.equal(normNative(x, tf.ones([41]), null, 1e-5), null, 'a weight of another length: the chain');
    assert.equal(normNative(x, tf.ones([1, 40]), null, 1e-5), null, 'a weight of rank 2: the chain');
    assert.equal(normNative(x, w, tf.ones([40], 'int32'), 1e-5), null, 'an int bias: the chain');
    assert.equal(normNative(tf.zeros([2, 0]), tf.ones([0]), null, 1e-5), null, 'no rows: the chain');
  });
  for (const key of ['VLM_NATIVE_NORM', 'VLM_NATIVE_FUSED']) {
    process.env[key] = '0';
    try {
      assert.equal(normNative(x, w, b, 1e-5), null, `${key}=0: the chain`);
      const prof = await tf.profile(() => tf.tidy(() => rmsNorm(x, w, 1e-5)));
      assert.ok(prof.kernelNames.length >= 4, `${key}=0: the tfjs chain runs (${prof.kernelNames.join(', ')})`);
    } finally {
      delete process.env[key];
    }
  }
  uninstallNativeMatMul('wasm');
  assert.equal(normNative(x, w, b, 1e-5), null, 'without the addon: the chain');
  installNativeMatMul('wasm');
  tf.dispose([x, w, b, dy]);
});
