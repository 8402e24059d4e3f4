// `vlm run [recipe] [a.b=value ...] [--resume <run dir>] [--force] [--dry-run] [--debug]`
// The whole trace: resolve the recipe (core/recipe) -> start the backend (core/runtime.ts) ->
// create the run directory and context (core/run.ts) -> create the stage plugins by name and run
// them in order (core/pipeline.ts). With no recipe: recipes/shapes-tiny.yaml (no network needed).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { CommandEnv } from '../cli.ts';
import { UserError } from '../errors.ts';
import { runPipeline } from '../pipeline.ts';
import { isOverride } from '../recipe/overrides.ts';
import { resolveRecipe } from '../recipe/index.ts';
import { stageEntry } from '../recipe/schema.ts';
import { createRun, RUN_JSON } from '../run.ts';
import { initRuntime } from '../runtime.ts';
import type { Stage } from '../types.ts';
import { startDashboardProcess } from '../serve/child.ts';

export const DEFAULT_RECIPE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'recipes', 'shapes-tiny.yaml');

export const USAGE = `Usage: vlm run [recipe.yaml] [key.path=value ...] [options]

  recipe.yaml           the recipe (default: recipes/shapes-tiny.yaml; with --resume: the recipe and
                        overrides the run was started with, from <run dir>/run.json)
  key.path=value        override a recipe value, e.g. train.batch_size=8 data.train[0].count=100
  --resume <run dir>    continue an interrupted run from its latest checkpoint
  --force               reuse an existing run directory / resume with a changed recipe
  --dry-run             run, but publishers do not upload
  --backend <b>         auto | webgpu | tensorflow | wasm | cpu: shorthand for runtime.backend=<b>
  --debug               stack traces and debug lines
  --serve               live dashboard of this run while it trains (vlm serve <run dir>; stops with the run)
  --port <n> --host <h> where --serve listens (default 8080, 127.0.0.1)`;

/** Split argv into recipe path, overrides and flags. */
export function parseRunArgs(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      resume: { type: 'string' },
      force: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      backend: { type: 'string' },
      debug: { type: 'boolean' },
      serve: { type: 'boolean' },
      port: { type: 'string', default: '8080' },
      host: { type: 'string', default: '127.0.0.1' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const overrides = positionals.filter(isOverride);
  if (values.backend !== undefined) overrides.push(`runtime.backend=${values.backend}`); // validated by the recipe schema
  const rest = positionals.filter((p) => !isOverride(p));
  if (rest.length > 1) throw new UserError(`one recipe at a time (got ${rest.join(', ')})`, { hint: 'overrides are written key.path=value' });
  let recipe = rest[0];
  let startOverrides: string[] = [];
  if (!recipe && values.resume) {
    // resume without a recipe: the recipe and overrides the run was started with (run.json)
    const started = join(values.resume, RUN_JSON);
    if (existsSync(started)) {
      const inv = JSON.parse(readFileSync(started, 'utf8')) as { recipe: string; overrides?: string[] };
      recipe = inv.recipe;
      startOverrides = inv.overrides ?? [];
    } else if (existsSync(join(values.resume, 'recipe.yaml'))) recipe = join(values.resume, 'recipe.yaml');
  }
  return {
    recipe: recipe ?? DEFAULT_RECIPE,
    overrides: [...startOverrides, ...overrides],
    flags: { resume: values.resume, force: !!values.force, dryRun: !!values['dry-run'], debug: !!values.debug },
    help: !!values.help,
    serve: values.serve ? { port: Number(values.port), host: values.host! } : null,
  };
}

export async function main(argv: string[], env: CommandEnv): Promise<number> {
  const args = parseRunArgs(argv);
  if (args.help) {
    env.stdout.write(USAGE + '\n');
    return 0;
  }
  args.flags.debug ||= env.debug;
  const recipe = await resolveRecipe(args.recipe, { registry: env.registry, overrides: args.overrides });
  const rt = recipe.data.runtime;
  const runtime = await initRuntime(rt.backend, { threads: rt.threads, log: env.log.info });
  const run = createRun(recipe, { registry: env.registry, backend: runtime.backend, flags: args.flags, stdout: env.stdout, stderr: env.stderr, overrides: args.overrides });
  const { ctx } = run;
  const dashboard = args.serve ? await startDashboardProcess(ctx.runDir, args.serve).catch((e) => (run.close(), Promise.reject(e))) : null;
  if (dashboard) ctx.log.info(`dashboard: ${dashboard.url}dashboard (it stops with the run; afterwards: vlm serve ${ctx.runDir})`);
  try {
    ctx.log.info(`run ${recipe.data.name}: ${relative(process.cwd(), ctx.runDir) || ctx.runDir} (stages: ${recipe.data.stages.join(' -> ')})`);
    ctx.facts.threads = runtime.threads ?? null;
    const stages: Stage[] = [];
    for (const [i, name] of (recipe.data.stages as string[]).entries()) {
      stages.push(await env.registry.create('stage', stageEntry(ctx.recipe, name), { recipe: ctx.recipe, recipeDir: ctx.recipeDir, yamlPath: `stages[${i}]`, seed: ctx.seed, log: ctx.log, flags: ctx.flags, positions: ctx.positions }));
    }
    await runPipeline(run, stages);
    ctx.log.info(`done: ${ctx.runDir}`);
    for (const [k, v] of Object.entries(ctx.artifacts)) ctx.log.info(`  ${k}: ${isAbsolute(v) ? v : join(ctx.runDir, v)}`);
    return 0;
  } catch (e) {
    ctx.log.debug(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    if (ctx.signal.aborted && !(e instanceof UserError)) {
      ctx.log.warn(`interrupted; resume with: vlm run ${args.recipe} --resume ${ctx.runDir}`);
      return 130;
    }
    throw e;
  } finally {
    ctx.model?.dispose();
    dashboard?.close();
    run.close();
  }
}
