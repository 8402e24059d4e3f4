// `npx tsx bench/profile.ts [recipe] [--threads n] [--top n] [--shapes]`: where the time of one
// training step goes, per tfjs kernel (tf.profile; kernel wall time on the CPU backends), for a
// recipe's model on the benchmark batch (core/commands/bench.ts). Default recipe: recipes/bench/small.yaml.
// Also: generation with the KV cache, per kernel (--generate); --bytes ranks kernels by the
// tensor bytes their outputs add instead of time (what fills memory during a step).
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { trainStep } from '../core/train/step.ts';
import { benchSetup } from './setup.ts';
import { generate } from '../core/generate.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    threads: { type: 'string', default: '1' },
    backend: { type: 'string', default: 'wasm' },
    top: { type: 'string', default: '25' },
    shapes: { type: 'boolean', default: false },
    generate: { type: 'boolean', default: false },
    bytes: { type: 'boolean', default: false },
  },
});
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const file = resolve(positionals[0] ?? join(root, 'recipes', 'bench', 'small.yaml'));
const { model, optimizer, host } = await benchSetup(file, { backend: values.backend!, threads: Number(values.threads), defaultBatch: 8 });

let work: () => void | Promise<void>;
if (values.generate) {
  const T = host.seqLen;
  const S = host.imageSize;
  const ids = tf.tensor2d(host.inputIds.subarray(T, 2 * T), [1, T], 'int32');
  const img = tf.tensor4d(host.images.subarray(3 * S * S, 6 * S * S), [1, 3, S, S]);
  work = async () => void (await generate(model, { inputIds: ids, images: img }, { maxNewTokens: 32, greedy: true, stopAtEos: false }));
} else {
  work = async () => void (await trainStep(model, optimizer, [host], { maxGradNorm: 1 }));
}
await work();
await work();
const t0 = performance.now();
await work();
const wall = performance.now() - t0;
const prof = await tf.profile(work);
const by = new Map<string, { ms: number; n: number }>();
for (const k of prof.kernels) {
  const key = values.shapes ? `${k.name} ${JSON.stringify(k.inputShapes)}` : k.name;
  const e = by.get(key) ?? { ms: 0, n: 0 };
  e.ms += values.bytes ? k.bytesAdded / 2 ** 20 : (k.kernelTimeMs as number);
  e.n++;
  by.set(key, e);
}
const total = [...by.values()].reduce((a, e) => a + e.ms, 0);
console.log(`${values.generate ? 'generate 32 tokens (KV cache)' : 'training step'}: ${wall.toFixed(0)} ms wall (unprofiled), ${total.toFixed(0)} ms in ${prof.kernels.length} kernels (profiled)`);
if (values.bytes) console.log(`peak tfjs bytes of the step: ${(prof.peakBytes / 2 ** 20).toFixed(0)} MiB (the "ms" column below is MiB added)`);
console.log('kernel'.padEnd(values.shapes ? 70 : 28), (values.bytes ? 'MiB' : 'ms').padStart(9), '%'.padStart(6), 'calls'.padStart(7));
for (const [k, e] of [...by].sort((a, b) => b[1].ms - a[1].ms).slice(0, Number(values.top)))
  console.log(k.slice(0, values.shapes ? 70 : 28).padEnd(values.shapes ? 70 : 28), e.ms.toFixed(1).padStart(9), ((100 * e.ms) / total).toFixed(1).padStart(6), String(e.n).padStart(7));
optimizer.dispose();
model.dispose();
