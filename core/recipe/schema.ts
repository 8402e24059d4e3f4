// The recipe schema (schemas/recipe.schema.json) and how to walk it: which schema applies at a
// YAML path, switching to a plugin's options schema inside a plugin entry (`x-plugin: <kind>`) and
// inside a stage's section (`x-stage: <name>`: `train:`, `eval:`, ... hold their stage plugin's options).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JSONSchema } from '../plugin.ts';
import type { PluginKind } from '../types.ts';
import { formatPath, type PathSeg } from './positions.ts';

export const RECIPE_SCHEMA_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'schemas', 'recipe.schema.json');
export const recipeSchema: JSONSchema = JSON.parse(readFileSync(RECIPE_SCHEMA_PATH, 'utf8'));

export function deref(s: JSONSchema): JSONSchema {
  const ref = s.$ref as string | undefined;
  if (!ref?.startsWith('#/')) return s;
  let target: any = recipeSchema;
  for (const k of ref.slice(2).split('/')) target = target[k];
  const { $ref: _r, ...rest } = s;
  return { ...target, ...rest };
}

/** a plugin's options schema by kind and name (undefined: unknown plugin) */
export type OptionsOf = (kind: PluginKind, name: string) => JSONSchema | undefined;

const withStages = new Map<string, JSONSchema>();

/**
 * The recipe schema of a registry: schemas/recipe.schema.json plus one section per stage plugin,
 * `<stage name>: {...options}` (marked `x-stage: <name>`, placed before `stages`). The schema only
 * says the section is a mapping; its options are checked against the stage plugin's own options
 * schema, as every plugin entry's are (Registry.checkOptions; validate.ts fills in the section of
 * every stage the recipe lists).
 */
export function recipeSchemaFor(stages: readonly { name: string; options: JSONSchema }[]): JSONSchema {
  const base = recipeSchema.properties ?? {};
  const sections: Record<string, JSONSchema> = {};
  for (const st of stages) {
    if (st.name in base) continue; // a stage named like a recipe section (`model`) takes no options
    sections[st.name] = { type: 'object', 'x-stage': st.name, description: `Options of the ${st.name} stage (its plugin's options).` };
  }
  const key = JSON.stringify(sections);
  let schema = withStages.get(key);
  if (!schema) {
    const { stages, ...rest } = base;
    schema = { ...recipeSchema, properties: { ...rest, ...sections, ...(stages ? { stages } : {}) } };
    withStages.set(key, schema);
  }
  return schema;
}

/** The stage plugins of a registry, for recipeSchemaFor. */
export function stagePlugins(registry: { names(kind: 'stage'): string[]; plugin(kind: 'stage', name: string): { options: JSONSchema } | undefined }): { name: string; options: JSONSchema }[] {
  return registry.names('stage').map((name) => ({ name, options: registry.plugin('stage', name)!.options }));
}

/** The plugin entry a stage is created from: `{use: <name>, ...its section of the recipe}`. */
export function stageEntry(recipe: Record<string, any>, name: string): { use: string; [k: string]: unknown } {
  const section = recipe[name];
  return { ...(section && typeof section === 'object' && !Array.isArray(section) && !(name in (recipeSchema.properties ?? {})) ? section : {}), use: name };
}

/**
 * Every plugin-entry location in a recipe: [YAML path, kind, entry]. With `optionsOf`, also the
 * entries inside a stage's section and inside plugin options (`eval.evaluators[0]`), walking the
 * plugin's own options schema; `root` is the recipe schema (recipeSchemaFor, for stage sections).
 */
export function pluginEntries(
  recipe: Record<string, any>,
  root: JSONSchema = recipeSchema,
  optionsOf?: OptionsOf,
): { path: PathSeg[]; kind: PluginKind; entry: Record<string, unknown> }[] {
  const out: { path: PathSeg[]; kind: PluginKind; entry: Record<string, unknown> }[] = [];
  const walk = (schema: JSONSchema, value: unknown, path: PathSeg[]) => {
    const kind = schema['x-plugin'] as PluginKind | undefined;
    if (kind) {
      if (value && typeof value === 'object' && !Array.isArray(value) && typeof (value as any).use === 'string') {
        out.push({ path, kind, entry: value as Record<string, unknown> });
        const options = optionsOf?.(kind, (value as any).use);
        if (options) walk(options, value, path);
      }
      return;
    }
    const stage = schema['x-stage'] as string | undefined;
    const options = stage ? optionsOf?.('stage', stage) : undefined;
    if (stage && !options) return;
    const s = options ?? deref(schema);
    if (Array.isArray(value) && s.items) value.forEach((v, i) => walk(s.items!, v, [...path, i]));
    else if (value && typeof value === 'object' && s.properties) {
      for (const [k, sub] of Object.entries(s.properties)) if (k in (value as object)) walk(sub, (value as any)[k], [...path, k]);
    }
  };
  walk(root, recipe, []);
  return out;
}

export type SchemaLookup =
  | { ok: true; schema: JSONSchema | undefined }
  | { ok: false; at: PathSeg[]; key: PathSeg; candidates: string[]; reason: string };

/**
 * The schema that governs `path`, given the recipe (to know which plugin each entry uses).
 * `pluginSchema(kind, name)` returns a plugin's options schema or undefined when unknown.
 */
export function schemaAt(
  path: PathSeg[],
  recipe: Record<string, any>,
  pluginSchema: OptionsOf,
  root: JSONSchema = recipeSchema,
): SchemaLookup {
  let s: JSONSchema | undefined = root;
  let value: any = recipe;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    if (!s) return { ok: true, schema: undefined };
    const kind = s['x-plugin'] as PluginKind | undefined;
    const stage = s['x-stage'] as string | undefined;
    s = deref(s);
    if (stage) {
      // a stage's section: the stage plugin's options
      s = pluginSchema('stage', stage);
      if (!s) return { ok: true, schema: undefined };
    }
    if (kind) {
      // inside a plugin entry: `use`, or one of the plugin's options
      if (seg === 'use') return { ok: true, schema: { type: 'string' } };
      const use = value?.use;
      const ps = typeof use === 'string' ? pluginSchema(kind, use) : undefined;
      if (!ps) return { ok: true, schema: undefined }; // unknown plugin: validation reports it
      s = { ...ps, properties: { use: { type: 'string' }, ...(ps.properties ?? {}) } };
    }
    if (typeof seg === 'number') {
      if (!s.items) return { ok: false, at: path.slice(0, i), key: seg, candidates: [], reason: `${formatPath(path.slice(0, i)) || 'the recipe'} is not a list` };
      s = s.items;
    } else {
      const props = s.properties ?? {};
      if (seg in props) s = props[seg];
      else if (s.additionalProperties && typeof s.additionalProperties === 'object') s = s.additionalProperties;
      else if (s.additionalProperties === true || (!s.properties && !s.items)) s = undefined;
      else return { ok: false, at: path.slice(0, i), key: seg, candidates: Object.keys(props), reason: 'no such key' };
    }
    value = value?.[seg];
  }
  return { ok: true, schema: s };
}
