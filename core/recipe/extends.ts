// `extends: base.yaml`: load the chain base-first, deep-merge (the extending file wins, lists
// are replaced, not concatenated) and keep each value's source position. A cycle is an error
// that shows the chain. Two rules make swapping a component one line: a plugin entry whose `use`
// changes starts afresh (the parent's options belonged to the parent's plugin; the new plugin's
// defaults apply), and `key: !unset` deletes an inherited key (its default applies again).
import { dirname, relative, resolve } from 'node:path';
import { UserError } from '../errors.ts';
import { displayPath, loadRecipeFile, UNSET } from './load.ts';
import { SourceMap } from './positions.ts';

export interface MergedRecipe {
  data: Record<string, unknown>;
  positions: SourceMap;
  /** the files in the chain, the recipe itself first */
  chain: string[];
}

export function loadWithExtends(file: string, seen: string[] = []): MergedRecipe {
  const abs = resolve(file);
  if (seen.includes(abs)) {
    const chain = [...seen, abs].map((f) => relative(process.cwd(), f) || f).join(' -> ');
    throw new UserError(`circular extends: ${chain}`, { where: { file: displayPath(seen[seen.length - 1]), yamlPath: 'extends' } });
  }
  const own = loadRecipeFile(abs);
  const ext = own.data.extends;
  if (ext === undefined) return { data: stripUnset(own.data) as Record<string, unknown>, positions: own.positions, chain: [abs] };
  if (typeof ext !== 'string') {
    throw new UserError('extends must be a path to another recipe', { where: own.positions.lookup('extends') });
  }
  let base: MergedRecipe;
  try {
    base = loadWithExtends(resolve(dirname(abs), ext), [...seen, abs]);
  } catch (e) {
    // "recipe not found" for the base: say which extends line asked for it
    if (e instanceof UserError && e.message.startsWith('recipe not found')) {
      throw new UserError(`extends: ${e.message}`, { where: own.positions.lookup('extends'), hint: 'the path is relative to this recipe' });
    }
    throw e;
  }
  const data = deepMerge(base.data, own.data) as Record<string, unknown>;
  delete data.extends;
  const positions = new SourceMap();
  positions.overlay(base.positions);
  positions.overlay(own.positions);
  return { data, positions, chain: [abs, ...base.chain] };
}

function isObject(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

/**
 * Objects merge key by key; anything else (lists included) from `over` replaces `base`. A plugin
 * entry whose `use` differs from the base's replaces it whole; `UNSET` deletes the key.
 */
export function deepMerge(base: unknown, over: unknown): unknown {
  if (!isObject(base) || !isObject(over)) return stripUnset(over);
  if (typeof base.use === 'string' && typeof over.use === 'string' && base.use !== over.use) return stripUnset(over);
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === UNSET) delete out[k];
    else out[k] = k in base ? deepMerge(base[k], v) : stripUnset(v);
  }
  return out;
}

/** drop `!unset` keys (and list items) with nothing under them to delete */
function stripUnset(x: unknown): unknown {
  if (Array.isArray(x)) return x.filter((v) => v !== UNSET).map(stripUnset);
  if (!isObject(x)) return x;
  return Object.fromEntries(Object.entries(x).filter(([, v]) => v !== UNSET).map(([k, v]) => [k, stripUnset(v)]));
}
