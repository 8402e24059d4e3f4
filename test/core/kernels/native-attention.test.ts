// The fused attention softmax, SwiGLU product and GELU of the native addon (core/kernels/
// native-direct.ts scaledSoftmaxNative, siluMulNative, geluNative; native/blas.cc scaledSoftmax,
// siluMul, gelu): softmax(x / sqrt(hd) + mask) bit for bit as the tfjs chain it replaces (tf.div,
// tf.add, tf.softmax: XNNPACK's exp and sum order) and against a float64 reference with the masks
// the models build (causal -inf, padding finfo.min, packed-row segments, a fully masked row), its
// gradient bit for bit as the chain's and against float64, the mask's gradient when something
// trains it, attention() with grouped-query heads and with dropout; silu(gate) * up and its
// gradients bit for bit as tf.mul(silu(gate), up); geluTanh bit for bit as its chain; a model with
// LoRA on gate / up / fc1 bit for bit with and without them; VLM_NATIVE_FUSED=0 and
// VLM_NATIVE_ATTN_MLP=0 turn them off; the memory estimate's fused-attention term; no leaked
// tensors. Skips without the addon (no compiler / OpenBLAS at `npm ci`), except in CI (CI=true).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../../helpers/backend.ts';
import { values } from '../../helpers/matmul-reference.ts';
import { installFastKernels } from '../../../core/kernels/index.ts';
import { installNativeMatMul, loadNativeBlas, nativeMatMulStatus } from '../../../core/kernels/native-matmul.ts';
import { fusedAttentionActive, geluNative, scaledSoftmaxNative, siluMulNative } from '../../../core/kernels/native-direct.ts';
import { estimateTrainingMemory, type ShapeConfig } from '../../../core/train/memory.ts';
import { VLM_CONFIG_DEFAULTS } from '../../../core/model/config.ts';
import { attachAdapters } from '../../../core/model/adapters.ts';
import { Registry } from '../../../core/registry.ts';
import lora from '../../../plugins/adapter/lora.ts';
import { randomHostBatch, silentLog, tensorsOf, tinyModel } from '../../helpers/train.ts';
import { attention, attentionBias, FLOAT32_MIN, geluTanh, segmentBias, silu, siluMul } from '../../../core/ops.ts';

const backend = await useTestBackend();
const addon = loadNativeBlas();
// an addon built before native/blas.cc had these functions: rebuild it (CI always builds afresh)
const current = addon !== null && ['scaledSoftmax', 'siluMul', 'gelu'].every((f) => typeof (addon as unknown as Record<string, unknown>)[f] === 'function');
const opts =
  backend !== 'wasm'
    ? { skip: `native kernels are wasm-only (test backend is ${backend})` }
    : process.env.VLM_NATIVE_MATMUL === '0' || process.env.VLM_NATIVE_DIRECT === '0' || process.env.VLM_NATIVE_FUSED === '0' || process.env.VLM_NATIVE_ATTN_MLP === '0'
      ? { skip: 'native kernels turned off in the environment (VLM_NATIVE_MATMUL=0 / VLM_NATIVE_DIRECT=0 / VLM_NATIVE_FUSED=0 / VLM_NATIVE_ATTN_MLP=0)' }
      : current || process.env.CI === 'true'
        ? {}
        : { skip: addon ? 'the native addon predates scaledSoftmax / siluMul / gelu: npm run build:native' : `${nativeMatMulStatus()}` };

if (!opts.skip) {
  installFastKernels('wasm');
  installNativeMatMul('wasm');
}

/** f() with the fused passes, then with the tfjs chains (VLM_NATIVE_FUSED=0: the native products stay) */
function nativeAndTfjs<T>(f: () => T): [T, T] {
  const native = f();
  const prev = process.env.VLM_NATIVE_FUSED;
  process.env.VLM_NATIVE_FUSED = '0';
  try {
    return [native, f()];
  } finally {
    if (prev === undefined) delete process.env.VLM_NATIVE_FUSED;
    else process.env.VLM_NATIVE_FUSED = prev;
  }
}

