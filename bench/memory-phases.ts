// `npx tsx bench/memory-phases.ts [recipe] [--steps n] [--no-generate] [--gc]`: what the process
// memory of the benchmark (core/commands/bench.ts) consists of, phase by phase (the training step is
// core/train/step.ts trainStep, sampled at its phase boundaries). After each phase:
// RSS now, the process high-water mark (ru_maxrss, what the PyTorch reference reports), the wasm
// heap size (WebAssembly.Memory: it only grows), live tfjs tensor bytes, the JS heap in use and
// external / ArrayBuffer memory (V8). `--gc` (needs node --expose-gc: `node --expose-gc --import tsx
// bench/memory-phases.ts`) collects garbage before each sample. Default recipe: recipes/bench/small.yaml.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const mark0 = process.memoryUsage().rss; // node + the tsx loader
const tf = await import('@tensorflow/tfjs');
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    steps: { type: 'string', default: '3' },
    'no-generate': { type: 'boolean', default: false },
    'no-profile': { type: 'boolean', default: false },
    gc: { type: 'boolean', default: false },
    threads: { type: 'string', default: '1' },
  },
});
const { buildComponents } = await import('../core/build.ts');
const { buildOptimizer } = await import('../core/build.ts');
const { benchBatch, forwardOnly, timedStep, gradClip } = await import('../core/benchmark.ts');
const { trainStep } = await import('../core/train/step.ts');
type StepPhase = import('../core/train/step.ts').StepPhase;
const { consoleLogger } = await import('../core/cli.ts');
const { generate } = await import('../core/generate.ts');
const { resolveRecipe } = await import('../core/recipe/index.ts');
const { createRegistry } = await import('../core/registry.ts');
const { initRuntime } = await import('../core/runtime.ts');
const builtins = (await import('../plugins/index.ts')).default;

const MiB = (b: number) => (b / 2 ** 20).toFixed(0).padStart(6);
const gc = (globalThis as { gc?: () => void }).gc;
function wasmHeap(): number {
  if (tf.getBackend() !== 'wasm') return 0;
  const w = (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm;
  return w.HEAPU8.buffer.byteLength;
}
console.log(`${'phase'.padEnd(34)} ${'rss'.padStart(6)} ${'maxrss'.padStart(6)} ${'wasm'.padStart(6)} ${'tfjs'.padStart(6)} ${'jsheap'.padStart(6)} ${'extern'.padStart(6)} ${'arrbuf'.padStart(6)}  (MiB)`);
function phase(name: string): void {
  if (values.gc && gc) gc();
  const m = process.memoryUsage();
  const max = process.resourceUsage().maxRSS * 1024;
  const tfb = tf.getBackend() ? tf.memory().numBytes : 0;
  console.log(`${name.padEnd(34)} ${MiB(m.rss)} ${MiB(max)} ${MiB(wasmHeap())} ${MiB(tfb)} ${MiB(m.heapUsed)} ${MiB(m.external)} ${MiB(m.arrayBuffers)}`);
}
console.log(`${'node + tsx, before imports'.padEnd(34)} ${MiB(mark0)}`);
phase('imports (tfjs, plugins, sharp...)');
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const file = resolve(positionals[0] ?? join(root, 'recipes', 'bench', 'small.yaml'));
const log = consoleLogger(false);
const registry = createRegistry(builtins);
const r = await resolveRecipe(file, { registry });
await initRuntime('wasm', { threads: Number(values.threads) });
phase('wasm backend ready');
const seed = r.data.runtime?.seed ?? 0;
const { model } = await buildComponents(r.data, registry, { recipe: r.data, recipeDir: r.dir, seed, log });
phase('model built');
const { optimizer } = await buildOptimizer(r.data, registry, { recipe: r.data, recipeDir: r.dir, seed, log }, model);
const host = benchBatch(model, r.data.train?.batch_size ?? 8, seed);
phase('optimizer + host batch');
const maxGradNorm = gradClip(r.data);
await forwardOnly(model, host);
phase('forward-only pass');
// step 1: the one training step (core/train/step.ts, as vlm bench / vlm memory / the train stage),
// sampled at its phase boundaries while the gradients are alive
const during: Partial<Record<StepPhase, string>> = { backward: 'forward + backward (grads live)', update: 'optimizer step 1 (grads live)' };
await trainStep(model, optimizer, [host], { maxGradNorm, mark: (p) => during[p] && phase(during[p]) });
phase('step 1 done');
for (let i = 1; i < Number(values.steps); i++) {
  await timedStep(model, optimizer, host, { maxGradNorm, timeForward: true });
  phase(`step ${i + 1} (with forward-only)`);
}
if (!values['no-profile']) {
  await tf.profile(async () => void (await timedStep(model, optimizer, host, { maxGradNorm, timeForward: false })));
  phase('tf.profile step');
}
if (!values['no-generate']) {
  const T = host.seqLen;
  const S = host.imageSize;
  const ids = tf.tensor2d(host.inputIds.subarray(T, 2 * T), [1, T], 'int32');
  const img = tf.tensor4d(host.images.subarray(3 * S * S, 6 * S * S), [1, 3, S, S]);
  await generate(model, { inputIds: ids, images: img }, { maxNewTokens: 32, greedy: true, useCache: true, stopAtEos: false });
  phase('generate 32, KV cache');
  await generate(model, { inputIds: ids, images: img }, { maxNewTokens: 32, greedy: true, useCache: false, stopAtEos: false });
  phase('generate 32, no cache');
  tf.dispose([ids, img]);
}
optimizer.dispose();
model.dispose();
phase('disposed');
