// `vlm validate <recipe> [key.path=value ...] [--data]`: load the recipe with its extends chain and
// plugin modules, apply the overrides, and check everything (recipe schema, every plugin's options,
// stage names, what the stages need, adapter targets). Every problem is printed at once with
// file:line:col and YAML path; exit code 1. With --data it also opens the datasets (as the load
// stage does) and checks that the training data fills at least one optimizer step.
import { parseArgs } from 'node:util';
import type { CommandEnv } from '../cli.ts';
import { buildDatasets } from '../build.ts';
import { UserError } from '../errors.ts';
import { isOverride } from '../recipe/overrides.ts';
import { resolveRecipe } from '../recipe/index.ts';

export const USAGE = `Usage: vlm validate <recipe.yaml> [key.path=value ...] [--data]

Checks a recipe without running it, and reports every problem at once (file:line:col, YAML path,
did-you-mean):
  - the YAML itself, and the extends chain (missing or circular bases);
  - the plugin modules under plugins: (they are imported);
  - the overrides (key paths and value types);
  - every section and key against the recipe schema (unknown keys, types, ranges);
  - every plugin entry: the plugin exists, and its options against the plugin's schema;
  - the stage names, and what the stages need (a model for load, optimizer/schedule/data for train);
  - model.adapters: each LoRA target matches a linear layer of the model the recipe's shapes
    describe (not for a model that only model.from gives).
It does not open datasets, download anything or build the model, unless:
  --data        also open the datasets (local files are read, Hub datasets downloaded) and check
                that data.train fills at least one optimizer step (batch_size x grad_accum samples)

Exit code 0: the recipe is valid (prints "<recipe>: ok (<stages>)"); 1: a problem was found (each
one printed), or a usage error.`;

export async function main(argv: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { help: { type: 'boolean', short: 'h' }, data: { type: 'boolean' } },
  });
  if (values.help) {
    env.stdout.write(USAGE + '\n');
    return 0;
  }
  const files = positionals.filter((p) => !isOverride(p));
  if (files.length > 1) {
    throw new UserError(`one recipe at a time: "${files[1]}" is not an override`, { hint: 'overrides are written key.path=value, e.g. train.batch_size=8' });
  }
  if (files.length !== 1) throw new UserError('vlm validate needs one recipe file', { hint: 'vlm validate recipes/shapes-tiny.yaml [key.path=value ...]  (vlm validate --help)' });
  const r = await resolveRecipe(files[0], { registry: env.registry, overrides: positionals.filter(isOverride) });
  if (values.data) {
    const datasets = await buildDatasets(r.data, env.registry, { recipe: r.data, recipeDir: r.dir, seed: r.data.runtime?.seed ?? 0, log: env.log });
    const t = r.data.train ?? {};
    if (r.data.stages?.includes('train') && datasets.train.length) {
      const sizes = await Promise.all(datasets.train.map((d) => d.size()));
      const total = sizes.reduce((a, b) => a + b, 0);
      const perStep = (t.batch_size ?? 1) * (t.grad_accum ?? 1);
      if (total < perStep) {
        throw new UserError(`data.train holds ${total} samples (${datasets.train.map((d, i) => `${d.name}: ${sizes[i]}`).join(', ')}), fewer than one optimizer step takes (train.batch_size ${t.batch_size} x grad_accum ${t.grad_accum ?? 1} = ${perStep}); the last incomplete batch is dropped, so training would make no step`, {
          where: { yamlPath: 'train.batch_size' },
          hint: `add samples, or lower train.batch_size (e.g. vlm run ${files[0]} train.batch_size=${Math.max(1, Math.floor(total / (t.grad_accum ?? 1)))})`,
        });
      }
    }
    env.stdout.write(`${files[0]}: datasets opened: ${(['train', 'val', 'eval'] as const).map((k) => `${k} ${datasets[k].map((d) => d.name).join(', ') || '-'}`).join('; ')}\n`);
  }
  env.stdout.write(`${files[0]}: ok (${r.data.stages.join(' -> ')})\n`);
  return 0;
}
