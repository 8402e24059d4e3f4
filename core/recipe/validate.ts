// Recipe validation: the recipe schema, each stage's section (`train:`, `eval:`, ...) against its
// stage plugin's options schema, every plugin entry against its plugin's options schema, the stage
// names, what the chosen stages need (asked of each stage plugin: checkRecipe), and model.adapters'
// targets against the model's linear layers (each plugin's describe()). Every problem
// is collected (not just the first), each with file:line:col and YAML path. Defaults are filled in
// along the way.
import { UserError } from '../errors.ts';
import { describeModules, linearLayersOf } from '../model/describe.ts';
import type { Registry } from '../registry.ts';
import { describeErrors, validator } from './ajv.ts';
import { formatPath, type SourceMap } from './positions.ts';
import { pluginEntries, recipeSchemaFor, stageEntry, stagePlugins, type OptionsOf } from './schema.ts';

export function validateRecipe(recipe: Record<string, any>, registry: Registry, positions: SourceMap): UserError[] {
  const errors: UserError[] = [];
  const at = (path: (string | number)[], key = false) => positions.lookup(path, { key });
  const optionsOf: OptionsOf = (kind, name) => registry.plugin(kind, name)?.options;

  // 1. the recipe's own schema (sections, types, unknown keys; defaults filled in); a stage's
  //    section is a mapping here
  const root = recipeSchemaFor(stagePlugins(registry));
  const validate = validator(root);
  if (!validate(recipe)) {
    for (const p of describeErrors(validate.errors ?? [], [])) errors.push(new UserError(p.message, { where: at(p.path, p.atKey) }));
  }

  // 2. each stage's section against its stage plugin's options schema, as a plugin entry
  //    `{use: <stage>, ...section}` (defaults filled in; the section keeps no `use`); every stage
  //    the recipe lists gets its section, so the resolved recipe shows the options it runs with
  const stages: unknown[] = Array.isArray(recipe.stages) ? recipe.stages : [];
  for (const [key, sub] of Object.entries(root.properties ?? {})) {
    if (!sub['x-stage']) continue;
    if (recipe[key] === undefined && stages.includes(key) && Object.keys(optionsOf('stage', key)?.properties ?? {}).length) recipe[key] = {};
    const section = recipe[key];
    if (!section || typeof section !== 'object' || Array.isArray(section)) continue;
    const entry = stageEntry(recipe, key);
    errors.push(...registry.checkOptions('stage', entry, key, positions));
    const { use: _use, ...options } = entry;
    for (const k of Object.keys(section)) delete section[k];
    Object.assign(section, options);
  }

  // 3. each plugin entry against its plugin's schema (unknown plugin names: did you mean), those
  //    inside stage sections and plugin options included (eval.evaluators[0])
  for (const { path, kind, entry } of pluginEntries(recipe, root, optionsOf)) {
    errors.push(...registry.checkOptions(kind, entry, formatPath(path), positions));
  }

  // 4. stage names
  stages.forEach((s, i) => {
    if (typeof s === 'string' && !registry.has('stage', s)) errors.push(registry.unknown('stage', s, at(['stages', i])));
  });

  // 5. what the chosen stages need (each stage plugin says: Plugin.checkRecipe)
  for (const s of new Set(stages)) {
    if (typeof s !== 'string' || !registry.has('stage', s)) continue;
    for (const p of registry.get('stage', s).checkRecipe?.(recipe) ?? []) errors.push(new UserError(p.message, { where: at(p.path, p.atKey), hint: p.hint }));
  }

  // 6. model.adapters against the model the recipe describes (core/model/describe.ts; no weights):
  //    a LoRA target that matches no linear layer is reported here, not when the model is built.
  //    Only on an otherwise valid recipe whose modules all describe themselves (not model.from).
  if (!errors.length) errors.push(...checkAdapters(recipe, registry, positions));
  return errors;
}

function checkAdapters(recipe: Record<string, any>, registry: Registry, positions: SourceMap): UserError[] {
  const adapters: unknown[] = Array.isArray(recipe.model?.adapters) ? recipe.model.adapters : [];
  if (!adapters.length) return [];
  const linearLayers = linearLayersOf(describeModules(recipe, registry));
  if (!linearLayers) return [];
  const errors: UserError[] = [];
  adapters.forEach((entry, i) => {
    if (!entry || typeof entry !== 'object') return;
    const { use, ...options } = entry as { use: string };
    const plugin = registry.plugin('adapter', use);
    if (!plugin?.describe) return;
    try {
      plugin.describe(options, { linearLayers, yamlPath: `model.adapters[${i}]` });
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      const path = e.where.yamlPath;
      errors.push(path && !e.where.file ? new UserError(e.message, { where: positions.lookup(path), hint: e.hint }) : e);
    }
  });
  return errors;
}
