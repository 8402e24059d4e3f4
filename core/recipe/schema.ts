// The recipe schema (schemas/recipe.schema.json) and how to walk it: which schema applies at a
// YAML path, switching to a plugin's options schema inside a plugin entry (`x-plugin: <kind>`).
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

/** Every plugin-entry location in a recipe: [YAML path, kind, entry]. */
export function pluginEntries(recipe: Record<string, any>): { path: PathSeg[]; kind: PluginKind; entry: Record<string, unknown> }[] {
  const out: { path: PathSeg[]; kind: PluginKind; entry: Record<string, unknown> }[] = [];
  const walk = (schema: JSONSchema, value: unknown, path: PathSeg[]) => {
    const kind = schema['x-plugin'] as PluginKind | undefined;
    if (kind) {
      if (value && typeof value === 'object' && !Array.isArray(value) && typeof (value as any).use === 'string') {
        out.push({ path, kind, entry: value as Record<string, unknown> });
      }
      return;
    }
    const s = deref(schema);
    if (Array.isArray(value) && s.items) value.forEach((v, i) => walk(s.items!, v, [...path, i]));
    else if (value && typeof value === 'object' && s.properties) {
      for (const [k, sub] of Object.entries(s.properties)) if (k in (value as object)) walk(sub, (value as any)[k], [...path, k]);
    }
  };
  walk(recipeSchema, recipe, []);
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
  pluginSchema: (kind: PluginKind, name: string) => JSONSchema | undefined,
): SchemaLookup {
  let s: JSONSchema | undefined = recipeSchema;
  let value: any = recipe;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    if (!s) return { ok: true, schema: undefined };
    const kind = s['x-plugin'] as PluginKind | undefined;
    s = deref(s);
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
