// Gradient clipping folded into the optimizer (issue 16: core/train/step.ts hands an optimizer that
// `takesGradScale` the clipping coefficient instead of multiplying every gradient by it): the
// host coefficient equals the tfjs chain's float32 value, and two clipped AdamW training steps give
// the same parameters bit for bit folded and unfolded, through each update path (the native addon,
// the tfjs kernels, host_state), with one Multiply kernel per gradient less.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../../helpers/backend.ts';
import { randomHostBatch, tinyModel } from '../../helpers/train.ts';
import { clipCoefficient } from '../../../core/train/grads.ts';
import { trainStep } from '../../../core/train/step.ts';
import { AdamW } from '../../../plugins/optimizer/adamw.ts';
import { installNativeMatMul, loadNativeBlas, nativeMatMulStatus } from '../../../core/kernels/native-matmul.ts';
import { nativeOptimizerActive } from '../../../core/kernels/native-direct.ts';

const backend = await useTestBackend();

test('clipCoefficient equals min(max_norm / (norm + 1e-6), 1) as the tfjs float32 chain computes it', () => {
  const norms = [0, 1e-7, 0.3, 0.999999, 1, 1.0000001, 1.000001, 2, Math.PI, 1e5, 123456.7, 3e38];
  for (let i = 0; i < 200; i++) norms.push(Math.fround(Math.exp(Math.sin(i * 12.9898) * 8)));
  for (const maxNorm of [1, 0.5, 7.3, 1e-3])
    for (const n of norms) {
      const norm = Math.fround(n);
      const chain = tf.tidy(() => tf.minimum(tf.div(maxNorm, tf.add(tf.scalar(norm), 1e-6)), 1).dataSync()[0]);
      assert.ok(Object.is(clipCoefficient(norm, maxNorm), chain), `norm ${norm}, max ${maxNorm}: ${clipCoefficient(norm, maxNorm)} vs ${chain}`);
    }
});

const GROUPS = [
  { name: 'MP', prefixes: ['MP'], lr: 2e-3 },
  { name: 'backbones', prefixes: ['vision_encoder', 'decoder'], lr: 1e-4 },
];

/** parameters after two clipped AdamW steps of a tiny model, folded or not, and the Multiply kernels of the second step */
async function twoSteps(fold: boolean, hostState: boolean): Promise<{ params: Map<string, Float32Array>; multiplies: number; grads: number }> {
  const model = await tinyModel(3);
  const opt = new AdamW(model.params, { weight_decay: 0.01, betas: [0.9, 0.999], eps: 1e-8, freeze: [], groups: GROUPS, host_state: hostState });
  if (!fold) Object.defineProperty(opt, 'takesGradScale', { value: false }); // as an optimizer without gradScale
  const batch = randomHostBatch(4, 11);
  const r = await trainStep(model, opt, [batch], { maxGradNorm: 0.05 });
  assert.ok(r && r.gradNorm > 0.05, `the step must clip (gradient norm ${r?.gradNorm})`);
  let grads = 0;
  const prof = await tf.profile(async () => {
    const r2 = await trainStep(model, opt, [batch], { maxGradNorm: 0.05 });
    assert.ok(r2 && r2.gradNorm > 0.05);
  });
  grads = opt.groups.flatMap((g) => g.params).length;
  const params = new Map([...model.params].map(([n, p]) => [n, Float32Array.from(p.dataSync())]));
  opt.dispose();
  model.dispose();
  return { params, multiplies: prof.kernels.filter((k) => k.name === 'Multiply').length, grads };
}

async function assertFoldedEqualsUnfolded(hostState: boolean, what: string): Promise<{ saved: number; grads: number }> {
  const before = tf.memory().numTensors;
  const folded = await twoSteps(true, hostState);
  const unfolded = await twoSteps(false, hostState);
  assert.equal(tf.memory().numTensors, before, `${what}: no leaked tensors`);
  for (const [n, a] of folded.params) {
    const b = unfolded.params.get(n)!;
    for (let i = 0; i < a.length; i++) assert.ok(Object.is(a[i], b[i]), `${what}: ${n}[${i}]: folded ${a[i]} vs unfolded ${b[i]}`);
  }
  return { saved: unfolded.multiplies - folded.multiplies, grads: folded.grads };
}

const addon = loadNativeBlas() as unknown as { adamwGradScale?: boolean } | null;
const nativeOpts =
  backend !== 'wasm'
    ? { skip: `native kernels are wasm-only (test backend is ${backend})` }
    : ['VLM_NATIVE_MATMUL', 'VLM_NATIVE_DIRECT', 'VLM_FAST_KERNELS'].some((k) => process.env[k] === '0')
      ? { skip: 'native kernels turned off in the environment' }
      : addon?.adamwGradScale || process.env.CI === 'true'
        ? {}
        : { skip: addon ? 'the native addon predates adamwStep gradScale: npm run build:native' : nativeMatMulStatus() };

test('clipping folded into the native AdamW: the same parameters bit for bit, one Multiply per gradient less', nativeOpts, async () => {
  installNativeMatMul('wasm');
  assert.ok(nativeOptimizerActive(), nativeMatMulStatus());
  for (const hostState of [false, true]) {
    const { saved, grads } = await assertFoldedEqualsUnfolded(hostState, `native, host_state ${hostState}`);
    assert.equal(saved, grads, `host_state ${hostState}: the clipping's Multiply per gradient is gone`);
  }
});

test('clipping folded into the tfjs AdamW paths (tensor moments, host_state): the same parameters bit for bit', async () => {
  process.env.VLM_NATIVE_DIRECT = '0';
  try {
    assert.ok(!nativeOptimizerActive());
    await assertFoldedEqualsUnfolded(false, 'tfjs kernels');
    await assertFoldedEqualsUnfolded(true, 'host_state');
  } finally {
    delete process.env.VLM_NATIVE_DIRECT;
  }
});
