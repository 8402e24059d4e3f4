// Recipe validation: the recipe schema, every plugin entry against its plugin's options schema,
// the stage names, and what the chosen stages need (asked of each stage plugin: checkRecipe). Every problem is collected (not just the
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
    errors.push(...registry.checkOptions(kind, entry, formatPath(path), positions));
  }

  // 3. stage names
  const stages: unknown[] = Array.isArray(recipe.stages) ? recipe.stages : [];
  stages.forEach((s, i) => {
    if (typeof s === 'string' && !registry.has('stage', s)) errors.push(registry.unknown('stage', s, at(['stages', i])));
  });

  // 4. what the chosen stages need (each stage plugin says: Plugin.checkRecipe)
  for (const s of new Set(stages)) {
    if (typeof s !== 'string' || !registry.has('stage', s)) continue;
    for (const p of registry.get('stage', s).checkRecipe?.(recipe) ?? []) errors.push(new UserError(p.message, { where: at(p.path, p.atKey), hint: p.hint }));
  }
  return errors;
}

