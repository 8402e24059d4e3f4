// `vlm eval --model <run dir | model folder | owner/name[@rev]> [recipe.yaml] [key.path=value ...]`
// Evaluate a trained model with a recipe's evaluators: a load step (the model, its tokenizer and
// image processor from --model via core/load-model.ts; the datasets from the recipe) then the
// recipe's evaluating stage (a stage plugin declaring `evaluates`), in a new run directory `<out_dir>/<name>-eval-<timestamp>/` (or --out).
// Results: <run>/eval/results.json and results.md, and the table on the console.
import { existsSync, rmSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { CommandEnv } from '../cli.ts';
import { buildDatasets } from '../build.ts';
import { UserError } from '../errors.ts';
import { loadModel, resolveModelFolder } from '../load-model.ts';
import { runPipeline } from '../pipeline.ts';
import { isOverride } from '../recipe/overrides.ts';
import { resolveRecipe, savedRecipe } from '../recipe/index.ts';
import { stageEntry } from '../recipe/schema.ts';
import { loadPluginFlags } from '../registry.ts';
import { createRun, timestamp } from '../run.ts';
import { initRuntime } from '../runtime.ts';
import type { Stage } from '../types.ts';
import { DEFAULT_RECIPE } from './run.ts';
import { compareMain, TASK_OPTIONS, TASK_USAGE, taskOverrides } from '../eval/tasks-cli.ts';

export const USAGE = `Usage: vlm eval --model <run dir | model folder | owner/name[@rev]> [recipe.yaml] [key.path=value ...]

  --model <source>      the model to evaluate (a run directory resolves to model/ or its latest checkpoint)
  recipe.yaml           whose data (data.val, data.eval) and eval.evaluators to use; default: the recipe.yaml
                        that --model carries (a run directory or a published model folder), its relative
                        paths resolved against the folder of the recipe it was made from. A model with no
                        recipe.yaml (e.g. saved by PyTorch nanoVLM, or a Hub repo id) needs one here.
  key.path=value        overrides, e.g. eval.evaluators[0].max_samples=100
  --out <dir>           the run directory to write eval/ into (default <out_dir>/<name>-eval-<timestamp>);
                        a failed evaluation removes the directory it created
  --plugins <file|pkg>  a plugin module the model or the recipe needs (repeatable); the ones recorded in the
                        model folder's nanovlm-ts.json are loaded without it
  --backend <b>         auto | webgpu | tensorflow | wasm | cpu: shorthand for runtime.backend=<b>
  --debug               stack traces and debug lines
${TASK_USAGE}

Exit code 0 when the evaluation ran, 1 on a usage, recipe, model or data error, 130 when interrupted.`;

export async function main(argv: string[], env: CommandEnv): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        model: { type: 'string' },
        out: { type: 'string' },
        plugins: { type: 'string', multiple: true },
        backend: { type: 'string' },
        force: { type: 'boolean' },
        debug: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        ...TASK_OPTIONS,
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
  if (values.compare) return compareMain(positionals, values.output, env);
  if (values.output && values.out) throw new UserError('vlm eval: --output and --out are the same option: give one', { hint: USAGE });
  if (values.output) values.out = values.output;
  const taskOv = taskOverrides(values, env.registry);
  // `vlm eval <model> --tasks ...`: a positional that is not a recipe (.yaml) is the model
  if (!values.model && values.tasks) {
    const model = positionals.find((p) => !isOverride(p) && !/\.ya?ml$/i.test(p));
    if (model) {
      values.model = model;
      positionals.splice(positionals.indexOf(model), 1);
    }
  }
  if (!values.model) {
    throw new UserError('vlm eval: --model is missing (the model to evaluate)', {
      hint: 'vlm eval --model runs/<run> [recipe.yaml]   (vlm eval --help for every option)',
    });
  }
  // the tasks first: the user's overrides may refine them (eval.evaluators[0].max_new_tokens=...)
  const overrides = [...taskOv, ...positionals.filter(isOverride)];
  if (values.backend !== undefined) overrides.push(`runtime.backend=${values.backend}`); // validated by the recipe schema
  const rest = positionals.filter((p) => !isOverride(p));
  if (rest.length > 1) throw new UserError(`vlm eval: one recipe at a time (got ${rest.join(', ')})`, { hint: USAGE });

  // the model folder first (a mistyped path is reported before anything is created)
  const folder = await resolveModelFolder(values.model);
  await loadPluginFlags(env.registry, values.plugins);
  const saved = rest[0] ? null : (savedRecipe(values.model) ?? savedRecipe(folder));
  // benchmark tasks bring their own data: without a recipe, the default one gives the runtime settings
  if (!rest[0] && !saved && values.tasks) rest.push(DEFAULT_RECIPE);
  if (!rest[0] && !saved) {
    throw new UserError(`vlm eval: ${values.model} carries no recipe.yaml, so there are no datasets or evaluators to use`, {
      hint: `name the recipe whose data and eval.evaluators to use: vlm eval --model ${values.model} <recipe.yaml>`,
    });
  }
  const recipeFile = rest[0] ?? saved!.file;

  // only the eval stage runs: the recipe needs data.val/data.eval + eval.evaluators, not
  // model/optimizer/schedule, nor the training data (not even to check its paths)
  const recipe = await resolveRecipe(recipeFile, {
    registry: env.registry,
    overrides: ['stages=[eval]', 'data.train=[]', ...overrides],
    baseDir: saved?.baseDir,
  });
  const rt = recipe.data.runtime;
  const runtime = await initRuntime(rt.backend, { threads: rt.threads, log: env.log.info });
  const runDir = resolve(values.out ?? join(rt.out_dir, `${recipe.data.name}-eval-${timestamp()}`));
  const created = !existsSync(runDir);
  const run = createRun(recipe, {
    registry: env.registry,
    backend: runtime.backend,
    flags: { debug: !!values.debug || env.debug, force: !!values.force || !!values.out },
    stdout: env.stdout, stderr: env.stderr,
    runDir,
  });
  const { ctx } = run;
  let failed = false;
  try {
    ctx.log.info(`eval ${values.model} with ${relative(process.cwd(), recipeFile) || recipeFile} -> ${relative(process.cwd(), ctx.runDir) || ctx.runDir}`);
    const load: Stage = {
      title: 'load the model',
      async run(c, report) {
        report(`loading ${values.model}`);
        const loaded = await loadModel(folder, { registry: c.registry, log: c.log, seed: c.seed });
        Object.assign(c, { model: loaded.model, tokenizer: loaded.tokenizer, imageProcessor: loaded.imageProcessor });
        c.facts.model_source = values.model;
        c.facts.model_folder = loaded.folder;
        report('opening the datasets');
        c.datasets = await buildDatasets(c.recipe, c.registry, c);
        report(`model from ${loaded.folder}; eval datasets ${c.datasets.eval.length}, val ${c.datasets.val.length}`);
      },
    };
    // the stages that evaluate (Plugin.evaluates): the recipe's, else the first registered one
    const listed = (ctx.recipe.stages as string[]).map((name, i) => ({ name, yamlPath: `stages[${i}]` })).filter((s) => env.registry.plugin('stage', s.name)?.evaluates);
    const fallback = env.registry.list('stage').find((r) => r.plugin.evaluates);
    if (!listed.length && !fallback) throw new UserError('no stage plugin evaluates a model (a stage plugin declaring `evaluates: true`)');
    const evalStages: Stage[] = [];
    for (const s of listed.length ? listed : [{ name: fallback!.plugin.name, yamlPath: 'stages' }]) {
      evalStages.push(await env.registry.create('stage', stageEntry(ctx.recipe, s.name), { recipe: ctx.recipe, recipeDir: ctx.recipeDir, yamlPath: s.yamlPath, seed: ctx.seed, log: ctx.log, positions: ctx.positions }));
    }
    await runPipeline(run, [load, ...evalStages]);
    ctx.log.info(`results: ${join(ctx.runDir, 'eval', 'results.md')}`);
    return 0;
  } catch (e) {
    // a failed evaluation leaves no half-filled run directory behind (one the user named with --out is kept)
    failed = true;
    if (ctx.signal.aborted && !(e instanceof UserError)) {
      ctx.log.warn('interrupted');
      return 130;
    }
    throw e;
  } finally {
    if (failed && created) rmSync(ctx.runDir, { recursive: true, force: true });
    ctx.model?.dispose();
    run.close();
  }
}
