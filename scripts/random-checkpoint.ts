// `npx tsx scripts/random-checkpoint.ts [--out <folder>] [--seed <n>] [--force]`
// Writes a full-size nanoVLM v0.1 checkpoint with random weights (config.json + model.safetensors
// in nanoVLM's layout, 222,081,600 parameters, ~890 MB) into --out, by default the cache folder
// $HF_HOME/nanovlm-ts/random-nanoVLM-222M-seed<seed>, and prints the folder. An existing one is
// kept unless --force. Use it as `model.from: <folder>` (with `model.tokenizer` set, as the
// checkpoint names the Hub tokenizer), or load it with PyTorch nanoVLM v0.1
// (bench/reference/nanovlm_222m.py). See core/model/random-checkpoint.ts.
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { Registry } from '../core/registry.ts';
import builtins from '../plugins/index.ts';
import { isCheckpointFolder, randomCheckpointFolder, writeRandomCheckpoint } from '../core/model/random-checkpoint.ts';

const { values } = parseArgs({ options: { out: { type: 'string' }, seed: { type: 'string', default: '0' }, force: { type: 'boolean', default: false } } });
const seed = Number(values.seed);
const folder = resolve(values.out ?? randomCheckpointFolder(seed));
if (isCheckpointFolder(folder) && !values.force) {
  console.error(`${folder} already holds a checkpoint (--force rewrites it)`);
} else {
  await tf.setBackend('wasm');
  const t0 = Date.now();
  const n = await writeRandomCheckpoint(folder, new Registry(builtins), { seed });
  console.error(`wrote ${n.toLocaleString('en-US')} random parameters (seed ${seed}) in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
console.log(folder);
