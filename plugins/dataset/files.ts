// Where a Parquet dataset's files are: a local file, a local folder (optionally with one
// sub-folder per subset, as the_cauldron's `<subset>/train-*.parquet`) or a Hub dataset repo
// (resolved to a local snapshot through core/hub, only the wanted subsets downloaded).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, basename } from 'node:path';
import { UserError } from 'nanovlm-ts/plugin-api';
import { resolveSource } from 'nanovlm-ts/plugin-api';
import { openParquet, openParquetBuffer, type ParquetFile } from '../../core/data/parquet.ts';
import { isRemote, openRemoteFiles } from '../../core/hub/lazy.ts';

function parquetFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...parquetFilesUnder(p));
    else if (e.name.endsWith('.parquet')) out.push(p);
  }
  return out.sort();
}

export async function locateParquet(
  o: {
    path?: string | null;
    repo?: string | null;
    subsets?: string[] | null;
    files?: string[] | null;
    /** which .parquet files of a repo to use (a benchmark's split), instead of subsets / files */
    select?: (path: string) => boolean;
    /** read a Hub repo's files with HTTP range requests instead of downloading them (core/hub/lazy.ts) */
    lazy?: boolean;
  },
  ctx: { recipeDir?: string; yamlPath: string; log?: { info(m: string): void } },
): Promise<{ pf: ParquetFile; stream: number }[]> {
  const subsets = o.subsets && o.subsets.length ? o.subsets : null;
  let root: string;
  if (o.path) {
    root = resolve(ctx.recipeDir ?? '.', o.path);
    if (!existsSync(root))
      throw new UserError(`dataset path ${root} does not exist`, { where: { yamlPath: `${ctx.yamlPath}.path` }, hint: 'relative paths resolve against the recipe file' });
  } else if (o.repo && o.lazy && isRemote(o.repo, ctx.recipeDir)) {
    const wanted = (p: string) => p.endsWith('.parquet') && (o.select ? o.select(p) : o.files ? o.files.includes(p) : true);
    const remote = await openRemoteFiles(o.repo, { files: wanted, log: ctx.log ? (l) => ctx.log!.info(l) : undefined });
    if (!remote.length) throw new UserError(`dataset repo ${o.repo} has no .parquet file for this dataset`, { where: { yamlPath: `${ctx.yamlPath}.repo` }, hint: 'check the repo id (and the revision after "@")' });
    const out: { pf: ParquetFile; stream: number }[] = [];
    for (const f of remote) out.push({ pf: await openParquetBuffer(f.buffer, f.path, f.location), stream: 0 });
    return out;
  } else if (o.repo) {
    const wanted = (p: string) =>
      p.endsWith('.parquet') &&
      (o.select ? o.select(p) : o.files ? o.files.includes(p) : subsets ? subsets.some((s) => p.startsWith(`${s}/`)) : true);
    root = await resolveSource(o.repo, { repoType: 'dataset', files: wanted, log: ctx.log ? (l) => ctx.log!.info(l) : undefined });
  } else {
    throw new UserError('the dataset needs `path` (a local .parquet file or folder) or `repo` (a Hub dataset repo id)', { where: { yamlPath: ctx.yamlPath } });
  }
  const groups: string[][] = [];
  if (statSync(root).isFile()) groups.push([root]);
  else if (o.files) groups.push(o.files.map((f) => join(root, f)));
  else if (subsets) {
    for (const s of subsets) {
      const dir = join(root, s);
      const files = existsSync(dir) ? parquetFilesUnder(dir) : [];
      if (!files.length)
        throw new UserError(`subset "${s}" has no .parquet file under ${dir}`, { where: { yamlPath: `${ctx.yamlPath}.subsets` }, hint: 'check the subset name (a folder of the dataset)' });
      groups.push(files);
    }
  } else {
    const files = parquetFilesUnder(root).filter((f) => !o.select || !o.repo || o.select(relative(root, f)));
    if (!files.length) throw new UserError(`no .parquet file under ${root}`, { where: { yamlPath: `${ctx.yamlPath}.${o.path ? 'path' : 'repo'}` } });
    groups.push(files);
  }
  const out: { pf: ParquetFile; stream: number }[] = [];
  for (const [stream, files] of groups.entries()) {
    for (const f of files) {
      const display = statSync(root).isFile() ? basename(f) : relative(root, f) || basename(f);
      out.push({ pf: await openParquet(f, display), stream });
    }
  }
  return out;
}

export const LOCATION_OPTIONS = {
  path: { type: ['string', 'null'], default: null, description: 'a local .parquet file or a folder of them (relative to the recipe)' },
  repo: { type: ['string', 'null'], default: null, description: 'a Hub dataset repo id owner/name[@revision], downloaded into the Hugging Face cache' },
} as const;