/** the chain scaledSoftmaxNative replaces */
const chain = (x: tf.Tensor, scale: number, bias: tf.Tensor | null) => tf.softmax(bias ? tf.add(tf.div(x, scale), bias) : tf.div(x, scale), -1);

/** float64 softmax(z) rows, z = x / scale + bias rounded as the float32 tf.div and tf.add, and the gradient (p (dy - sum(dy p))) / scale; bias already broadcast to x */
function reference64(X: Float32Array, Bias: Float32Array | null, Dy: Float32Array, Tk: number, scale: number): { p: Float64Array; dx: Float64Array } {
  const p = new Float64Array(X.length);
  const dx = new Float64Array(X.length);
  for (let r = 0; r < X.length / Tk; r++) {
    const z = Array.from({ length: Tk }, (_, j) => Math.fround(Math.fround(X[r * Tk + j] / scale) + (Bias ? Bias[r * Tk + j] : 0)));
    const m = Math.max(...z);
    const e = z.map((v) => Math.exp(v - m));
    const sum = e.reduce((a, b) => a + b, 0);
    let dot = 0;
    for (let j = 0; j < Tk; j++) {
      p[r * Tk + j] = e[j] / sum;
      dot += Dy[r * Tk + j] * p[r * Tk + j];
    }
    for (let j = 0; j < Tk; j++) dx[r * Tk + j] = (p[r * Tk + j] * (Dy[r * Tk + j] - dot)) / scale;
  }
  return { p, dx };
}

/** the masks the models add: name -> bias (or null) for scores [B, H, T, T] */
function masks(B: number, T: number): [string, tf.Tensor | null][] {
  const pad = tf.tensor2d(Array.from({ length: B * T }, (_, i) => (i % T < (i / T) * 2 ? 0 : 1)), [B, T]); // row b: 2b left-padded keys
  const segs = new Int32Array(B * T).map((_, i) => (i % T < 2 ? 0 : 1 + Math.floor((i % T) / 5))); // padding, then samples of 5
  const causal = attentionBias(T, T, null); // [1, 1, T, T]
  const padded = attentionBias(T, T, pad); // [B, 1, T, T]
  const packed = tf.add(padded, segmentBias(segs, B, T)); // [B, 1, T, T]
  const perHead = tf.tensor3d(values(3 * T * T, 77).map((v) => v * 4), [3, T, T]); // [H, T, T]: a right-aligned broadcast
  pad.dispose();
  return [
    ['none', null],
    ['causal', causal],
    ['causal + padding', padded],
    ['packed segments', packed],
    ['per-head [H, T, T]', perHead],
  ];
}

