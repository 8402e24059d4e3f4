// The optimizer kernels of the native addon (core/kernels/native-direct.ts, native/blas.cc adamwStep /
// sumSquares): the fused AdamW update against a float64 reference, bit for bit against the tfjs
// kernel chain it replaces (plugins/optimizer/adamw.ts without the addon) and against the host
// update (host_state), the nanoVLM v0.1 one-step fixture with it, in-place moments that never
// change a tensor sharing their buffer, no leaks and no heap growth; the gradient norm against a
// float64 reference and the fixture; generation's host-row products against tf.matMul on the
// native kernel (bit for bit) and a float64 reference. Skips without the addon (no compiler / OpenBLAS at `npm ci`),
// except in CI (CI=true).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../../helpers/backend.ts';
import { FIXTURES, needsShared } from '../../helpers/shared.ts';
import { reference, values } from '../../helpers/matmul-reference.ts';
import { installFastKernels } from '../../../core/kernels/index.ts';
import { installNativeMatMul, loadNativeBlas, nativeMatMulStatus, uninstallNativeMatMul } from '../../../core/kernels/native-matmul.ts';
import { activationNative, logSoftmaxRows, matMulRowsNative, nativeOptimizerActive, ropeNative, sumSquaresNative } from '../../../core/kernels/native-direct.ts';
import { applyRope } from '../../../plugins/decoder/llama.ts';
import { crossEntropyIgnore, geluTanh, silu } from '../../../core/ops.ts';
import { globalNorm } from '../../../core/train/grads.ts';
import { readSafetensors } from '../../../core/weights/safetensors.ts';
import { AdamW, type AdamWOptions } from '../../../plugins/optimizer/adamw.ts';

const backend = await useTestBackend();
const addon = loadNativeBlas();
// an addon built before native/blas.cc had these functions: rebuild it (CI always builds afresh)
const current = addon !== null && ['adamwStep', 'matmulArrays', 'rope', 'logSoftmax', 'activation'].every((f) => typeof (addon as unknown as Record<string, unknown>)[f] === 'function');
const opts =
  backend !== 'wasm'
    ? { skip: `native kernels are wasm-only (test backend is ${backend})` }
    : process.env.VLM_NATIVE_MATMUL === '0' || process.env.VLM_NATIVE_DIRECT === '0'
      ? { skip: 'native kernels turned off in the environment (VLM_NATIVE_MATMUL=0 / VLM_NATIVE_DIRECT=0)' }
      : current || process.env.CI === 'true'
        ? {}
        : { skip: addon ? 'the native addon predates adamwStep / matmulArrays / rope / logSoftmax / activation: npm run build:native' : `${nativeMatMulStatus()}` };

/** f() with the native kernels, then with the tfjs ones (the addon uninstalled) */
function nativeAndTfjs<T>(f: () => T): [T, T] {
  installFastKernels('wasm');
  installNativeMatMul('wasm');
  assert.ok(nativeOptimizerActive(), nativeMatMulStatus());
  const native = f();
  uninstallNativeMatMul('wasm');
  assert.ok(!nativeOptimizerActive());
  try {
    return [native, f()];
  } finally {
    installNativeMatMul('wasm');
  }
}

const SHAPES = [[3], [17, 5], [64, 96], [1, 1]];
const OPTIONS: AdamWOptions = {
  groups: [
    { name: 'MP', prefixes: ['MP'], lr: 2e-3 },
    { name: 'backbones', prefixes: ['decoder'], lr: 1e-4, weight_decay: 0.1 },
  ],
  weight_decay: 0.01,
  betas: [0.9, 0.999],
  eps: 1e-8,
  freeze: [],
};
const NAMES = ['MP.a', 'MP.b', 'decoder.c', 'decoder.d'];
const LRS = [
  [2e-3, 1e-4],
  [1.5e-3, 5e-5],
  [1e-3, 2e-5],
];
const gradsOf = (step: number) => new Map(NAMES.map((n, i) => [n, tf.tensor(values(SHAPES[i].reduce((a, b) => a * b, 1), 100 * step + i), SHAPES[i])]));

