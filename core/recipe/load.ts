// Read one recipe file: YAML with source positions, bounded against hostile input
// (size cap, alias-expansion cap, nesting cap). Every YAML problem is reported at once.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { UserError, UserErrors } from '../errors.ts';
import { SourceMap } from './positions.ts';
import { hasModelWeights } from '../weights/model-weights.ts';

/** The value of `key: !unset` in a recipe: delete the key an extended recipe set (core/recipe/extends.ts). */
export const UNSET: unique symbol = Symbol.for('nanovlm:unset');
const unsetTag = { tag: '!unset', identify: (v: unknown) => v === UNSET, resolve: () => UNSET };

export const MAX_RECIPE_BYTES = 1 << 20; // 1 MiB: a recipe is a page of text
export const MAX_ALIAS_COUNT = 50; // stops "billion laughs" alias bombs
export const MAX_DEPTH = 32;

export interface LoadedFile {
  file: string;
  data: Record<string, unknown>;
  positions: SourceMap;
}

export function loadRecipeFile(file: string): LoadedFile {
  let size: number;
  try {
    const st = statSync(file);
    if (st.isDirectory()) throw folderNotRecipe(file);
    size = st.size;
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`recipe not found: ${file}`, { hint: 'check the path (relative paths resolve against the working directory, or the extending recipe for `extends`)' });
  }
  if (size > MAX_RECIPE_BYTES) {
    throw new UserError(`recipe is ${size} bytes, more than the ${MAX_RECIPE_BYTES}-byte limit`, {
      where: { file: displayPath(file) },
      hint: 'a recipe is a page of settings; put data in files the recipe names (e.g. a folder dataset)',
    });
  }
  const text = readFileSync(file, 'utf8');
  return parseRecipeText(text, displayPath(file));
}

export function parseRecipeText(text: string, file: string): LoadedFile {
  const lc = new LineCounter();
  let doc;
  try {
    doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, customTags: [unsetTag] });
  } catch (e) {
    if (e instanceof RangeError) throw tooDeep(file);
    throw e;
  }
  if (doc.errors.some((e) => /Maximum call stack/.test(e.message))) throw tooDeep(file);
  if (doc.errors.length) {
    throw new UserErrors(
      doc.errors.map((e) => {
        const p = lc.linePos(e.pos[0]);
        return new UserError(`invalid YAML: ${firstLine(e.message)}`, { where: { file, line: p.line, col: p.col } });
      }),
    );
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    throw new UserError(`invalid YAML: ${firstLine((e as Error).message)}`, {
      where: { file },
      hint: 'YAML aliases are limited; write the values out instead',
    });
  }
  if (data === null || data === undefined) throw new UserError('recipe is empty', { where: { file } });
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new UserError('a recipe must be a YAML mapping (name: ..., model: ..., ...)', { where: { file, line: 1, col: 1 } });
  }
  if (depth(data) > MAX_DEPTH) throw new UserError(`recipe is nested more than ${MAX_DEPTH} levels deep`, { where: { file }, hint: 'a recipe nests a few levels; flatten it' });
  return { file, data: data as Record<string, unknown>, positions: SourceMap.fromDocument(doc, lc, file) };
}

/** a folder given where a recipe file belongs: a run directory, a model folder, or a folder of recipes */
function folderNotRecipe(dir: string): UserError {
  const shown = displayPath(dir);
  if (existsSync(join(dir, 'run.json')) || existsSync(join(dir, 'metrics.jsonl'))) {
    return new UserError(`${shown} is a run directory, not a recipe file`, {
      hint: `to continue that run: vlm run --resume ${shown}; to start a new run from its recipe: vlm run ${join(shown, 'recipe.yaml')}`,
    });
  }
  if (existsSync(join(dir, 'config.json')) && hasModelWeights(dir)) {
    return new UserError(`${shown} is a model folder, not a recipe file`, {
      hint: `use it with --model: vlm generate --model ${shown} --image <file>, vlm eval --model ${shown} [recipe.yaml]` +
        (existsSync(join(dir, 'recipe.yaml')) ? `; the recipe it was trained with is ${join(shown, 'recipe.yaml')}` : ''),
    });
  }
  let yamls: string[] = [];
  try {
    yamls = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).slice(0, 6);
  } catch {
    /* unreadable: no list */
  }
  return new UserError(`${shown} is a folder, not a recipe file`, {
    hint: yamls.length ? `recipes there: ${yamls.map((f) => join(shown, f)).join(', ')}` : 'give the path of a recipe .yaml file',
  });
}

function tooDeep(file: string): UserError {
  return new UserError('recipe is nested too deeply to parse', { where: { file }, hint: `a recipe nests a few levels; at most ${MAX_DEPTH} are accepted` });
}

function firstLine(s: string): string {
  return s.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
}

function depth(x: unknown, d = 0): number {
  if (d > MAX_DEPTH) return d;
  if (x === null || typeof x !== 'object') return d;
  let m = d + 1;
  for (const v of Object.values(x)) m = Math.max(m, depth(v, d + 1));
  return m;
}

/** a path as messages show it: relative to the working directory when it is below it */
export function displayPath(file: string): string {
  const r = relative(process.cwd(), file);
  return r && !r.startsWith('..') && !isAbsolute(r) ? r : file;
}