test('scaledSoftmaxNative: probabilities and gradient bit for bit as the tfjs chain, within 2e-7 / 1e-6 of float64, NaN rows where the chain has them, no leaks', opts, () => {
  const [B, H, T] = [2, 3, 13];
  const hd = 32; // sqrt(32) is not a float32 integer: the division rounds as the chain's
  const x = tf.tensor4d(values(B * H * T * T, 5).map((v) => v * 40), [B, H, T, T]);
  const dy = tf.tensor4d(values(B * H * T * T, 6), [B, H, T, T]);
  const X = x.dataSync() as Float32Array;
  const Dy = dy.dataSync() as Float32Array;
  const list = masks(B, T);
  const probe = scaledSoftmaxNative(x, 2, list[2][1]);
  assert.ok(probe !== null, 'the addon runs the fused softmax');
  probe.dispose();
  for (const [name, bias] of list) {
    const before = tf.memory().numTensors;
    const run = () =>
      tf.tidy(() => {
        const f = (a: tf.Tensor) => scaledSoftmaxNative(a, Math.sqrt(hd), bias) ?? chain(a, Math.sqrt(hd), bias);
        const { value, grads } = tf.valueAndGrads(f)([x], dy);
        // the chain's gradient formula (tf.softmax's then tf.div's) from these probabilities
        const dyp = tf.mul(dy, value);
        const formula = tf.div(tf.sub(dyp, tf.mul(tf.sum(dyp, -1, true), value)), Math.sqrt(hd));
        return [value.dataSync().slice(), grads[0].dataSync().slice(), formula.dataSync().slice()] as Float32Array[];
      });
    const [native, tfjs] = nativeAndTfjs(run);
    assert.equal(tf.memory().numTensors, before, `${name}: no leaked tensors`);
    assert.deepEqual(native[0], tfjs[0], `${name}: probabilities bit for bit as the tfjs chain (XNNPACK's Softmax)`);
    assert.deepEqual(native[1], tfjs[1], `${name}: gradient bit for bit as the tfjs chain`);
    assert.deepEqual(native[1], native[2], `${name}: and as the chain's formula`);
    const full = bias ? tf.tidy(() => tf.broadcastTo(bias, [B, H, T, T]).dataSync() as Float32Array) : null;
    const ref = reference64(X, full, Dy, T, Math.fround(Math.sqrt(hd)));
    let vs64 = 0;
    let grad64 = 0;
    for (let i = 0; i < X.length; i++) {
      vs64 = Math.max(vs64, Math.abs(native[0][i] - ref.p[i]));
      grad64 = Math.max(grad64, Math.abs(native[1][i] - ref.dx[i]));
    }
    assert.ok(vs64 <= 2e-7, `${name}: probabilities vs float64 ${vs64}`);
    assert.ok(grad64 <= 1e-6, `${name}: gradient vs float64 ${grad64}`);
    assert.ok(native[0].every(Number.isFinite), `${name}: every row has a finite maximum`);
  }
  // a fully masked row (every key -inf) and a NaN score: NaN rows, as tf.softmax (and torch.softmax)
  const bias = tf.tidy(() => tf.where(tf.tensor1d([1, 0, 0, 0, 0], 'bool').reshape([5, 1]), tf.fill([5, 7], -Infinity), tf.zeros([5, 7])).reshape([1, 1, 5, 7]));
  const y = tf.tensor4d(values(5 * 7, 9).map((v, i) => (i === 3 * 7 + 2 ? NaN : v)), [1, 1, 5, 7]);
  const [a, b] = nativeAndTfjs(() => tf.tidy(() => (scaledSoftmaxNative(y, 8, bias) ?? chain(y, 8, bias)).dataSync().slice()));
  for (const row of [0, 3]) assert.ok(a.slice(row * 7, row * 7 + 7).every(Number.isNaN), `row ${row}: NaN`);
  assert.deepEqual(a, b, 'as the chain (NaN rows included)');
  tf.dispose([x, dy, y, bias, ...list.map(([, t]) => t).filter((t): t is tf.Tensor => t !== null)]);
});

test('scaledSoftmaxNative: a trained mask gets tf.add\'s gradient (summed over its broadcast axes, bit for bit), only then; shapes it cannot take go to the chain', opts, async () => {
  const [B, H, T] = [2, 2, 9];
  const x = tf.tensor4d(values(B * H * T * T, 11).map((v) => v * 10), [B, H, T, T]);
  const dy = tf.tensor4d(values(B * H * T * T, 12), [B, H, T, T]);
  // the mask's gradient only when asked for: the backward of a fixed mask runs no Sum (tf.add's would not either)
  const fixed = tf.zeros([1, 1, T, T]);
  const profile = await tf.profile(() => tf.tidy(() => tf.grads((a: tf.Tensor) => scaledSoftmaxNative(a, 4, fixed)!)([x], dy)[0].dataSync()));
  const kernels = profile.kernels.map((k) => k.name);
  assert.ok(kernels.includes('VlmScaledSoftmax'), `the fused kernel runs (${kernels})`);
  assert.ok(!kernels.includes('Sum'), `no mask gradient computed (${kernels})`);
  fixed.dispose();
  for (const shape of [[1, 1, T, T], [B, 1, T, T], [T]]) {
    const bias = tf.tensor(values(shape.reduce((p, d) => p * d, 1), 13), shape);
    const run = () =>
      tf.tidy(() => {
        const f = (a: tf.Tensor, m: tf.Tensor) => scaledSoftmaxNative(a, 4, m) ?? chain(a, 4, m);
        return tf.grads(f)([x, bias], dy).map((g) => g.dataSync().slice());
      });
    const [native, tfjs] = nativeAndTfjs(run);
    assert.deepEqual(native, tfjs, `bias [${shape}]: scores and mask gradients as the chain`);
    assert.equal(native[1].length, bias.size, 'the mask gradient has the mask shape');
    bias.dispose();
  }
  const grows = tf.zeros([B, H, T, T, 1]); // a bias that would broadcast the scores to a larger shape
  assert.equal(scaledSoftmaxNative(x, 4, grows), null);
  assert.equal(scaledSoftmaxNative(x.reshape([B * H, T, T]), 4, null), null, 'scores of rank 3: the chain');
  tf.dispose([x, dy, grows]);
});

