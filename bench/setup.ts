// What bench/profile.ts and bench/soak.ts (the scripts that time or watch training steps of a
// recipe's model) start with: the recipe resolved with the built-in plugins, the backend chosen,
// the model and optimizer built as `vlm bench` builds them, and its seeded benchmark batch
// (core/benchmark.ts benchBatch).
import { buildComponents, buildOptimizer } from '../core/build.ts';
import { benchBatch } from '../core/benchmark.ts';
import { consoleLogger } from '../core/cli.ts';
import { resolveRecipe } from '../core/recipe/index.ts';
import { createRegistry } from '../core/registry.ts';
import { describeRuntime, initRuntime, type BackendChoice } from '../core/runtime.ts';
import builtins from '../plugins/index.ts';

export async function benchSetup(file: string, opts: { backend: string; threads: number; defaultBatch: number }) {
  const log = consoleLogger(false);
  const registry = createRegistry(builtins);
  const r = await resolveRecipe(file, { registry });
  const runtime = await initRuntime(opts.backend as BackendChoice, { threads: opts.threads });
  log.info(describeRuntime(runtime));
  const seed = r.data.runtime?.seed ?? 0;
  const { model } = await buildComponents(r.data, registry, { recipe: r.data, recipeDir: r.dir, seed, log });
  const { optimizer } = await buildOptimizer(r.data, registry, { recipe: r.data, recipeDir: r.dir, seed, log }, model);
  const host = benchBatch(model, r.data.train?.batch_size ?? opts.defaultBatch, seed);
  return { log, registry, recipe: r, runtime, seed, model, optimizer, host };
}
