// Resolve a recipe: load it with its `extends` chain, load the plugin modules it lists, apply
// command-line overrides, validate everything (all errors at once) and fill in defaults.
// The result is plain data plus where each value came from.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { UserError, UserErrors } from '../errors.ts';
import type { Registry } from '../registry.ts';
import type { PluginKind } from '../types.ts';
import { loadWithExtends } from './extends.ts';
import { applyOverrides, parseOverride, type Override } from './overrides.ts';
import { formatPath, type SourceMap } from './positions.ts';
import { recipeSchema, recipeSchemaFor, stagePlugins } from './schema.ts';
import { validateRecipe } from './validate.ts';

export interface ResolvedRecipe {
  data: Record<string, any>;
  /** absolute path of the recipe file */
  file: string;
  /** its directory: relative paths in the recipe resolve against it */
  dir: string;
  positions: SourceMap;
  /** the extends chain, this file first */
  chain: string[];
}

export async function resolveRecipe(
  file: string,
  opts: {
    registry: Registry;
    overrides?: string[];
    /**
     * where the recipe's relative paths resolve (default: the recipe file's folder); a run's or model
     * folder's saved recipe.yaml passes the folder of the recipe it was resolved from (savedRecipe)
     */
    baseDir?: string;
  },
): Promise<ResolvedRecipe> {
  const { registry } = opts;
  const merged = loadWithExtends(file);
  const { data, positions } = merged;
  const errors: UserError[] = [];

  // plugin modules first: their names may be used anywhere in the recipe
  if (Array.isArray(data.plugins)) {
    const specs = data.plugins
      .map((spec, i) => ({ spec, where: positions.lookup(['plugins', i]) }))
      .filter((s): s is { spec: string; where: ReturnType<SourceMap['lookup']> } => typeof s.spec === 'string')
      .map((s) => ({ ...s, baseDir: opts.baseDir ?? dirname(s.where.file ?? merged.chain[0]) }));
    try {
      await registry.loadModules(specs);
    } catch (e) {
      if (e instanceof UserError) errors.push(e);
      else throw e;
    }
  }

  const overrides: Override[] = [];
  for (const text of opts.overrides ?? []) {
    try {
      overrides.push(parseOverride(text));
    } catch (e) {
      errors.push(e as UserError);
    }
  }
  const pluginSchema = (kind: PluginKind, name: string) => (registry.has(kind, name) ? registry.get(kind, name).options : undefined);
  errors.push(...applyOverrides(data, overrides, pluginSchema, recipeSchemaFor(stagePlugins(registry))));
  for (const o of overrides) positions.overrides.set(formatPath(o.path), `override ${o.text}`);

  errors.push(...validateRecipe(data, registry, positions));
  if (errors.length) throw new UserErrors(sortErrors(errors));
  return { data, file: merged.chain[0], dir: opts.baseDir ? resolve(opts.baseDir) : dirname(merged.chain[0]), positions, chain: merged.chain };
}

/**
 * The recipe a run directory or a published model folder carries (`recipe.yaml`, written resolved)
 * and the folder its relative paths resolve against: the original recipe's folder, from the run's
 * run.json or the `# resolved from <file>` line recipeToYaml writes. null when there is none.
 */
export function savedRecipe(folder: string): { file: string; baseDir: string } | null {
  const file = join(folder, 'recipe.yaml');
  if (!existsSync(file) || !statSync(file).isFile()) return null;
  let original: string | undefined;
  try {
    original = JSON.parse(readFileSync(join(folder, 'run.json'), 'utf8')).recipe;
  } catch {
    original = /^# resolved from (.+?)(?: <- |\n)/.exec(readFileSync(file, 'utf8'))?.[1];
  }
  const baseDir = original && isAbsolute(original) && existsSync(dirname(original)) ? dirname(original) : folder;
  return { file, baseDir };
}

/**
 * The resolved recipe as YAML (written to <run dir>/recipe.yaml): the sections in the recipe
 * schema's order, the stages' sections (in the order of `stages`) before `stages`.
 */
export function recipeToYaml(r: ResolvedRecipe): string {
  const { data } = r;
  const order = Object.keys(recipeSchema.properties ?? {});
  const listed: unknown[] = Array.isArray(data.stages) ? data.stages : [];
  const rank = (k: string) => (order.includes(k) ? [order.indexOf(k), 0] : [order.indexOf('stages') - 0.5, listed.includes(k) ? listed.indexOf(k) : listed.length]);
  const sorted = Object.fromEntries(
    Object.keys(data)
      .sort((a, b) => rank(a)[0] - rank(b)[0] || rank(a)[1] - rank(b)[1] || a.localeCompare(b))
      .filter((k) => k !== 'extends')
      .map((k) => [k, data[k]]),
  );
  return `# resolved from ${r.chain.join(' <- ')}\n` + stringify(sorted, { lineWidth: 0 });
}


/** overrides first, then by file, line, column */
function sortErrors(errors: UserError[]): UserError[] {
  const key = (e: UserError) => [e.where.file?.startsWith('override ') ? 0 : 1, e.where.file ?? '', e.where.line ?? 0, e.where.col ?? 0] as const;
  return errors
    .map((e, i) => ({ e, i, k: key(e) }))
    .sort((a, b) => a.k[0] - b.k[0] || a.k[1].localeCompare(b.k[1]) || a.k[2] - b.k[2] || a.k[3] - b.k[3] || a.i - b.i)
    .map((x) => x.e);
}