test('attention(): grouped-query heads with the padding mask, and with dropout (the same masks drawn), bit for bit as the tfjs chain; gradients too', opts, () => {
  const [B, H, Hkv, T, hd] = [2, 4, 2, 11, 16];
  const q = tf.tensor4d(values(B * H * T * hd, 21).map((v) => v * 3), [B, H, T, hd]);
  const k = tf.tensor4d(values(B * Hkv * T * hd, 22).map((v) => v * 3), [B, Hkv, T, hd]);
  const v = tf.tensor4d(values(B * Hkv * T * hd, 23), [B, Hkv, T, hd]);
  const dy = tf.tensor4d(values(B * H * T * hd, 24), [B, H, T, hd]);
  const pad = tf.tensor2d(Array.from({ length: B * T }, (_, i) => (i < 3 ? 0 : 1)), [B, T]);
  const bias = attentionBias(T, T, pad);
  const random = Math.random;
  const outputs: Float32Array[] = [];
  for (const dropout of [0, 0.3]) {
    const run = () =>
      tf.tidy(() => {
        let seed = 1;
        Math.random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647); // tf.dropout's unseeded draws, the same in both runs
        try {
          const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => attention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, { bias, dropout, training: true });
          const { value, grads } = tf.valueAndGrads(f)([q, k, v], dy);
          return [value, ...grads].map((t) => t.dataSync().slice() as Float32Array);
        } finally {
          Math.random = random;
        }
      });
    const before = tf.memory().numTensors;
    const [native, tfjs] = nativeAndTfjs(run);
    assert.equal(tf.memory().numTensors, before, 'no leaked tensors');
    native.forEach((a, i) => assert.deepEqual(a, tfjs[i], `dropout ${dropout}, ${['y', 'dq', 'dk', 'dv'][i]}: as the chain`));
    outputs.push(native[0]);
  }
  assert.ok(outputs[1].some((a, j) => Math.abs(a - outputs[0][j]) > 1e-3), 'dropout 0.3 changes the output (the masks were applied)');
  tf.dispose([q, k, v, dy, pad, bias]);
});

