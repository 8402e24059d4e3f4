// `npx tsx bench/fused-ops.ts [--rounds 40] [--steps 10]`: the fused attention softmax (core/ops.ts
// attention: scores / sqrt(hd) + mask, softmax; native/blas.cc scaledSoftmax), the decoder MLP's
// silu(gate) * up (core/ops.ts siluMul; native/blas.cc siluMul) and the ViT MLP's GELU (core/ops.ts
// geluTanh; native/blas.cc gelu), forward and backward at the shapes of bench `small`, A/B in ONE
// process: each round times it with the addon pass and with VLM_NATIVE_FUSED=0 (the tfjs chain),
// alternating, so that both sides see the same load on a shared machine. Prints the minimum and
// median wall ms per call of each side, and checks that both give the same numbers. Then one
// `small` training step (trainStep, as `vlm bench`), CPU and wall ms, with these three passes and
// with VLM_NATIVE_ATTN_MLP=0 (only they off, every other pass native), alternating.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { benchSetup } from './setup.ts';
import { trainStep } from '../core/train/step.ts';
import { installFastKernels } from '../core/kernels/index.ts';
import { nativeMatMulStatus } from '../core/kernels/native-matmul.ts';
import { attentionBias, geluTanh, silu, siluMul } from '../core/ops.ts';
import { scaledSoftmaxNative } from '../core/kernels/native-direct.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '40' }, steps: { type: 'string', default: '10' } } });
await tf.setBackend('wasm');
await tf.ready();
installFastKernels('wasm');
const load = () => os.loadavg().map((l) => l.toFixed(1)).join(' ');
const loadBefore = load();

// `small`'s decoder attention: scores [B, H, T, T] with the causal + padding mask [B, 1, T, T]
const [B, H, T, hd] = [8, 4, 80, 64];
const x = tf.randomNormal([B, H, T, T], 0, 4);
const dy = tf.randomNormal([B, H, T, T]);
const pad = tf.tensor2d(Array.from({ length: B * T }, (_, i) => (i % T < 4 ? 0 : 1)), [B, T]);
const bias = attentionBias(T, T, pad);
const softmaxOf = (a: tf.Tensor) => scaledSoftmaxNative(a, Math.sqrt(hd), bias) ?? tf.softmax(tf.add(tf.div(a, Math.sqrt(hd)), bias));

/** the values of the tensor f makes (read outside tf.tidy: a tidy walks every element of an array it returns) */
const read = (f: () => tf.Tensor) => () => {
  const t = tf.tidy(f);
  const v = t.dataSync() as Float32Array;
  t.dispose();
  return v;
};
const inter = 768; // both MLPs' inner width in `small`
// `small`'s ViT MLP: fc1's output [B, patches, inter] through GELU
const h = tf.randomNormal([B, 64, inter], 0, 2);
const dh = tf.randomNormal([B, 64, inter]);
// `small`'s decoder MLP: gate, up [B, T, inter]
const gate = tf.randomNormal([B, T, inter], 0, 2);
const up = tf.randomNormal([B, T, inter]);
const dm = tf.randomNormal([B, T, inter]);
const work: [string, () => Float32Array][] = [
  [`attention softmax forward [${B}, ${H}, ${T}, ${T}]`, read(() => softmaxOf(x))],
  [`attention softmax forward + backward [${B}, ${H}, ${T}, ${T}]`, read(() => tf.grads(softmaxOf)([x], dy)[0])],
  [`silu(gate) * up forward [${B}, ${T}, ${inter}]`, read(() => siluMul(gate, up))],
  [`silu(gate) * up forward + backward (dgate, dup) [${B}, ${T}, ${inter}]`, read(() => tf.concat(tf.grads(siluMul)([gate, up], dm)))],
  [`geluTanh forward [${B}, 64, ${inter}]`, read(() => geluTanh(h))],
  [`geluTanh forward + backward [${B}, 64, ${inter}]`, read(() => tf.grads(geluTanh)([h], dh)[0])],
  // the path before siluMul: tf.mul(silu(gate), up), its SiLU gradient fused (activation kind 2) on the left side
  [`tf.mul(silu(gate), up) forward + backward [${B}, ${T}, ${inter}]`, read(() => tf.concat(tf.grads((g: tf.Tensor, u: tf.Tensor) => tf.mul(silu(g), u))([gate, up], dm)))],
];

