// One ajv instance for recipes and plugin options: every error at once (allErrors), defaults
// filled in (useDefaults), and the failing schema/data kept on each error (verbose) so messages
// can say "did you mean". `x-plugin: <kind>` marks a plugin entry in the recipe schema, `x-stage:
// <name>` a stage's section.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { UserError } from '../errors.ts';
import { didYouMean } from './did-you-mean.ts';
import { formatPath, type PathSeg } from './positions.ts';
import type { JSONSchema } from '../plugin.ts';

export const ajv = new Ajv({ allErrors: true, useDefaults: true, verbose: true, strict: false });
ajv.addKeyword({ keyword: 'x-plugin', schemaType: 'string' });
ajv.addKeyword({ keyword: 'x-stage', schemaType: 'string' });

const compiled = new WeakMap<object, ValidateFunction>();

export function validator(schema: JSONSchema): ValidateFunction {
  let v = compiled.get(schema);
  if (!v) {
    v = ajv.compile(schema);
    compiled.set(schema, v);
  }
  return v;
}

/** "/data/train/0/limit" -> ['data', 'train', 0, 'limit'] */
export function pointerToPath(pointer: string): PathSeg[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

export interface SchemaProblem {
  path: PathSeg[];
  message: string;
  /** point at the key rather than the value (unknown keys) */
  atKey?: boolean;
}

/** Turn ajv errors into plain messages at YAML paths. `base` prefixes the paths (a plugin entry's location). */
export function describeErrors(errors: ErrorObject[], base: PathSeg[], what: 'key' | 'option' = 'key'): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    const path = [...base, ...pointerToPath(e.instancePath)];
    let p: SchemaProblem;
    switch (e.keyword) {
      case 'additionalProperties': {
        const key = String((e.params as { additionalProperty: string }).additionalProperty);
        const known = Object.keys((e.parentSchema as JSONSchema | undefined)?.properties ?? {});
        // a close name if there is one, else the list of known names
        const hint = didYouMean(key, known) || (known.length ? `; known ${what}s: ${known.join(', ')}` : `; this mapping takes no ${what}s`);
        p = { path: [...path, key], message: `unknown ${what} "${key}"${hint}`, atKey: true };
        break;
      }
      case 'required':
        p = { path, message: `missing required ${what} "${(e.params as { missingProperty: string }).missingProperty}"`, atKey: true };
        break;
      case 'type': {
        const t = String((e.params as { type: string | string[] }).type).split(',').join(' or ');
        p = { path, message: `must be ${t}, got ${show(e.data)}` };
        break;
      }
      case 'enum': {
        const allowed = (e.params as { allowedValues: unknown[] }).allowedValues;
        const hint = typeof e.data === 'string' ? didYouMean(e.data, allowed.map(String)) : '';
        p = { path, message: `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${show(e.data)}${hint}` };
        break;
      }
      default:
        p = { path, message: `${e.message ?? e.keyword}${e.data !== undefined && typeof e.data !== 'object' ? `, got ${show(e.data)}` : ''}` };
    }
    const k = formatPath(p.path) + '|' + p.message;
    if (!seen.has(k)) out.push(p), seen.add(k);
  }
  return out;
}

function show(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'a list';
  if (typeof x === 'object') return 'a mapping';
  return `${typeof x} ${JSON.stringify(x)}`;
}

export function problemToError(p: SchemaProblem, where: (path: PathSeg[], key: boolean) => UserError['where']): UserError {
  return new UserError(p.message, { where: where(p.path, !!p.atKey) });
}