test('siluMul: silu(gate) * up and dgate, dup bit for bit as tf.mul(silu(gate), up) (the sigmoid as tf.sigmoid), within 1e-6 of float64; no leaks', opts, () => {
  const n = [3, 1367]; // not a multiple of any vector width
  const gate = tf.tensor2d(values(n[0] * n[1], 31).map((v) => v * 8), n as [number, number]);
  const up = tf.tensor2d(values(n[0] * n[1], 32).map((v) => v * 2), n as [number, number]);
  const dy = tf.tensor2d(values(n[0] * n[1], 33), n as [number, number]);
  const probe = siluMulNative(gate, up);
  assert.ok(probe !== null, 'the addon runs the SwiGLU pass');
  probe.dispose();
  const run = (f: (g: tf.Tensor, u: tf.Tensor) => tf.Tensor) =>
    tf.tidy(() => {
      const { value, grads } = tf.valueAndGrads(f)([gate, up], dy);
      return [value, ...grads].map((t) => t.dataSync().slice() as Float32Array);
    });
  const before = tf.memory().numTensors;
  const [native, tfjs] = nativeAndTfjs(() => run(siluMul));
  assert.equal(tf.memory().numTensors, before, 'no leaked tensors');
  assert.deepEqual(native, tfjs, 'value, dgate, dup as the tfjs chain');
  assert.deepEqual(native, run((g, u) => tf.mul(silu(g), u)), 'and as the chain with the native SiLU gradient');
  const [G, U, D] = [gate, up, dy].map((t) => t.dataSync());
  let worst = 0;
  for (let i = 0; i < G.length; i++) {
    const s = 1 / (1 + Math.exp(-G[i]));
    const want = [G[i] * s * U[i], D[i] * U[i] * s * (1 + G[i] * (1 - s)), D[i] * G[i] * s];
    for (let k = 0; k < 3; k++) worst = Math.max(worst, Math.abs(native[k][i] - want[k]) / Math.max(1, Math.abs(want[k])));
  }
  assert.ok(worst <= 1e-6, `vs float64 ${worst}`);
  // the sigmoid inside the pass is the wasm Sigmoid kernel's, also at its edges (0, -0, +-inf, NaN, the cutoff, denormal results)
  const edges = tf.tensor2d([0, -0, Infinity, -Infinity, NaN, 87, -87, 87.34, -87.34, 88, -88, 1e-30, -1e-30, 20, -20, 104, -104], [1, 17]);
  const ones = tf.onesLike(edges);
  const edgeRun = () =>
    tf.tidy(() => {
      const { value, grads } = tf.valueAndGrads((g: tf.Tensor, u: tf.Tensor) => siluMul(g, u))([edges, ones], ones);
      return [value, ...grads].map((t) => t.dataSync().slice() as Float32Array);
    });
  const [fused, chain] = nativeAndTfjs(edgeRun);
  assert.deepEqual(fused, chain, 'edge values and their gradients as the chain');
  tf.dispose([edges, ones]);
  // without a tape (generation): the forward alone, the same values
  assert.deepEqual(tf.tidy(() => siluMul(gate, up).dataSync().slice()), native[0]);
  const narrower = up.slice([0, 0], [3, 1366]);
  assert.equal(siluMulNative(gate, narrower), null, 'different shapes: the chain');
  tf.dispose([gate, up, dy, narrower]);
});

test('geluTanh in one pass: value and gradient bit for bit as its tfjs chain (and as the chain with the activation passes), edges included; no leaks', opts, () => {
  const x = tf.tensor2d([...values(4099, 41).map((v) => v * 7), 0, -0, Infinity, -Infinity, NaN, 10, -10, 40, -40, 1e-30], [1, 4109]);
  const dy = tf.tensor2d(values(4109, 42), [1, 4109]);
  const probe = geluNative(x, 0.044715, 1, 1);
  assert.ok(probe !== null, 'the addon runs the GELU pass');
  probe.dispose();
  const run = () =>
    tf.tidy(() => {
      const { value, grads } = tf.valueAndGrads((a: tf.Tensor) => geluTanh(a))([x], dy);
      return [value, grads[0]].map((t) => t.dataSync().slice() as Float32Array);
    });
  const before = tf.memory().numTensors;
  const [fused, chain] = nativeAndTfjs(run);
  assert.equal(tf.memory().numTensors, before, 'no leaked tensors');
  assert.deepEqual(fused, chain, 'value and gradient as the tfjs chain');
  assert.deepEqual(tf.tidy(() => geluTanh(x).dataSync().slice() as Float32Array), fused[0], 'without a tape: the same values');
  const X = x.dataSync();
  let worst = 0;
  const c = Math.sqrt(2 / Math.PI);
  for (let i = 0; i < 4099; i++) {
    const v = X[i];
    const want = 0.5 * v * (1 + Math.tanh(c * (v + 0.044715 * v ** 3)));
    worst = Math.max(worst, Math.abs(fused[0][i] - want) / Math.max(1, Math.abs(want)));
  }
  assert.ok(worst <= 1e-5, `vs float64 ${worst}`);
  tf.dispose([x, dy]);
});

