// `vlm validate <recipe> [key.path=value ...]`: load the recipe with its extends chain and plugin
// modules, apply the overrides, and check everything (recipe schema, every plugin's options,
// stage names). Every problem is printed at once with file:line:col and YAML path; exit code 1.
import { parseArgs } from 'node:util';
import type { CommandEnv } from '../cli.ts';
import { UserError } from '../errors.ts';
import { isOverride } from '../recipe/overrides.ts';
import { resolveRecipe } from '../recipe/index.ts';

export async function main(argv: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { help: { type: 'boolean', short: 'h' } } });
  const files = positionals.filter((p) => !isOverride(p));
  if (files.length > 1) {
    throw new UserError(`one recipe at a time: "${files[1]}" is not an override`, { hint: 'overrides are written key.path=value, e.g. train.batch_size=8' });
  }
  if (values.help || files.length !== 1) {
    if (!values.help) throw new UserError('vlm validate needs one recipe file', { hint: 'vlm validate recipes/shapes-tiny.yaml [key.path=value ...]' });
    env.stdout.write('Usage: vlm validate <recipe.yaml> [key.path=value ...]\n');
    return 0;
  }
  const r = await resolveRecipe(files[0], { registry: env.registry, overrides: positionals.filter(isOverride) });
  env.stdout.write(`${files[0]}: ok (${r.data.stages.join(' -> ')})\n`);
  return 0;
}
