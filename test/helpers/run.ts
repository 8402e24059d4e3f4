// Run the load + train stages of a small recipe in-process, the way `vlm run` does (resolveRecipe ->
// createRun -> stages), with a hook called after every training step (metrics record in hand) so
// tests can interrupt, poison a weight or count live tensors at exact steps.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { stringify } from 'yaml';
import { useTestBackend } from './backend.ts';
import { installFastKernels } from '../../core/kernels/index.ts';
import { createRegistry } from '../../core/registry.ts';
import { resolveRecipe } from '../../core/recipe/index.ts';
import { createRun } from '../../core/run.ts';
import builtins from '../../plugins/index.ts';
import load from '../../plugins/stage/load.ts';
import { train } from '../../plugins/stage/train.ts';
import type { RunContext } from '../../core/types.ts';
import { TINY_MODEL } from './train.ts';

/** a small shapes recipe: tiny model, bytes tokenizer, `count` training samples, no evaluators */
export function smallRecipe(out: string, train: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return {
    name: 'train-test',
    runtime: { backend: 'wasm', seed: 0, out_dir: out },
    model: {
      ...TINY_MODEL,
      decoder: { ...TINY_MODEL.decoder, vocab_size: 260, max_length: 48 },
      tokenizer: { use: 'bytes' },
      image_processor: { use: 'resize' },
    },
    data: {
      train: [{ use: 'synthetic-shapes', split: 'train', count: 64, format: 'open' }],
      val: [{ use: 'synthetic-shapes', split: 'val', count: 8, format: 'open' }],
    },
    optimizer: { use: 'adamw', lr: 3e-3 },
    schedule: { use: 'constant' },
    train: { batch_size: 4, grad_accum: 1, epochs: 1, max_steps: 12, checkpoint_every: 4, log_every: 100, ...train },
    eval: { evaluators: [] },
    stages: ['load', 'train'],
    ...extra,
  };
}

export function writeRecipe(recipe: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'vlm-train-recipe-'));
  const file = join(dir, 'recipe.yaml');
  writeFileSync(file, stringify(recipe));
  return file;
}

export const tmpOut = () => mkdtempSync(join(tmpdir(), 'vlm-train-runs-'));

export interface TrainRun {
  ctx: RunContext;
  error?: unknown;
  /** the per-step metrics records, in order */
  steps: Record<string, any>[];
  lines: string[];
}

/**
 * load + train in-process. `onStep(record, ctx, abort)` runs after each step's metrics record;
 * `abort()` behaves as Ctrl-C (the stage finishes the step, checkpoints, and throws).
 */
export async function runTrain(
  recipeFile: string,
  opts: { resume?: string; force?: boolean; overrides?: string[]; onStep?: (rec: Record<string, any>, ctx: RunContext, abort: () => void) => void } = {},
): Promise<TrainRun> {
  installFastKernels(await useTestBackend());
  const registry = createRegistry(builtins);
  // every fresh run gets its own out_dir (run directories are named by the second they start)
  const overrides = [...(opts.resume ? [] : [`runtime.out_dir=${tmpOut()}`]), ...(opts.overrides ?? [])];
  const recipe = await resolveRecipe(recipeFile, { registry, overrides });
  const lines: string[] = [];
  const run = createRun(recipe, { registry, backend: tf.getBackend(), flags: { resume: opts.resume, force: opts.force }, stderr: { write: (s: string) => lines.push(s) } });
  const { ctx } = run;
  const controller = new AbortController();
  ctx.signal = controller.signal;
  const steps: Record<string, any>[] = [];
  const metrics = ctx.metrics;
  ctx.metrics = (rec) => {
    metrics(rec);
    if (rec.type !== 'train') return;
    steps.push(rec);
    opts.onStep?.(rec, ctx, () => controller.abort(new Error('interrupted by SIGINT')));
  };
  let error: unknown;
  try {
    const loadStage = await load.create({}, { recipe: ctx.recipe, recipeDir: ctx.recipeDir, yamlPath: 'stages[0]', seed: ctx.seed, log: ctx.log, registry });
    await loadStage.run(ctx, () => {});
    await train(ctx, (l) => lines.push(l));
  } catch (e) {
    error = e;
  } finally {
    run.close();
  }
  return { ctx, error, steps, lines };
}