/** three AdamW steps on fresh parameters; the parameters and moments after them as host arrays */
function threeSteps(extra: Partial<AdamWOptions> = {}): Map<string, Float32Array> {
  const params = new Map(NAMES.map((n, i) => [n, tf.variable(tf.tensor(values(SHAPES[i].reduce((a, b) => a * b, 1), 7 + i), SHAPES[i]))]));
  const opt = new AdamW(params, { ...OPTIONS, ...extra });
  for (let s = 0; s < LRS.length; s++) {
    const grads = gradsOf(s);
    opt.step(grads, LRS[s]);
    tf.dispose([...grads.values()]);
  }
  const out = new Map<string, Float32Array>();
  for (const [n, p] of params) out.set(n, p.dataSync() as Float32Array);
  for (const [k, t] of opt.state().tensors) out.set(k, Float32Array.from(t.dataSync()));
  opt.dispose();
  tf.dispose([...params.values()]);
  return out;
}

/** the same three steps in float64, torch 1.13 _single_tensor_adamw's formula */
function threeStepsFloat64(): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  NAMES.forEach((n, i) => {
    const size = SHAPES[i].reduce((a, b) => a * b, 1);
    const p = Float64Array.from(values(size, 7 + i));
    const m = new Float64Array(size);
    const v = new Float64Array(size);
    const gi = n.startsWith('MP') ? 0 : 1;
    const wd = gi === 0 ? 0.01 : 0.1;
    for (let s = 0; s < LRS.length; s++) {
      const g = values(size, 100 * s + i);
      const lr = LRS[s][gi];
      const t = s + 1;
      for (let k = 0; k < size; k++) {
        p[k] *= 1 - lr * wd;
        m[k] = 0.9 * m[k] + 0.1 * g[k];
        v[k] = 0.999 * v[k] + 0.001 * g[k] * g[k];
        const denom = Math.sqrt(v[k]) / Math.sqrt(1 - 0.999 ** t) + 1e-8;
        p[k] -= (lr / (1 - 0.9 ** t)) * (m[k] / denom);
      }
    }
    out.set(n, p);
    out.set(`${n}.exp_avg`, m);
    out.set(`${n}.exp_avg_sq`, v);
  });
  return out;
}

test('native AdamW: bit-identical to the tfjs kernel chain and the host update; float64 reference within 1e-6 of each tensor\'s scale', opts, () => {
  const [native, chain] = nativeAndTfjs(() => threeSteps());
  const [nativeHost, host] = nativeAndTfjs(() => threeSteps({ host_state: true }));
  const ref = threeStepsFloat64();
  assert.equal(native.size, 3 * NAMES.length);
  for (const [k, want] of ref) {
    assert.deepEqual(native.get(k), chain.get(k), `${k}: native vs tfjs chain`);
    assert.deepEqual(nativeHost.get(k), native.get(k), `${k}: native host_state vs native`);
    assert.deepEqual(host.get(k), native.get(k), `${k}: host update vs native`);
    const got = native.get(k)!;
    const scale = want.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
    assert.ok(worst <= 1e-6 * scale, `${k}: native vs float64, max abs ${worst} (scale ${scale})`);
  }
});

