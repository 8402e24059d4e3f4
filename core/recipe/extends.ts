// `extends: base.yaml`: load the chain base-first, deep-merge (the extending file wins, lists
// are replaced, not concatenated) and keep each value's source position. A cycle is an error
// that shows the chain.
import { dirname, relative, resolve } from 'node:path';
import { UserError } from '../errors.ts';
import { displayPath, loadRecipeFile } from './load.ts';
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
  if (ext === undefined) return { data: own.data, positions: own.positions, chain: [abs] };
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

/** objects merge key by key; anything else (lists included) from `over` replaces `base` */
export function deepMerge(base: unknown, over: unknown): unknown {
  if (!isObject(base) || !isObject(over)) return over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = k in base ? deepMerge(base[k], v) : v;
  return out;
}
