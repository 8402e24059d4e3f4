// `npx tsx bench/soak.ts [--steps 10000] [--every 250] [--recipe recipes/bench/tiny.yaml] [--threads n]`
// The long run of issue 8: N training steps of `tiny` (forward, loss, backward, clipping, AdamW
// on the benchmark batch), sampling RSS and the live tensor count every --every steps, then
// asserting that memory is constant (every sample taken after a forced GC):
//   - live tensors and tfjs bytes never change after the first step;
//   - the wasm heap (which can only grow) does not grow after the first quarter;
//   - the JS heap in use, and RSS, set no new high-water mark in the second half above the
//     first half's by more than --rss-slack MiB (default 32): RSS moves up and down by tens of
//     MiB as V8 and the allocator hand pages back, so "flat" means "no upward trend".
// Exit code 0 = flat, 1 = growth (printed).
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';
import * as tf from '@tensorflow/tfjs';
import { trainStep } from '../core/train/step.ts';
import { benchSetup } from './setup.ts';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '10000' },
    every: { type: 'string', default: '250' },
    recipe: { type: 'string' },
    backend: { type: 'string', default: 'auto' },
    threads: { type: 'string', default: '1' },
    'rss-slack': { type: 'string', default: '32' },
  },
});
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const file = resolve(values.recipe ?? join(root, 'recipes', 'bench', 'tiny.yaml'));
const steps = Number(values.steps);
const every = Number(values.every);
const { model, optimizer, host } = await benchSetup(file, { backend: values.backend!, threads: Number(values.threads), defaultBatch: 3 });
const mib = (b: number) => b / 2 ** 20;
// RSS is sampled after a full GC: without it the JS heap's sawtooth (+-100 MiB) hides any trend
v8.setFlagsFromString('--expose_gc');
const gc = vm.runInNewContext('gc') as () => void;

await trainStep(model, optimizer, [host], { maxGradNorm: 1 });
const first = tf.memory();
const samples: { step: number; rss: number; heap: number; wasm: number; tensors: number; bytes: number; ms: number }[] = [];
const wasmHeap = () => ((tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } }).wasm?.HEAPU8.buffer.byteLength ?? 0);
let t = performance.now();
console.log('step      rss MiB  JS heap MiB  wasm heap MiB  tensors  tfjs MiB  ms/step');
for (let i = 2; i <= steps; i++) {
  await trainStep(model, optimizer, [host], { maxGradNorm: 1 });
  if (i % every === 0 || i === steps) {
    const now = performance.now();
    gc();
    const m = tf.memory();
    const mu = process.memoryUsage();
    const s = { step: i, rss: mu.rss, heap: mu.heapUsed, wasm: wasmHeap(), tensors: m.numTensors, bytes: m.numBytes, ms: (now - t) / every };
    t = performance.now();
    samples.push(s);
    console.log(
      `${String(i).padEnd(8)} ${mib(s.rss).toFixed(1).padStart(8)} ${mib(s.heap).toFixed(1).padStart(12)} ${mib(s.wasm).toFixed(1).padStart(14)} ` +
        `${String(s.tensors).padStart(8)} ${mib(s.bytes).toFixed(2).padStart(9)} ${s.ms.toFixed(1).padStart(8)}`,
    );
  }
}
const problems: string[] = [];
const tensorDrift = samples.filter((s) => s.tensors !== first.numTensors || s.bytes !== first.numBytes);
if (tensorDrift.length) problems.push(`live tensors/bytes changed: first ${first.numTensors}/${first.numBytes}, then ${tensorDrift.map((s) => `${s.step}: ${s.tensors}/${s.bytes}`).slice(0, 5).join(', ')}`);
// warm-up (allocator and JIT settle): the first quarter of the samples
const settled = samples.slice(Math.floor(samples.length / 4));
const slack = Number(values['rss-slack']);
if (settled.length >= 4) {
  const half = Math.floor(settled.length / 2);
  const [a, b] = [settled.slice(0, half), settled.slice(half)];
  const max = (xs: typeof samples, k: 'rss' | 'heap' | 'wasm') => Math.max(...xs.map((s) => s[k]));
  for (const [k, label] of [['rss', 'RSS'], ['heap', 'JS heap in use'], ['wasm', 'wasm heap']] as const) {
    const growth = mib(max(b, k) - max(a, k));
    console.log(`${label}: max ${mib(max(a, k)).toFixed(1)} MiB in the first half after warm-up, ${mib(max(b, k)).toFixed(1)} MiB in the second (${growth >= 0 ? '+' : ''}${growth.toFixed(1)})`);
    if (growth > (k === 'wasm' ? 0 : slack)) problems.push(`${label} rose by ${growth.toFixed(1)} MiB in the second half (slack ${k === 'wasm' ? 0 : slack} MiB)`);
  }
  console.log(`live tensors ${first.numTensors} throughout: ${tensorDrift.length === 0}`);
}
optimizer.dispose();
model.dispose();
if (problems.length) {
  console.error('NOT FLAT:\n  ' + problems.join('\n  '));
  process.exitCode = 1;
} else {
  console.log(`flat: ${steps} steps`);
}