test('native AdamW: one step of the nanoVLM v0.1 fixture (max abs <= 1e-6), one native call per parameter', { ...opts, ...needsShared('fixtures', 'nanovlm', 'tiny') }, async () => {
  installFastKernels('wasm');
  installNativeMatMul('wasm');
  assert.ok(nativeOptimizerActive(), nativeMatMulStatus());
  const tiny = join(FIXTURES, 'tiny');
  const weights = (await readSafetensors(join(tiny, 'model.safetensors'))).tensors;
  const expected = (await readSafetensors(join(tiny, 'expected.safetensors'))).tensors;
  const f32 = (t: { shape: number[]; data: unknown }) => tf.tensor(Float32Array.from(t.data as ArrayLike<number>), t.shape, 'float32');
  const params = new Map<string, tf.Variable>();
  const grads = new Map<string, tf.Tensor>();
  for (const key of expected.keys()) {
    if (!key.startsWith('grad.')) continue;
    const name = key.slice('grad.'.length);
    const stored = weights.get(name) ?? (name === 'decoder.token_embedding.weight' ? weights.get('decoder.head.weight') : undefined);
    params.set(name, tf.variable(f32(stored!), true));
    grads.set(name, f32(expected.get(key)!));
  }
  // the gradient norm (float64 sums in the addon) against the fixture's torch value
  const want = (expected.get('grad_norm')!.data as Float32Array)[0];
  const norm = globalNorm(grads);
  assert.ok(Math.abs(norm.dataSync()[0] - want) / want <= 1e-5, `norm ${norm.dataSync()[0]} vs ${want}`);
  const opt = new AdamW(params, { weight_decay: 0.01, betas: [0.9, 0.999], eps: 1e-8, freeze: [], groups: [
    { name: 'MP', prefixes: ['MP'], lr: 2e-3 },
    { name: 'backbones', prefixes: ['decoder', 'vision_encoder'], lr: 1e-4 },
  ] });
  const profile = await tf.profile(() => opt.step(grads, [2e-3, 1e-4]));
  // the update ran no tfjs arithmetic kernel (the chain is Multiply, Add, Sqrt, RealDiv, Sub, ...)
  assert.deepEqual(profile.kernelNames.filter((k) => ['Sqrt', 'RealDiv', 'Sub', 'Multiply'].includes(k)), []);
  let worst = 0;
  for (const [name, p] of params) {
    const ref = expected.get(`after_adamw.${name}`)!.data as Float32Array;
    const got = p.dataSync();
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]));
  }
  assert.ok(worst <= 1e-6, `max abs ${worst}`);
  opt.dispose();
  tf.dispose([norm, ...params.values(), ...grads.values()]);
});

