// `npx tsx bench/native-direct.ts [recipe] [--threads n] [--rounds 15]`: what the addon functions
// called directly (core/kernels/native-direct.ts: fused AdamW, gradient norm, generation's
// one-token products) buy, measured A/B in ONE process: each round times the same work with them
// and with VLM_NATIVE_DIRECT=0 (the tfjs kernels, native products in both), alternating, so that
// both sides see the same load on a shared machine. CPU ms (process.cpuUsage) and wall ms,
// medians over the rounds, for: the AdamW step over every parameter (moments on the backend, and
// on the host: adamw host_state, as the 222M recipe trains), the global gradient norm,
// one training step (trainStep, as `vlm bench`), and greedy generation of 32 tokens with the KV
// cache (one row, prefill included). Also checks that both sides give the same parameters and tokens.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { abRows, switchTimed } from './ab.ts';
import { benchSetup } from './setup.ts';
import { buildOptimizer } from '../core/build.ts';
import { generate } from '../core/generate.ts';
import { globalNorm } from '../core/train/grads.ts';
import { trainStep } from '../core/train/step.ts';
import { nativeMatMulStatus } from '../core/kernels/native-matmul.ts';
import { nativeOptimizerActive } from '../core/kernels/native-direct.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { threads: { type: 'string', default: '1' }, rounds: { type: 'string', default: '15' } } });
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const file = resolve(positionals[0] ?? join(root, 'recipes', 'bench', 'small.yaml'));
const { model, optimizer, host, recipe, registry, seed, log } = await benchSetup(file, { backend: 'wasm', threads: Number(values.threads), defaultBatch: 8 });
if (!nativeOptimizerActive()) {
  console.error(`the native addon is not in use: ${nativeMatMulStatus()}`);
  process.exit(1);
}
const load = () => os.loadavg().map((l) => l.toFixed(1)).join(' ');
const loadBefore = load();

const trainable = optimizer.groups.flatMap((g) => g.params);
const grads = new Map(trainable.map((n) => [n, tf.randomNormal(model.params.get(n)!.shape, 0, 1e-3, 'float32', 7)]));
const lrs = optimizer.groups.map((g) => g.lr);
// the same optimizer with its moments in host memory (a second set of moments, over the same parameters)
const hostRecipe = { ...recipe.data, optimizer: { ...recipe.data.optimizer, host_state: true } };
const { optimizer: hostOptimizer } = await buildOptimizer(hostRecipe, registry, { recipe: hostRecipe, recipeDir: recipe.dir, seed, log }, model);
const T = host.seqLen;
const S = host.imageSize;
const ids = tf.tensor2d(host.inputIds.subarray(T, 2 * T), [1, T], 'int32');
const img = tf.tensor4d(host.images.subarray(3 * S * S, 6 * S * S), [1, 3, S, S]);

const work: [string, () => unknown][] = [
  ['AdamW step (all parameters)', () => tf.tidy(() => optimizer.step(grads, lrs))],
  ['AdamW step, host_state moments', () => tf.tidy(() => hostOptimizer.step(grads, lrs))],
  ['gradient norm', () => tf.tidy(() => globalNorm(grads).dataSync())],
  ['training step', () => trainStep(model, optimizer, [host], { maxGradNorm: null })],
  ['generation, 32 tokens (KV cache)', () => generate(model, { inputIds: ids, images: img }, { maxNewTokens: 32, greedy: true, stopAtEos: false })],
];

/** the work with (true) or without the direct calls; returns [CPU ms, wall ms, result] */
const timed = (direct: boolean, f: () => unknown) => switchTimed('VLM_NATIVE_DIRECT', direct, f);

// same numbers on both sides: AdamW from the same state, and the generated tokens
{
  const before = new Map([...model.params].map(([n, p]) => [n, p.clone()]));
  const state = optimizer.state();
  const saved = { step: state.step, tensors: new Map([...state.tensors].map(([k, t]) => [k, (t as tf.Tensor).clone()])) };
  await timed(true, () => tf.tidy(() => optimizer.step(grads, lrs)));
  const withDirect = new Map([...model.params].map(([n, p]) => [n, p.dataSync().slice()]));
  for (const [n, p] of model.params) p.assign(before.get(n)!);
  optimizer.loadState(saved);
  await timed(false, () => tf.tidy(() => optimizer.step(grads, lrs)));
  for (const [n, p] of model.params) if (!p.dataSync().every((x, i) => x === withDirect.get(n)![i])) throw new Error(`AdamW differs on ${n}`);
  tf.dispose([...before.values(), ...saved.tensors.values()]);
  const gen = work.find(([l]) => l.startsWith('generation'))![1];
  const [, , a] = await timed(true, gen);
  const [, , b] = await timed(false, gen);
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error('generated tokens differ');
}

const rounds = Number(values.rounds);
const rows = await abRows('VLM_NATIVE_DIRECT', work, rounds);
console.log(`${file.replace(root + '/', '')} · ${nativeMatMulStatus()} · OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'} · ${rounds} rounds · load ${loadBefore} → ${load()} · ${new Date().toISOString()}`);
console.log('AdamW results and generated tokens identical with and without the direct calls.');
console.log('| work | CPU ms, direct | CPU ms, tfjs kernels (VLM_NATIVE_DIRECT=0) | speed-up (CPU) | wall ms, direct | wall ms, tfjs kernels |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const r of rows) console.log(r);
