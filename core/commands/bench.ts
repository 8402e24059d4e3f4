// `vlm bench <recipe...> [--json <file>]` (and `npm run bench` = bench/run.ts on recipes/bench/):
// speed and memory of one recipe's model on random, seeded inputs; what is measured and how:
// core/benchmark.ts.
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { CommandEnv } from '../cli.ts';
import { buildComponents, buildOptimizer } from '../build.ts';
import { UserError } from '../errors.ts';
import { resolveRecipe } from '../recipe/index.ts';
import { describeRuntime, initRuntime, type BackendChoice } from '../runtime.ts';
import { benchModel, formatTable, gradClip, type BenchOptions, type BenchResult } from '../benchmark.ts';
import { withFullSizeModel } from '../model/random-checkpoint.ts';

// ---- the command ----------------------------------------------------------------------------------

export const HELP = `Usage: vlm bench <recipe.yaml> [more recipes] [options]
  --json <file>       write the results as JSON (one recipe: an object; several: an array)
  --steps <n>         timed training steps (default 10)
  --warmup <n>        untimed steps first (default 2)
  --gen-tokens <n>    new tokens per generation run (default 32)
  --gen-runs <n>      measured generation runs after one warm-up run; the median is reported (default 3)
  --no-generate       skip the generation benchmark
  --kv-only           generation with the KV cache only (skip the full-recompute runs: minutes on 222M)
  --backend <name>    auto | webgpu | wasm | cpu | tensorflow (default: the first recipe's runtime.backend)
  --threads <n>       runtime.threads: BLAS threads with the native products, else wasm threads (default: the recipe's, else 1)
  --batch-size <n>    overrides train.batch_size
  --random-full-size  the full-size nanoVLM v0.1 model (222M) with random weights instead of the
                      recipe's vision encoder, projector and decoder: nothing is downloaded
`;

export async function main(argv: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      json: { type: 'string' },
      steps: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      'gen-tokens': { type: 'string', default: '32' },
      'gen-runs': { type: 'string', default: '3' },
      'no-generate': { type: 'boolean', default: false },
      'kv-only': { type: 'boolean', default: false },
      backend: { type: 'string' },
      threads: { type: 'string' },
      'batch-size': { type: 'string' },
      'random-full-size': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    env.stdout.write(HELP);
    return 0;
  }
  if (positionals.length === 0) throw new UserError('vlm bench needs a recipe', { hint: 'e.g. vlm bench recipes/bench/small.yaml (npm run bench runs recipes/bench/tiny.yaml and small.yaml)' });
  const int = (name: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UserError(`--${name} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
  const opts: BenchOptions = {
    steps: int('steps', values.steps, 1),
    warmup: int('warmup', values.warmup, 0),
    genTokens: int('gen-tokens', values['gen-tokens'], 1),
    genRuns: int('gen-runs', values['gen-runs'], 1),
    generate: !values['no-generate'],
    kvOnly: values['kv-only'],
    log: env.log,
  };

  const recipes = [];
  for (const p of positionals) recipes.push(await resolveRecipe(resolve(p), { registry: env.registry }));
  for (const r of recipes) {
    if (values['random-full-size']) r.data.model = withFullSizeModel(r.data.model, env.registry);
    if (values['batch-size'] !== undefined) r.data.train = { ...r.data.train, batch_size: int('batch-size', values['batch-size'], 1) };
  }
  const rt0 = recipes[0].data.runtime ?? {};
  const threads = values.threads !== undefined ? int('threads', values.threads, 1) : rt0.threads ?? 1;
  const runtime = await initRuntime((values.backend ?? rt0.backend ?? 'auto') as BackendChoice, { threads });
  env.log.info(describeRuntime(runtime));

  const results: BenchResult[] = [];
  for (const r of recipes) {
    const seed = r.data.runtime?.seed ?? 0;
    const log = env.log;
    // each recipe's own positions: an error while building recipe b points into b, not into the last one resolved
    const bctx = { recipe: r.data, recipeDir: r.dir, seed, log, positions: r.positions };
    const { model } = await buildComponents(r.data, env.registry, bctx);
    const { optimizer } = await buildOptimizer(r.data, env.registry, bctx, model);
    try {
      results.push(
        await benchModel(
          model,
          optimizer,
          { name: r.data.name ?? r.file, recipe: r.file, runtime, batchSize: r.data.train?.batch_size ?? 8, seed, maxGradNorm: gradClip(r.data), checkpoint: !!r.data.train?.activation_checkpointing },
          opts,
        ),
      );
    } finally {
      optimizer.dispose();
      model.dispose();
    }
  }
  env.stdout.write(formatTable(results) + '\n');
  if (values.json) {
    writeFileSync(values.json, JSON.stringify(results.length === 1 ? results[0] : results, null, 2) + '\n');
    env.log.info(`wrote ${values.json}`);
  }
  return 0;
}