test('native AdamW: moments updated in place only when no other tensor shares them; no leaks, no heap growth', opts, () => {
  installFastKernels('wasm');
  installNativeMatMul('wasm');
  const params = new Map([['MP.w', tf.variable(tf.tensor(values(4096, 1), [64, 64]))]]);
  const grads = new Map<string, tf.Tensor>([['MP.w', tf.tensor(values(4096, 2), [64, 64])]]);
  const opt = new AdamW(params, { ...OPTIONS, groups: undefined, lr: 1e-3 });
  opt.step(grads, [1e-3]);
  // a moment loaded from a state shares the state tensor's buffer: the state tensor must not move
  const saved = opt.state();
  const copy = new Map([...saved.tensors].map(([k, t]) => [k, (t as tf.Tensor).clone()]));
  const before = new Map([...copy].map(([k, t]) => [k, t.dataSync().slice()]));
  opt.loadState({ step: saved.step, tensors: copy });
  const p0 = params.get('MP.w')!;
  const dataId = p0.dataId;
  opt.step(grads, [1e-3]);
  for (const [k, t] of copy) assert.deepEqual(t.dataSync(), before.get(k), `${k}: the loaded tensor is unchanged`);
  assert.notEqual(params.get('MP.w')!.dataId, dataId, 'the parameter gets a new buffer (caches keyed by dataId see the step)');
  const heap = () => (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.byteLength;
  const tensors = tf.memory().numTensors;
  const buffers = tf.memory().numDataBuffers;
  const bytes = heap();
  for (let i = 0; i < 20; i++) opt.step(grads, [1e-3]);
  assert.equal(tf.memory().numTensors, tensors);
  assert.equal(tf.memory().numDataBuffers, buffers);
  assert.equal(heap(), bytes);
  opt.dispose();
  tf.dispose([...copy.values(), ...grads.values(), ...params.values()]);
});

test('native sum of squares equals a float64 reference (empty tensors too)', opts, () => {
  installFastKernels('wasm');
  installNativeMatMul('wasm');
  const sizes = [0, 1, 7, 8, 9, 1000, 65537];
  const ts = sizes.map((n, i) => tf.tensor(values(n, 40 + i), [n]));
  const got = sumSquaresNative(ts)!;
  sizes.forEach((n, i) => {
    const x = values(n, 40 + i);
    const want = x.reduce((s, a) => s + a * a, 0);
    assert.ok(Math.abs(got[i] - want) <= 1e-12 * Math.max(1, want), `size ${n}: ${got[i]} vs ${want}`);
  });
  uninstallNativeMatMul('wasm');
  assert.equal(sumSquaresNative(ts), null, 'without the addon the caller runs its tfjs path');
  installNativeMatMul('wasm');
  tf.dispose(ts);
});

test('native host-row products equal tf.matMul on the native kernel (bit for bit) and a float64 reference', opts, () => {
  installFastKernels('wasm');
  installNativeMatMul('wasm');
  let seed = 900;
  for (const [B, K, N] of [[1, 256, 512], [1, 768, 256], [3, 64, 300], [2, 16, 1], [1, 1, 1]]) {
    const rows = values(B * K, seed++);
    const w = tf.tensor2d(values(K * N, seed++), [K, N]);
    const got = matMulRowsNative(rows, B, w)!;
    const x = tf.tensor2d(rows, [B, K]);
    const viaKernel = tf.matMul(x, w);
    assert.deepEqual(got, viaKernel.dataSync(), `[${B},${K}]x[${K},${N}]: as the native tf.matMul`);
    const want = reference(x, w, false, false);
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want.data[i]));
    assert.ok(worst <= 1e-4, `[${B},${K}]x[${K},${N}]: vs float64 ${worst}`);
    tf.dispose([w, x, viaKernel]);
  }
  const w = tf.zeros([4, 2]) as tf.Tensor2D;
  assert.equal(matMulRowsNative(new Float32Array(3), 1, w), null, 'rows of the wrong length: the caller runs tf.matMul');
  uninstallNativeMatMul('wasm');
  assert.equal(matMulRowsNative(new Float32Array(4), 1, w), null, 'without the addon');
  installNativeMatMul('wasm');
  w.dispose();
});

