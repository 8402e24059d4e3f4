// `npx tsx bench/native-norm.ts [recipe] [--threads n] [--rounds 15] [--switch VLM_NATIVE_NORM]`:
// what the fused RMSNorm / LayerNorm passes (core/kernels/native-direct.ts normNative, native/blas.cc
// norm / normGrad) buy, measured A/B in ONE process: each round times the same work with them and
// with the switch set to 0 (the tfjs chains; everything else native on both sides), alternating, so
// that both sides see the same load on a shared machine. CPU ms (process.cpuUsage) and wall ms,
// medians over the rounds, for: the decoder's RMSNorm [8, 80, 256] and the ViT's LayerNorm
// [8, 64, 192] (forward + dx, dw, db, 10 calls each: what one `small` step runs of each), and one
// training step (trainStep, as `vlm bench`). `--switch VLM_NATIVE_FUSED` measures every fused pass.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { abRows } from './ab.ts';
import { benchSetup } from './setup.ts';
import { trainStep } from '../core/train/step.ts';
import { nativeMatMulStatus } from '../core/kernels/native-matmul.ts';
import { normNative } from '../core/kernels/native-direct.ts';
import { layerNorm, rmsNorm } from '../core/ops.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { threads: { type: 'string', default: '1' }, rounds: { type: 'string', default: '15' }, switch: { type: 'string', default: 'VLM_NATIVE_NORM' } },
});
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const file = resolve(positionals[0] ?? join(root, 'recipes', 'bench', 'small.yaml'));
const { model, optimizer, host } = await benchSetup(file, { backend: 'wasm', threads: Number(values.threads), defaultBatch: 8 });
const probe = tf.ones([2, 4]);
const fused = normNative(probe, tf.ones([4]), null, 1e-5);
if (!fused) {
  console.error(`the fused norms are not in use: ${nativeMatMulStatus()} (or an addon without norm: npm run build:native)`);
  process.exit(1);
}
tf.dispose([probe, fused]);
const key = values.switch!;
const load = () => os.loadavg().map((l) => l.toFixed(1)).join(' ');
const loadBefore = load();

/** forward and every gradient of `f` over its inputs, `calls` times */
function normWork(shape: number[], withBias: boolean, calls: number): () => void {
  const C = shape[shape.length - 1];
  const x = tf.randomNormal(shape, 0, 1, 'float32', 1);
  const w = tf.randomNormal([C], 1, 0.1, 'float32', 2);
  const b = tf.randomNormal([C], 0, 0.1, 'float32', 3);
  const dy = tf.randomNormal(shape, 0, 1, 'float32', 4);
  const f = withBias ? (a: tf.Tensor, c: tf.Tensor, d: tf.Tensor) => layerNorm(a, c, d, 1e-6) : (a: tf.Tensor, c: tf.Tensor) => rmsNorm(a, c, 1e-5);
  const inputs = withBias ? [x, w, b] : [x, w];
  return () => {
    for (let i = 0; i < calls; i++)
      tf.tidy(() => {
        const { grads } = tf.valueAndGrads(f)(inputs, dy);
        grads[0].dataSync(); // the wasm kernels run synchronously; this only makes sure
      });
  };
}

const work: [string, () => unknown][] = [
  ['RMSNorm [8, 80, 256] forward + backward, 10 calls', normWork([8, 80, 256], false, 10)],
  ['LayerNorm [8, 64, 192] forward + backward, 10 calls', normWork([8, 64, 192], true, 10)],
  ['training step', () => trainStep(model, optimizer, [host], { maxGradNorm: null })],
];

const rounds = Number(values.rounds);
const rows = await abRows(key, work, rounds);
console.log(`${file.replace(root + '/', '')} · ${nativeMatMulStatus()} · OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'} · ${rounds} rounds · load ${loadBefore} → ${load()} · ${new Date().toISOString()}`);
console.log(`| work | CPU ms, fused | CPU ms, tfjs chains (${key}=0) | speed-up (CPU) | wall ms, fused | wall ms, tfjs chains |`);
console.log('|---|---:|---:|---:|---:|---:|');
for (const r of rows) console.log(r);
