// Padding and real tokens/s with and without packing (train.packing, nanoVLM HEAD's
// ConstantLengthDataset; docs/training.md), on the digits data in nanoVLM HEAD's format: the train
// stage itself (load + train, in-process, as `vlm run`) on a small placeholder-token model, split
// images (8x8 digits -> 64x64 -> global view + 2x2 tiles of 32 px, 16 tokens each), HEAD's chat
// template and 66 extra tokens on the SmolLM2 tokenizer, rows of max_length tokens as HEAD pads to
// lm_max_length. Three runs of the same steps: one sample per row, packing (attention: nanovlm) and
// packing with the block-diagonal mask. Reported per run (steps after the first two): padding = the
// share of [B, T] positions that are padding; real tokens/s = non-padding positions (text + image
// tokens; separators excluded) per second of step time; samples per step.
// Usage: npx tsx bench/packing.ts [--steps 12] [--batch 8] [--max-length 512]
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import * as tf from '@tensorflow/tfjs';
import { createRegistry } from '../core/registry.ts';
import builtins from '../plugins/index.ts';
import { resolveRecipe } from '../core/recipe/index.ts';
import { createRun } from '../core/run.ts';
import { describeRuntime, initRuntime } from '../core/runtime.ts';
import { NANOVLM_HEAD_CHAT_TEMPLATE } from '../core/model/config.ts';
import { NANOVLM_HEAD_EXTRA_TOKENS } from '../core/data/image-string.ts';
import load from '../plugins/stage/load.ts';
import { train } from '../plugins/stage/train.ts';

const args = process.argv.slice(2);
const get = (f: string, d: number) => { const i = args.indexOf(f); return i < 0 ? d : Number(args[i + 1]); };
const steps = get('--steps', 12);
const batch = get('--batch', 8);
const maxLength = get('--max-length', 512);
const shared = resolve(import.meta.dirname, '..', '..', 'shared', 'data');

const recipe = (packing: Record<string, unknown> | null) => ({
  name: 'packing-bench',
  runtime: { backend: 'auto', seed: 0, out_dir: mkdtempSync(join(tmpdir(), 'vlm-packing-bench-')) },
  model: {
    vision: { use: 'siglip-vit', hidden_dim: 64, inter_dim: 128, patch_size: 8, image_size: 32, n_heads: 4, n_blocks: 2 },
    projector: { use: 'pixel-shuffle', factor: 1 },
    decoder: { use: 'llama', hidden_dim: 128, inter_dim: 256, n_heads: 4, n_kv_heads: 2, n_blocks: 2, vocab_size: 49152 + 66, max_length: maxLength },
    tokenizer: { use: 'hf', from: join(shared, 'tokenizers', 'smollm2'), chat_template: NANOVLM_HEAD_CHAT_TEMPLATE, eos_token: '<|im_end|>', extra_special_tokens: NANOVLM_HEAD_EXTRA_TOKENS },
    image_processor: { use: 'split', max_size: 64 },
    image_tokens: 'placeholders',
  },
  data: { train: [{ use: 'cauldron', path: join(shared, 'digits', 'train.parquet') }] },
  optimizer: { use: 'adamw', lr: 5e-4 },
  schedule: { use: 'constant' },
  train: { batch_size: batch, max_steps: steps, checkpoint_every: null, log_every: 1000, packing },
  eval: { evaluators: [] },
  stages: ['load', 'train'],
});

const rt = await initRuntime('auto', {});
console.log(describeRuntime(rt));
const registry = createRegistry(builtins);
const quiet = { info() {}, warn: (m: string) => console.error('WARN', m), debug() {} };
for (const [label, packing] of [
  ['one sample per row', null],
  ['packing (attention: nanovlm)', { attention: 'nanovlm' }],
  ['packing (attention: block-diagonal)', { attention: 'block-diagonal' }],
] as const) {
  const file = join(mkdtempSync(join(tmpdir(), 'vlm-packing-recipe-')), 'recipe.yaml');
  writeFileSync(file, stringify(recipe(packing)));
  const resolved = await resolveRecipe(file, { registry });
  const run = createRun(resolved, { registry, backend: tf.getBackend(), flags: {}, stderr: { write: () => true } });
  const { ctx } = run;
  ctx.log = quiet as never;
  const recs: Record<string, any>[] = [];
  const metrics = ctx.metrics;
  ctx.metrics = (r) => (metrics(r), r.type === 'train' && recs.push(r));
  try {
    const stage = await load.create({}, { recipe: ctx.recipe, recipeDir: ctx.recipeDir, yamlPath: 'stages[0]', seed: ctx.seed, log: ctx.log, registry });
    await stage.run(ctx, () => {});
    await train(ctx, () => {});
  } finally {
    run.close();
    ctx.model?.dispose();
  }
  const m = recs.slice(2);
  const sum = (k: string) => m.reduce((a, r) => a + r[k], 0);
  console.log(
    JSON.stringify({
      run: label,
      steps: m.length,
      padding: +(sum('padding') / m.length).toFixed(3),
      real_tokens_per_s: Math.round((sum('tokens') / sum('step_ms')) * 1000),
      tokens_per_step: Math.round(sum('tokens') / m.length),
      step_ms: Math.round(sum('step_ms') / m.length),
      final_loss: +m.at(-1)!.loss.toFixed(3),
    }),
  );
}