test('rope: applyRope and its gradient bit for bit as the tfjs chain, within 1e-6 of float64, cos rows 1 or B', opts, () => {
  for (const [B, H, T, hd, rows] of [[2, 3, 5, 8, 1], [2, 2, 4, 64, 2], [1, 1, 1, 2, 1]]) {
    const x = tf.tensor4d(values(B * H * T * hd, 7), [B, H, T, hd]);
    const dy = tf.tensor4d(values(B * H * T * hd, 8), [B, H, T, hd]);
    const cos = tf.tensor4d(values(rows * T * hd, 9), [rows, 1, T, hd]);
    const sin = tf.tensor4d(values(rows * T * hd, 10), [rows, 1, T, hd]);
    const run = () =>
      tf.tidy(() => {
        const { value, grads } = tf.valueAndGrads((a: tf.Tensor) => applyRope(a as tf.Tensor4D, cos, sin))([x], dy);
        return [value.dataSync().slice(), grads[0].dataSync().slice()];
      });
    const direct = ropeNative(x, cos, sin, false);
    assert.ok(direct !== null, 'the addon runs the rope');
    direct.dispose();
    const before = tf.memory().numTensors;
    const [native, chain] = nativeAndTfjs(run);
    assert.equal(tf.memory().numTensors, before, 'no leaked tensors');
    const tag = `[${B},${H},${T},${hd}] cos rows ${rows}`;
    assert.deepEqual(native[0], chain[0], `${tag}: forward as the tfjs chain`);
    assert.deepEqual(native[1], chain[1], `${tag}: gradient as the tfjs chain`);
    // float64: y[d] = x[d] c[d] + r[d] s[d], r = rotate_half(x); dx = dy c + rotate_half^T(dy s)
    const [X, G, C, S] = [x, dy, cos, sin].map((t) => t.dataSync());
    const h = hd / 2;
    let worst = 0;
    for (let i = 0; i < X.length; i++) {
      const d = i % hd;
      const t = Math.floor(i / hd) % T;
      const b = Math.floor(i / (H * T * hd));
      const c = ((rows === 1 ? 0 : b) * T + t) * hd;
      const y = X[i] * C[c + d] + (d < h ? -X[i + h] : X[i - h]) * S[c + d];
      const dx = G[i] * C[c + d] + (d < h ? G[i + h] * S[c + d + h] : -G[i - h] * S[c + d - h]);
      worst = Math.max(worst, Math.abs(native[0][i] - y), Math.abs(native[1][i] - dx));
    }
    assert.ok(worst <= 1e-6, `${tag}: vs float64 ${worst}`);
    tf.dispose([x, dy, cos, sin]);
  }
  const x = tf.zeros([1, 1, 2, 3]);
  const c = tf.zeros([1, 1, 2, 3]);
  assert.equal(ropeNative(x, c, c, false), null, 'odd head size: the caller runs the chain');
  const c2 = tf.zeros([1, 2, 2, 4]);
  assert.equal(ropeNative(c2, c2, c2, false), null, 'a table with heads: the chain');
  uninstallNativeMatMul('wasm');
  const x4 = tf.zeros([1, 1, 2, 4]);
  const c4 = tf.zeros([1, 1, 2, 4]);
  assert.equal(ropeNative(x4, c4, c4, false), null, 'without the addon');
  installNativeMatMul('wasm');
  tf.dispose([x, c, c2, x4, c4]);
});

test('logSoftmaxRows: value and gradient within 2e-6 of float64 and of tf.logSoftmax; the loss as the tfjs chain', opts, () => {
  for (const [rows, V, scale] of [[3, 7, 1], [5, 4096, 20], [1, 1, 1]]) {
    const x = tf.tensor2d(values(rows * V, 11).map((v) => v * scale), [rows, V]);
    const dy = tf.tensor2d(values(rows * V, 12), [rows, V]);
    const run = () =>
      tf.tidy(() => {
        const { value, grads } = tf.valueAndGrads((a: tf.Tensor) => logSoftmaxRows(a as tf.Tensor2D))([x], dy);
        return [value.dataSync().slice(), grads[0].dataSync().slice()];
      });
    const before = tf.memory().numTensors;
    const [native, chain] = nativeAndTfjs(run);
    assert.equal(tf.memory().numTensors, before, 'no leaked tensors');
    const [X, G] = [x.dataSync(), dy.dataSync()];
    let worst = 0;
    let vsChain = 0;
    for (let r = 0; r < rows; r++) {
      let m = -Infinity;
      for (let j = 0; j < V; j++) m = Math.max(m, X[r * V + j]);
      let s = 0;
      let sd = 0;
      for (let j = 0; j < V; j++) {
        s += Math.exp(X[r * V + j] - m);
        sd += G[r * V + j];
      }
      for (let j = 0; j < V; j++) {
        const i = r * V + j;
        const y = X[i] - m - Math.log(s);
        const dx = G[i] - sd * Math.exp(y);
        worst = Math.max(worst, Math.abs(native[0][i] - y) / Math.max(1, Math.abs(y)), Math.abs(native[1][i] - dx) / Math.max(1, Math.abs(dx)));
        vsChain = Math.max(vsChain, Math.abs(native[0][i] - chain[0][i]) / Math.max(1, Math.abs(y)), Math.abs(native[1][i] - chain[1][i]) / Math.max(1, Math.abs(dx)));
      }
    }
    assert.ok(worst <= 2e-6, `[${rows},${V}]: vs float64 ${worst}`);
    assert.ok(vsChain <= 2e-6, `[${rows},${V}]: vs tf.logSoftmax ${vsChain}`);
    tf.dispose([x, dy]);
  }
  // the loss and its gradient with ignored targets, native vs the tfjs chain
  const logits = tf.tensor3d(values(2 * 3 * 50, 13).map((v) => v * 8), [2, 3, 50]);
  const targets = tf.tensor2d([1, -100, 49, 0, 7, -100], [2, 3], 'int32');
  const [a, b] = nativeAndTfjs(() =>
    tf.tidy(() => {
      const { value, grads } = tf.valueAndGrads((l: tf.Tensor) => crossEntropyIgnore(l as tf.Tensor3D, targets))([logits]);
      return [value.dataSync()[0], grads[0].dataSync().slice()] as const;
    }),
  );
  assert.ok(Math.abs(a[0] - b[0]) <= 1e-6 * Math.abs(b[0]), `loss ${a[0]} vs ${b[0]}`);
  let worstGrad = 0;
  for (let i = 0; i < a[1].length; i++) worstGrad = Math.max(worstGrad, Math.abs(a[1][i] - b[1][i]));
  assert.ok(worstGrad <= 1e-7, `loss gradient vs the tfjs chain ${worstGrad}`);
  tf.dispose([logits, targets]);
});