function timed(fused: boolean, f: () => Float32Array): [number, Float32Array] {
  if (fused) delete process.env.VLM_NATIVE_FUSED;
  else process.env.VLM_NATIVE_FUSED = '0';
  const t0 = performance.now();
  const r = f();
  const ms = performance.now() - t0;
  delete process.env.VLM_NATIVE_FUSED;
  return [ms, r];
}

const rounds = Number(values.rounds);
const med = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
const rows: string[] = [];
for (const [label, f] of work) {
  const [, a] = timed(true, f);
  const [, b] = timed(false, f);
  if (!a.every((v, i) => Object.is(v, b[i]))) throw new Error(`${label}: the fused pass and the chain differ`);
  const ms: [number[], number[]] = [[], []];
  for (let r = 0; r < rounds; r++) for (const side of [0, 1]) ms[side].push(timed(side === 0, f)[0]);
  rows.push(`| ${label} | ${Math.min(...ms[0]).toFixed(2)} / ${med(ms[0]).toFixed(2)} | ${Math.min(...ms[1]).toFixed(2)} / ${med(ms[1]).toFixed(2)} | ${(med(ms[1]) / med(ms[0])).toFixed(2)}× |`);
}
// one training step of `small`, the three passes on / off (VLM_NATIVE_ATTN_MLP=0), alternating
tf.dispose([x, dy, pad, bias, gate, up, dm, h, dh]);
const { model, optimizer, host } = await benchSetup(join(dirname(fileURLToPath(import.meta.url)), '..', 'recipes', 'bench', 'small.yaml'), { backend: 'wasm', threads: 1, defaultBatch: 8 });
const step = async (on: boolean): Promise<[number, number]> => {
  if (on) delete process.env.VLM_NATIVE_ATTN_MLP;
  else process.env.VLM_NATIVE_ATTN_MLP = '0';
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await trainStep(model, optimizer, [host], { maxGradNorm: 1 });
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  delete process.env.VLM_NATIVE_ATTN_MLP;
  return [(c.user + c.system) / 1000, wall];
};
for (const on of [true, false, true, false]) await step(on); // warm-up of both
const cpu: [number[], number[]] = [[], []];
const wall: [number[], number[]] = [[], []];
for (let r = 0; r < Number(values.steps); r++)
  for (const side of [0, 1]) {
    const [c, w] = await step(side === 0);
    cpu[side].push(c);
    wall[side].push(w);
  }
rows.push(`| one \`small\` training step: CPU ms | ${Math.min(...cpu[0]).toFixed(0)} / ${med(cpu[0]).toFixed(0)} | ${Math.min(...cpu[1]).toFixed(0)} / ${med(cpu[1]).toFixed(0)} (VLM_NATIVE_ATTN_MLP=0) | ${(med(cpu[1]) / med(cpu[0])).toFixed(2)}× |`);
rows.push(`| one \`small\` training step: wall ms | ${Math.min(...wall[0]).toFixed(0)} / ${med(wall[0]).toFixed(0)} | ${Math.min(...wall[1]).toFixed(0)} / ${med(wall[1]).toFixed(0)} (VLM_NATIVE_ATTN_MLP=0) | ${(med(wall[1]) / med(wall[0])).toFixed(2)}× |`);
optimizer.dispose();
model.dispose();
console.log(`${nativeMatMulStatus()} · ${rounds} rounds · load ${loadBefore} → ${load()} · ${new Date().toISOString()}`);
console.log('Results identical (bit for bit) with the fused passes and with the tfjs chains.');
console.log('| work | fused ms, min / median | tfjs chain ms (VLM_NATIVE_FUSED=0), min / median | speed-up (median) |');
console.log('|---|---:|---:|---:|');
for (const r of rows) console.log(r);