test('VLM_NATIVE_FUSED=0 (and VLM_NATIVE_ATTN_MLP=0) turns the fused attention softmax, SwiGLU product and GELU off (the chains run)', opts, () => {
  const x = tf.ones([1, 1, 2, 2]);
  const prev = process.env.VLM_NATIVE_FUSED;
  process.env.VLM_NATIVE_FUSED = '0';
  try {
    assert.equal(scaledSoftmaxNative(x, 1, null), null);
    assert.equal(fusedAttentionActive(), false, 'the memory estimate counts the chain\'s tape');
    assert.equal(siluMulNative(x, x), null);
    assert.equal(geluNative(x, 1, 1, 1), null);
  } finally {
    if (prev === undefined) delete process.env.VLM_NATIVE_FUSED;
    else process.env.VLM_NATIVE_FUSED = prev;
  }
  process.env.VLM_NATIVE_ATTN_MLP = '0'; // these three alone
  try {
    assert.equal(scaledSoftmaxNative(x, 1, null), null);
    assert.equal(siluMulNative(x, x), null);
    assert.equal(geluNative(x, 1, 1, 1), null);
  } finally {
    delete process.env.VLM_NATIVE_ATTN_MLP;
  }
  const mask = tf.fill([1, 1, 2, 2], FLOAT32_MIN);
  const y = scaledSoftmaxNative(x, 1, mask);
  assert.ok(y !== null, 'on again');
  assert.deepEqual(Array.from(y.dataSync()), [0.5, 0.5, 0.5, 0.5]);
  tf.dispose([x, y, mask]);
});

test('the memory estimate counts 2 fewer length^2 tensors a head with the fused softmax (what its tape no longer keeps)', opts, () => {
  assert.equal(fusedAttentionActive(), true);
  const c = VLM_CONFIG_DEFAULTS as unknown as ShapeConfig;
  const base = { batchSize: 2, totalParams: 1, trainableParams: 1, largestParam: 1, checkpoint: false, optimizerState: { backend: 0, host: 0 } };
  const chain = estimateTrainingMemory(c, base).activations;
  const fused = estimateTrainingMemory(c, { ...base, fusedAttention: true }).activations;
  const Tv = (c.vit_img_size / c.vit_patch_size) ** 2;
  const Tl = Tv / c.mp_pixel_shuffle_factor ** 2 + c.lm_max_length;
  const perHead = (T: number, heads: number, blocks: number) => 2 * 4 * blocks * heads * T * T * base.batchSize;
  assert.equal(chain - fused, perHead(Tv, c.vit_n_heads, c.vit_n_blocks) + perHead(Tl, c.lm_n_heads, c.lm_n_blocks));
});

test('a model with LoRA on gate_proj / up_proj / fc1: loss and every adapter gradient bit for bit with and without the three passes', opts, async () => {
  const model = await tinyModel(3);
  await attachAdapters(model, [{ use: 'lora', r: 4, alpha: 8, targets: ['decoder.*.mlp.gate_proj', 'decoder.*.mlp.up_proj', 'vision_encoder.*.mlp.fc1'] }], new Registry([lora]), { recipe: {}, recipeDir: process.cwd(), seed: 0, log: silentLog });
  const adapterVars = [...model.adapterParams()];
  assert.ok(adapterVars.length >= 4, 'adapters attached');
  const batch = tensorsOf(randomHostBatch(2, 5));
  // LoRA B starts at zero: give it values, so that the adapters change gate and up
  adapterVars.forEach((v, i) => v.assign(tf.tidy(() => tf.randomNormal(v.shape, 0, 0.05, 'float32', i + 1))));
  const run = () => {
    const { value, grads } = tf.variableGrads(() => model.trainingLoss(batch), adapterVars);
    const out = [value.dataSync().slice() as Float32Array, ...adapterVars.map((v) => grads[v.name].dataSync().slice() as Float32Array)];
    tf.dispose([value, ...Object.values(grads)]);
    return out;
  };
  const prev = process.env.VLM_NATIVE_ATTN_MLP;
  assert.ok(fusedAttentionActive(), 'the passes run on the first side');
  const fused = run();
  process.env.VLM_NATIVE_ATTN_MLP = '0';
  let chain: Float32Array[];
  try {
    chain = run();
  } finally {
    if (prev === undefined) delete process.env.VLM_NATIVE_ATTN_MLP;
    else process.env.VLM_NATIVE_ATTN_MLP = prev;
  }
  assert.deepEqual(fused, chain);
  assert.ok(fused.slice(1).every((g) => g.some((v) => v !== 0)), 'every adapter gets a gradient');
  tf.dispose([batch.images, batch.inputIds, batch.targets, batch.attentionMask!]);
  model.dispose();
});
