// `npx tsx bench/soak.ts [--steps 10000] [--every 250] [--recipe recipes/bench/tiny.yaml] [--threads n]`
// The long run of issue 8: N training steps of `tiny` (forward, loss, backward, clipping, AdamW
// on the benchmark batch), sampling RSS and the live tensor count every --every steps, then
// asserting that memory is constant: the tensor count and tfjs bytes never change after the
// first step, and RSS over the second half grows by less than --rss-slack MiB (default 32)
// compared with its first sample after warm-up (RSS sampled after a forced GC). Exit code 0 = flat, 1 = growth (printed).
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';
import * as tf from '@tensorflow/tfjs';
import { buildComponents } from '../core/build.ts';
import { benchBatch, createOptimizer, trainStep } from '../core/commands/bench.ts';
import { consoleLogger } from '../core/cli.ts';
import { resolveRecipe } from '../core/recipe/index.ts';
import { createRegistry } from '../core/registry.ts';
import { describeRuntime, initRuntime, type BackendChoice } from '../core/runtime.ts';
import builtins from '../plugins/index.ts';

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
const log = consoleLogger(false);
const registry = createRegistry(builtins);
const r = await resolveRecipe(file, { registry });
const rt = await initRuntime(values.backend as BackendChoice, { threads: Number(values.threads) });
log.info(describeRuntime(rt));
const seed = r.data.runtime?.seed ?? 0;
const { model } = await buildComponents(r.data, registry, { recipe: r.data, recipeDir: r.dir, seed, log });
const optimizer = await createOptimizer(r.data, r.dir, model, registry, log);
const host = benchBatch(model, r.data.train?.batch_size ?? 3, seed);
const mib = (b: number) => b / 2 ** 20;
// RSS is sampled after a full GC: without it the JS heap's sawtooth (+-100 MiB) hides any trend
v8.setFlagsFromString('--expose_gc');
const gc = vm.runInNewContext('gc') as () => void;

trainStep(model, optimizer, host, { maxGradNorm: 1, timeForward: false });
const first = tf.memory();
const samples: { step: number; rss: number; tensors: number; bytes: number; ms: number }[] = [];
let t = performance.now();
console.log('step      rss MiB  tensors  tfjs MiB  ms/step');
for (let i = 2; i <= steps; i++) {
  trainStep(model, optimizer, host, { maxGradNorm: 1, timeForward: false });
  if (i % every === 0 || i === steps) {
    const now = performance.now();
    gc();
    const m = tf.memory();
    const s = { step: i, rss: process.memoryUsage().rss, tensors: m.numTensors, bytes: m.numBytes, ms: (now - t) / every };
    t = now;
    samples.push(s);
    console.log(`${String(i).padEnd(8)} ${mib(s.rss).toFixed(1).padStart(8)} ${String(s.tensors).padStart(8)} ${mib(s.bytes).toFixed(2).padStart(9)} ${s.ms.toFixed(1).padStart(8)}`);
  }
}
const problems: string[] = [];
const tensorDrift = samples.filter((s) => s.tensors !== first.numTensors || s.bytes !== first.numBytes);
if (tensorDrift.length) problems.push(`live tensors/bytes changed: first ${first.numTensors}/${first.numBytes}, then ${tensorDrift.map((s) => `${s.step}: ${s.tensors}/${s.bytes}`).slice(0, 5).join(', ')}`);
// RSS: warm-up (allocator and JIT settle) is the first quarter; compare the rest with its first sample
const settled = samples.slice(Math.floor(samples.length / 4));
if (settled.length >= 2) {
  const base = settled[0].rss;
  const maxRss = Math.max(...settled.map((s) => s.rss));
  const growth = mib(maxRss - base);
  console.log(`RSS after warm-up: ${mib(base).toFixed(1)} MiB, max ${mib(maxRss).toFixed(1)} MiB (+${growth.toFixed(1)} MiB); live tensors ${first.numTensors} throughout: ${tensorDrift.length === 0}`);
  if (growth > Number(values['rss-slack'])) problems.push(`RSS grew by ${growth.toFixed(1)} MiB after warm-up (slack ${values['rss-slack']} MiB)`);
}
optimizer.dispose();
model.dispose();
if (problems.length) {
  console.error('NOT FLAT:\n  ' + problems.join('\n  '));
  process.exitCode = 1;
} else {
  console.log(`flat: ${steps} steps`);
}
