// Resume safety: a run continues only with the recipe it started with. The recipe is compared
// key by key (after resolution) and every difference is named: "train.batch_size: 8 -> 16".
import { createHash } from 'node:crypto';

/** JSON with object keys sorted, so equal recipes hash equally whatever the key order */
export function canonicalJson(x: unknown): string {
  if (Array.isArray(x)) return `[${x.map(canonicalJson).join(',')}]`;
  if (x && typeof x === 'object')
    return `{${Object.keys(x)
      .filter((k) => (x as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((x as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(x ?? null);
}

export function recipeHash(recipe: unknown): string {
  return createHash('sha256').update(canonicalJson(recipe)).digest('hex');
}

const show = (v: unknown) => (v === undefined ? '(absent)' : JSON.stringify(v));

/** keys that do not change what is computed: where runs go, how many threads */
export const RESUME_IGNORED = new Set(['runtime.out_dir', 'runtime.threads']);

/** every path where `before` and `after` differ, as "path: before -> after" (RESUME_IGNORED skipped) */
export function diffRecipes(before: unknown, after: unknown, path = ''): string[] {
  if (RESUME_IGNORED.has(path)) return [];
  const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
  if (isObj(before) && isObj(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => diffRecipes(before[k], after[k], path ? `${path}.${k}` : k));
  }
  if (Array.isArray(before) && Array.isArray(after) && before.length === after.length)
    return before.flatMap((b, i) => diffRecipes(b, after[i], `${path}[${i}]`));
  return canonicalJson(before) === canonicalJson(after) ? [] : [`${path || '(root)'}: ${show(before)} -> ${show(after)}`];
}
