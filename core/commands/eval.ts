// `vlm eval --model <run dir | model folder | owner/name[@rev]> [recipe.yaml] [key.path=value ...]`
// Evaluate a trained model with a recipe's evaluators: a load step (the model, its tokenizer and
// image processor from --model via core/load-model.ts; the datasets from the recipe) then the
// recipe's `eval` stage, in a new run directory `<out_dir>/<name>-eval-<timestamp>/` (or --out).
// Results: <run>/eval/results.json and results.md, and the table on the console.
import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import type { CommandEnv } from '../cli.ts';
import { buildDatasets } from '../build.ts';
import { UserError } from '../errors.ts';
import { loadModel } from '../load-model.ts';
import { runPipeline } from '../pipeline.ts';
import { isOverride } from '../recipe/overrides.ts';
import { resolveRecipe } from '../recipe/index.ts';
import { createRun, timestamp } from '../run.ts';
import { initRuntime } from '../runtime.ts';
import { DEFAULT_RECIPE } from './run.ts';
import type { Stage } from '../types.ts';

export const USAGE = `Usage: vlm eval --model <run dir | model folder | owner/name[@rev]> [recipe.yaml] [key.path=value ...]

  --model <source>      the model to evaluate (a run directory resolves to model/ or its latest checkpoint)
  recipe.yaml           whose data and eval.evaluators to use (default: the run's recipe.yaml when --model
                        is a run directory, else recipes/shapes-tiny.yaml)
  key.path=value        overrides, e.g. eval.evaluators[0].max_samples=100
  --out <dir>           the run directory to write eval/ into (default <out_dir>/<name>-eval-<timestamp>)
  --debug               stack traces and debug lines`;

export async function main(argv: string[], env: CommandEnv): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        model: { type: 'string' },
        out: { type: 'string' },
        force: { type: 'boolean' },
        debug: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    throw new UserError(`vlm eval: ${(e as Error).message}`, { hint: USAGE });
  }
  const { values, positionals } = parsed;
  if (values.help) {
    env.stdout.write(USAGE + '\n');
    return 0;
  }
  if (!values.model) throw new UserError('vlm eval: --model is required', { hint: USAGE });
  const overrides = positionals.filter(isOverride);
  const rest = positionals.filter((p) => !isOverride(p));
  if (rest.length > 1) throw new UserError(`vlm eval: one recipe at a time (got ${rest.join(', ')})`, { hint: USAGE });
  const runRecipe = join(values.model, 'recipe.yaml');
  const recipeFile = rest[0] ?? (existsSync(runRecipe) ? runRecipe : DEFAULT_RECIPE);

  // only the eval stage runs: the recipe needs data + eval.evaluators, not model/optimizer/schedule
  const recipe = await resolveRecipe(recipeFile, { registry: env.registry, overrides: ['stages=[eval]', ...overrides] });
  const rt = recipe.data.runtime;
  const runtime = await initRuntime(rt.backend, { threads: rt.threads, log: env.log.info });
  const runDir = values.out ?? join(rt.out_dir, `${recipe.data.name}-eval-${timestamp()}`);
  const run = createRun(recipe, {
    registry: env.registry,
    backend: runtime.backend,
    flags: { debug: !!values.debug || env.debug, force: !!values.force || !!values.out },
    stderr: env.stderr,
    runDir,
  });
  const { ctx } = run;
  try {
    ctx.log.info(`eval ${values.model} with ${relative(process.cwd(), recipeFile) || recipeFile} -> ${relative(process.cwd(), ctx.runDir) || ctx.runDir}`);
    const load: Stage = {
      title: 'load',
      async run(c, report) {
        report(`loading ${values.model}`);
        const loaded = await loadModel(values.model!, { registry: c.registry, log: c.log, seed: c.seed });
        Object.assign(c, { model: loaded.model, tokenizer: loaded.tokenizer, imageProcessor: loaded.imageProcessor });
        c.facts.model_source = values.model;
        c.facts.model_folder = loaded.folder;
        report('opening the datasets');
        c.datasets = await buildDatasets(c.recipe, c.registry, c);
        report(`model from ${loaded.folder}; eval datasets ${c.datasets.eval.length}, val ${c.datasets.val.length}`);
      },
    };
    const evalStage = await env.registry.create('stage', { use: 'eval' }, {
      recipe: ctx.recipe,
      recipeDir: ctx.recipeDir,
      yamlPath: 'stages',
      seed: ctx.seed,
      log: ctx.log,
    });
    await runPipeline(run, [load, evalStage]);
    ctx.log.info(`results: ${join(ctx.runDir, 'eval', 'results.md')}`);
    return 0;
  } catch (e) {
    if (ctx.signal.aborted && !(e instanceof UserError)) {
      ctx.log.warn('interrupted');
      return 130;
    }
    throw e;
  } finally {
    ctx.model?.dispose();
    run.close();
  }
}