test('activation: GELU (tanh) and SiLU values and gradients bit for bit as the tfjs chains, within 1e-5 of float64', opts, () => {
  const n = 4099; // not a multiple of any vector width
  const x = tf.tensor1d(values(n, 21).map((v) => v * 6));
  const dy = tf.tensor1d(values(n, 22));
  const probe = activationNative(0, x, null, null, 0.044715, 1);
  assert.ok(probe !== null, 'the addon runs the activation pass');
  probe.dispose();
  const X = x.dataSync();
  const G = dy.dataSync();
  const sig = (z: number) => 1 / (1 + Math.exp(-z));
  const c = Math.sqrt(2 / Math.PI);
  const f64: Record<string, (v: number) => [number, number]> = {
    gelu: (v) => {
      const s = sig(2 * c * (v + 0.044715 * v ** 3));
      return [v * s, s + v * s * (1 - s) * 2 * c * (1 + 3 * 0.044715 * v * v)];
    },
    silu: (v) => [v * sig(v), sig(v) * (1 + v * (1 - sig(v)))],
  };
  for (const [name, f] of [['gelu', geluTanh], ['silu', silu]] as const) {
    const run = () =>
      tf.tidy(() => {
        const { value, grads } = tf.valueAndGrads((a: tf.Tensor) => f(a))([x], dy);
        return [value.dataSync().slice(), grads[0].dataSync().slice()];
      });
    const before = tf.memory().numTensors;
    const [native, chain] = nativeAndTfjs(run);
    assert.equal(tf.memory().numTensors, before, `${name}: no leaked tensors`);
    assert.deepEqual(native[0], chain[0], `${name}: value as the tfjs chain`);
    assert.deepEqual(native[1], chain[1], `${name}: gradient as the tfjs chain`);
    let worst = 0;
    for (let i = 0; i < n; i++) {
      const [y, slope] = f64[name](X[i]);
      worst = Math.max(worst, Math.abs(native[0][i] - y) / Math.max(1, Math.abs(y)), Math.abs(native[1][i] - G[i] * slope) / Math.max(1, Math.abs(G[i] * slope)));
    }
    assert.ok(worst <= 1e-5, `${name}: vs float64 ${worst}`);
  }
  assert.equal(activationNative(1, x, null, dy), null, 'a gradient without s: the chain');
  tf.dispose([x, dy]);
});
