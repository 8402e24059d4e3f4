// Command-line overrides: `train.batch_size=8`, `data.train[0].limit=100`, `model.vision.use=my-encoder`.
// The value is read as YAML (numbers stay numbers, `[a, b]` is a list), then typed through the
// schema at that path ("8" where the schema wants an integer becomes 8; 123 where it wants a
// string becomes "123"). A path the schema does not know is an error with "did you mean".
// `~model.vision.inter_dim` deletes a key (its default applies again), and setting a plugin
// entry's `use` to another plugin drops the entry's other options (as `extends` does), so
// `model.vision.use=x model.vision.hidden_dim=64` starts from x's defaults.
import { parse as parseYaml } from 'yaml';
import { UserError } from '../errors.ts';
import type { JSONSchema } from '../plugin.ts';
import type { PluginKind } from '../types.ts';
import { didYouMean } from './did-you-mean.ts';
import { formatPath, parsePath, type PathSeg } from './positions.ts';
import { deref, schemaAt } from './schema.ts';

export interface Override {
  text: string; // as typed: "train.batch_size=8"
  path: PathSeg[];
  raw: string;
  /** `~a.b`: delete the key */
  unset?: boolean;
}

export function isOverride(arg: string): boolean {
  return /^[A-Za-z_][\w.[\]-]*=/.test(arg) || /^~[A-Za-z_][\w.[\]-]*$/.test(arg);
}

export function parseOverride(text: string): Override {
  if (text.startsWith('~')) {
    const path = parsePath(text.slice(1).trim());
    if (!path || typeof path[0] !== 'string') {
      throw new UserError(`bad override "${text}"`, { where: { file: `override ${text}` }, hint: 'write ~a.b.c to delete a key' });
    }
    return { text, path, raw: '', unset: true };
  }
  const eq = text.indexOf('=');
  const path = eq > 0 ? parsePath(text.slice(0, eq).trim()) : undefined;
  if (!path || typeof path[0] !== 'string') {
    throw new UserError(`bad override "${text}"`, { where: { file: `override ${text}` }, hint: 'write overrides as a.b.c=value or data.train[0].limit=100' });
  }
  return { text, path, raw: text.slice(eq + 1) };
}

/** Apply overrides in order; returns the problems (the recipe is changed in place). */
export function applyOverrides(
  recipe: Record<string, any>,
  overrides: Override[],
  pluginSchema: (kind: PluginKind, name: string) => JSONSchema | undefined,
  /** the recipe schema with its stage sections (recipeSchemaFor) */
  root?: JSONSchema,
): UserError[] {
  const errors: UserError[] = [];
  for (const ov of overrides) {
    const where = { file: `override ${ov.text}` };
    const found = schemaAt(ov.path, recipe, pluginSchema, root);
    if (!found.ok) {
      const bad = formatPath([...found.at, found.key]);
      const msg =
        found.reason === 'no such key'
          ? `unknown key "${found.key}"${found.at.length ? ` under ${formatPath(found.at)}` : ''}` +
            (didYouMean(String(found.key), found.candidates) || (found.candidates.length ? `; known keys: ${found.candidates.join(', ')}` : ''))
          : found.reason;
      errors.push(new UserError(`${bad}: ${msg}`, { where }));
      continue;
    }
    if (ov.unset) {
      const problem = deleteAt(recipe, ov.path);
      if (problem) errors.push(new UserError(problem, { where, hint: 'a ~key override deletes a key the recipe (or the one it extends) sets' }));
      continue;
    }
    let value: unknown;
    try {
      value = ov.raw === '' ? '' : parseYaml(ov.raw);
    } catch {
      value = ov.raw;
    }
    value = coerce(found.schema, value, ov.raw);
    const problem = setAt(recipe, ov.path, value);
    if (problem) errors.push(new UserError(problem, { where }));
  }
  return errors;
}

function types(schema: JSONSchema | undefined): string[] {
  if (!schema) return [];
  const s = deref(schema);
  if (s.type) return Array.isArray(s.type) ? [...s.type] : [s.type as string];
  if (s.enum) return [...new Set(s.enum.map((v) => (v === null ? 'null' : typeof v)))];
  return [];
}

/** Fit a YAML-parsed value to the schema's type, when the text clearly means it. */
export function coerce(schema: JSONSchema | undefined, value: unknown, raw: string): unknown {
  const t = types(schema);
  if (t.length === 0) return value;
  const has = (x: string) => t.includes(x);
  if (typeof value === 'string') {
    const s = value.trim();
    if ((has('integer') && /^[-+]?\d+$/.test(s)) || (has('number') && s !== '' && Number.isFinite(Number(s)))) return Number(s);
    if (has('boolean') && (s === 'true' || s === 'false')) return s === 'true';
    if (has('null') && s === 'null') return null;
    return value;
  }
  if ((typeof value === 'number' || typeof value === 'boolean' || value === null) && has('string')) {
    const ok = (typeof value === 'number' && (has('number') || (has('integer') && Number.isInteger(value)))) ||
      (typeof value === 'boolean' && has('boolean')) || (value === null && has('null'));
    if (!ok) return raw.trim();
  }
  return value;
}

function setAt(root: Record<string, any>, path: PathSeg[], value: unknown): string | undefined {
  let node: any = root;
  for (let i = 0; i < path.length - 1; i++) {
    const seg = path[i];
    const nextIsIndex = typeof path[i + 1] === 'number';
    if (node[seg] === undefined || node[seg] === null) {
      if (typeof seg === 'number') return `${formatPath(path.slice(0, i))} has no entry [${seg}] (it has ${node.length})`;
      if (nextIsIndex) return `${formatPath(path.slice(0, i + 1))} is not set, so it has no entry [${path[i + 1]}]`;
      node[seg] = {};
    }
    node = node[seg];
    if (typeof node !== 'object') return `${formatPath(path.slice(0, i + 1))} is not a mapping or list`;
  }
  const last = path[path.length - 1];
  if (typeof last === 'number' && (!Array.isArray(node) || last > node.length)) {
    return `${formatPath(path.slice(0, -1))} has no entry [${last}] (it has ${Array.isArray(node) ? node.length : 0})`;
  }
  // another plugin in a plugin entry: the old plugin's options do not carry over
  if (last === 'use' && typeof node.use === 'string' && node.use !== value) for (const k of Object.keys(node)) delete node[k];
  node[last] = value;
  return undefined;
}

function deleteAt(root: Record<string, any>, path: PathSeg[]): string | undefined {
  let node: any = root;
  for (const seg of path.slice(0, -1)) {
    node = node?.[seg];
    if (node === null || typeof node !== 'object') break;
  }
  const last = path[path.length - 1];
  if (node === null || typeof node !== 'object' || !(last in node)) return `${formatPath(path)} is not set, so there is nothing to delete`;
  if (Array.isArray(node)) node.splice(last as number, 1);
  else delete node[last];
  return undefined;
}
