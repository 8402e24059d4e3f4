// `npx tsx bench/kernels.ts [--rounds 15] [--iters 30] [--only Sum]`: the kernel replacements of
// core/kernels/ (reductions.ts, layout.ts, ...) against the stock tfjs-backend-wasm kernels they
// replace, per kernel and shape (the shapes of a `small` training step), A/B in ONE process:
// each round times `iters` calls of every variant (the stock kernel registered, then ours; for the
// kernels with a native pass also ours with VLM_NATIVE_FUSED=0, the JS path), alternating, so all
// variants see the same load on a shared machine. Prints the median ms per call (the tfjs op
// included: what a training step pays) and the load average before and after.
import { parseArgs } from 'node:util';
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { initRuntime } from '../core/runtime.ts';
import { originals } from '../core/kernels/wasm.ts';
import { nativeMatMulStatus } from '../core/kernels/native-matmul.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '15' }, iters: { type: 'string', default: '30' }, only: { type: 'string' } } });
await initRuntime('wasm', { threads: 1 });
const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');
console.log(nativeMatMulStatus());
const loadBefore = load();

type Variant = { name: string; enter: () => void };
const env = (k: string, v: string | undefined) => () => {
  if (v === undefined) delete process.env[k];
  else process.env[k] = v;
};
/** register `config` as the wasm kernel `kernel` */
function use(kernel: string, config: tf.KernelConfig): void {
  tf.unregisterKernel(kernel, 'wasm');
  tf.registerKernel(config);
}
function variants(kernel: string, native: boolean): Variant[] {
  const ours = tf.getKernel(kernel, 'wasm')!;
  const stock = originals.get(`${kernel}/wasm`);
  if (!stock) throw new Error(`${kernel}: no stock kernel saved (not replaced by installFastKernels?)`);
  const v: Variant[] = [
    { name: 'stock', enter: () => (use(kernel, stock), env('VLM_NATIVE_FUSED', undefined)()) },
    { name: native ? 'ours (native)' : 'ours', enter: () => (use(kernel, ours), env('VLM_NATIVE_FUSED', undefined)()) },
  ];
  if (native) v.push({ name: 'ours (JS, VLM_NATIVE_FUSED=0)', enter: () => (use(kernel, ours), env('VLM_NATIVE_FUSED', '0')()) });
  return v;
}

type Case = { kernel: string; what: string; native?: boolean; inputs: () => tf.Tensor[]; run: (xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[] };
const rnd = (shape: number[]) => () => [tf.randomNormal(shape, 0, 1, 'float32', 1)];
const CASES: Case[] = [
  { kernel: 'Sum', what: 'Sum [640,256] axis 0 (decoder bias / norm weight)', native: true, inputs: rnd([640, 256]), run: ([x]) => tf.sum(x, 0) },
  { kernel: 'Sum', what: 'Sum [512,192] axis 0 (ViT biases)', native: true, inputs: rnd([512, 192]), run: ([x]) => tf.sum(x, 0) },
  { kernel: 'Sum', what: 'Sum [512,768] axis 0 (ViT fc1 bias)', native: true, inputs: rnd([512, 768]), run: ([x]) => tf.sum(x, 0) },
  { kernel: 'Sum', what: 'Sum [8,80,256] axes 0,1', native: true, inputs: rnd([8, 80, 256]), run: ([x]) => tf.sum(x, [0, 1]) },
  { kernel: 'GatherV2', what: 'GatherV2 [4096,256] x [8,64] (token embedding)', inputs: () => [tf.randomNormal([4096, 256], 0, 1, 'float32', 1), tf.randomUniform([8, 64], 0, 4096, 'int32', 2)], run: ([x, i]) => tf.gather(x, i) },
  { kernel: 'GatherV2', what: 'GatherV2 [512,256] x [248]', inputs: () => [tf.randomNormal([512, 256], 0, 1, 'float32', 1), tf.randomUniform([248], 0, 512, 'int32', 2)], run: ([x, i]) => tf.gather(x, i) },
  { kernel: 'SplitV', what: 'SplitV [8,64,576] -> 3 x [8,64,192] (ViT qkv)', inputs: rnd([8, 64, 576]), run: ([x]) => tf.split(x, 3, -1) },
  { kernel: 'Concat', what: 'Concat 3 x [8,64,192] -> [8,64,576] (its gradient)', inputs: () => [0, 1, 2].map((s) => tf.randomNormal([8, 64, 192], 0, 1, 'float32', s)), run: (xs) => tf.concat(xs, -1) },
];

const rounds = Number(values.rounds);
const iters = Number(values.iters);
console.log(`${'case'.padEnd(52)} ${'variant'.padEnd(30)} ${'ms/call'.padStart(9)} ${'vs stock'.padStart(9)}`);
for (const c of CASES) {
  if (values.only && c.kernel !== values.only) continue;
  const xs = c.inputs();
  const vs = variants(c.kernel, !!c.native);
  const times = vs.map(() => [] as number[]);
  for (let r = 0; r < rounds + 1; r++)
    vs.forEach((v, i) => {
      v.enter();
      const t0 = performance.now();
      for (let k = 0; k < iters; k++) tf.dispose(c.run(xs));
      if (r > 0) times[i].push((performance.now() - t0) / iters); // round 0 warms up
    });
  vs[1].enter(); // leave ours registered
  const med = times.map((t) => t.sort((a, b) => a - b)[t.length >> 1]);
  vs.forEach((v, i) => console.log(`${(i === 0 ? c.what : '').padEnd(52)} ${v.name.padEnd(30)} ${med[i].toFixed(3).padStart(9)} ${(med[0] / med[i]).toFixed(2).padStart(8)}x`));
  tf.dispose(xs);
}
console.log(`load average (1/5/15 min): ${loadBefore} -> ${load()}`);
