// Recipe validation: the recipe schema, every plugin entry against its plugin's options schema,
// the stage names, and what the chosen stages need. Every problem is collected (not just the
// first), each with file:line:col and YAML path. Defaults are filled in along the way.
import { UserError } from '../errors.ts';
import type { Registry } from '../registry.ts';
import { describeErrors, validator } from './ajv.ts';
import { formatPath, type SourceMap } from './positions.ts';
import { pluginEntries, recipeSchema } from './schema.ts';

export function validateRecipe(recipe: Record<string, any>, registry: Registry, positions: SourceMap): UserError[] {
  const errors: UserError[] = [];
  const at = (path: (string | number)[], key = false) => positions.lookup(path, { key });

  // 1. the recipe's own schema (sections, types, unknown keys; defaults filled in)
  const validate = validator(recipeSchema);
  if (!validate(recipe)) {
    for (const p of describeErrors(validate.errors ?? [], [])) errors.push(new UserError(p.message, { where: at(p.path, p.atKey) }));
  }

  // 2. each plugin entry against its plugin's schema (unknown plugin names: did you mean)
  for (const { path, kind, entry } of pluginEntries(recipe)) {
    errors.push(...registry.checkOptions(kind, entry, formatPath(path)));
  }

  // 3. stage names
  const stages: unknown[] = Array.isArray(recipe.stages) ? recipe.stages : [];
  stages.forEach((s, i) => {
    if (typeof s === 'string' && !registry.has('stage', s)) errors.push(registry.unknown('stage', s, at(['stages', i])));
  });

  // 4. what the chosen stages need
  const model = recipe.model ?? {};
  if (stages.includes('load')) {
    const needed = model.from ? ['tokenizer', 'image_processor'] : ['vision', 'projector', 'decoder', 'tokenizer', 'image_processor'];
    for (const k of needed) {
      if (model[k] === undefined) {
        errors.push(
          new UserError(`missing model.${k}${model.from ? '' : ' (needed unless model.from names a checkpoint)'}`, {
            where: at(['model'], true),
            hint: `add model.${k}: {use: <plugin>} (see \`vlm plugins\`)`,
          }),
        );
      }
    }
  }
  if (stages.includes('train')) {
    for (const k of ['optimizer', 'schedule']) {
      if (recipe[k] === undefined) errors.push(new UserError(`the train stage needs \`${k}\``, { where: at([]), hint: `add ${k}: {use: <plugin>}` }));
    }
    if (Array.isArray(recipe.data?.train) && recipe.data.train.length === 0) {
      errors.push(new UserError('the train stage needs at least one dataset under data.train', { where: at(['data'], true) }));
    }
  }
  return errors;
}

