// Where a model or dataset comes from: a local folder, or a Hub repo id `owner/name[@revision]`
// downloaded into the Hugging Face cache ($HF_HOME/hub, the Hub's own layout, see cache.ts).
//
//   resolveSource('runs/x/model')                      -> '/abs/runs/x/model'
//   resolveSource('owner/name')                        -> '$HF_HOME/hub/models--owner--name/snapshots/<commit>'
//   resolveSource('owner/data@v1', {repoType: 'dataset', files: p => p.endsWith('.parquet')})
//
// A repo already complete in the cache is returned without any HTTP request (a branch name is
// taken at the commit it pointed to when it was downloaded; pin `@<commit>` or delete
// refs/<branch> to refresh). HF_HUB_OFFLINE=1 never touches the network.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { UserError } from '../errors.ts';
import { hubCacheDir, isOffline } from './config.ts';
import { hubClient, type RetryOptions } from './http.ts';
import { listRepo, fetchFile, resolveCommit } from './download.ts';
import {
  COMMIT,
  missingFiles,
  readListing,
  readRef,
  repoFolder,
  snapshotFolder,
  writeListing,
  writeRef,
  type RepoType,
} from './cache.ts';

export { hubCacheDir, hubEndpoint, isOffline, readToken, redact } from './config.ts';
export { hubClient, hubError } from './http.ts';
export { unsafeReason, safeJoin } from './paths.ts';
export { uploadFolder, listFolder, formatBytes, repoUrl, type UploadFile, type UploadOptions, type UploadResult } from './upload.ts';

export interface ResolveOptions {
  repoType?: RepoType;
  /** which files of the repo to fetch: a list of paths or a predicate (default: all) */
  files?: string[] | ((path: string) => boolean);
  /** branch, tag or commit; overrides an `@revision` in the id */
  revision?: string;
  /** progress lines ("downloading model.safetensors (343416 bytes)") */
  log?: (line: string) => void;
  /** retry policy for transient HTTP failures (tests shorten the backoff) */
  retry?: RetryOptions;
  /** a relative local path resolves against this folder (the recipe's), default the current directory */
  baseDir?: string;
}

// Hub rule for each half of `owner/name`: letters, digits, '-', '_', '.'; no leading/trailing
// '-' or '.', no '--' or '..'; at most 96 characters.
const NAME = /^(?![-.])(?!.*(--|\.\.))[A-Za-z0-9._-]{1,96}(?<![-.])$/;
const REVISION = /^(?!.*\.\.)(?!\/)[A-Za-z0-9._\-/]{1,200}(?<!\/)$/;

/** Split `owner/name[@revision]`; null when `s` is not a repo id. */
export function parseRepoId(s: string): { repo: string; revision?: string } | null {
  if (typeof s !== 'string') return null;
  const at = s.indexOf('@');
  const repo = at >= 0 ? s.slice(0, at) : s;
  const revision = at >= 0 ? s.slice(at + 1) : undefined;
  if (revision !== undefined && !REVISION.test(revision)) return null;
  const parts = repo.split('/');
  if (parts.length !== 2 || !parts.every((p) => NAME.test(p))) return null;
  return { repo, revision };
}

/** True for `owner/name` or `owner/name@revision` (Hub naming rules). */
export function isRepoId(s: string): boolean {
  return parseRepoId(s) !== null;
}

/**
 * A local folder holding the source: an existing path is returned as an absolute path; a repo id
 * is downloaded into the cache (or found there) and its snapshot folder returned.
 */
export async function resolveSource(idOrPath: string, opts: ResolveOptions = {}): Promise<string> {
  const local = resolve(opts.baseDir ?? '.', idOrPath);
  if (existsSync(local)) return local;
  const id = parseRepoId(idOrPath);
  const missingPath = id && missingLocalPath(idOrPath, opts.baseDir ?? '.');
  if (missingPath) throw missingPath;
  if (!id) {
    throw new UserError(`"${idOrPath}" is neither an existing path nor a Hub repo id (owner/name[@revision])`, {
      hint: `check the path (relative paths resolve against ${opts.baseDir ? 'the recipe folder' : 'the current directory'}) or write the repo id as owner/name`,
    });
  }
  if (opts.revision !== undefined && !REVISION.test(opts.revision)) {
    throw new UserError(`invalid revision ${JSON.stringify(opts.revision)} for ${id.repo}`);
  }
  try {
    return await resolveRepo(id.repo, opts.revision ?? id.revision ?? 'main', opts);
  } catch (e) {
    // "owner/name" may have been meant as a local folder: say that none exists either
    if (e instanceof UserError && /\(HTTP (401|404)[,)]/.test(e.message) && !/EntryNotFound|RevisionNotFound/.test(e.message)) {
      throw new UserError(e.message, { where: e.where, hint: `${e.hint ?? ''}${e.hint ? '; ' : ''}if you meant a local folder: ${local} does not exist` });
    }
    throw e;
  }
}

/**
 * `runs/nope` is a valid repo id (owner/name), but when `runs/` is a local folder the user meant a path: say that
 * it does not exist (with the closest names there) instead of asking the Hub for it.
 */
function missingLocalPath(idOrPath: string, baseDir: string): UserError | null {
  const owner = resolve(baseDir, idOrPath.split('/')[0]);
  if (!existsSync(owner) || !statSync(owner).isDirectory()) return null;
  const parent = resolve(baseDir, idOrPath, '..');
  const local = resolve(baseDir, idOrPath);
  let near = '';
  try {
    const names = readdirSync(parent);
    const want = basename(local);
    const close = names.filter((n) => n.startsWith(want.slice(0, 3)) || want.startsWith(n.slice(0, Math.max(3, n.length - 3)))).slice(0, 5);
    if (close.length) near = `; ${parent} has ${close.join(', ')}`;
  } catch {
    /* unreadable parent: no suggestions */
  }
  return new UserError(`no local folder ${idOrPath} (${local} does not exist)`, {
    hint: `check the path${near}; ${idOrPath.split('/')[0]}/ is a local folder, so this was not tried as a Hub repo id`,
  });
}

async function resolveRepo(repo: string, revision: string, opts: ResolveOptions): Promise<string> {
  const type = opts.repoType ?? 'model';
  const label = `${type} ${repo}@${revision}`;
  const storage = repoFolder(hubCacheDir(), type, repo);
  const pick = selector(opts.files);

  // 1. the cache: complete for what is wanted -> no HTTP at all
  const names = Array.isArray(opts.files) ? opts.files : undefined;
  const cached = readRef(storage, revision);
  if (cached) {
    const snapshot = snapshotFolder(storage, cached);
    const listing = readListing(storage, cached);
    let missing: string[];
    if (listing) {
      const absent = names?.filter((p) => !listing.some((f) => f.path === p)) ?? [];
      // a pinned commit, or offline, cannot gain files; a branch may have moved: ask the Hub
      if (absent.length && (COMMIT.test(revision) || isOffline())) throw noSuchFiles(label, absent);
      missing = [...absent, ...missingFiles(snapshot, listing.filter((f) => pick(f.path)))];
    } else if (names) {
      missing = missingFiles(snapshot, names.map((path) => ({ path })));
    } else {
      // cached by another tool (no listing of ours): completeness is unknown; offline, take it as is
      missing = isOffline() && existsSync(snapshot) ? [] : ['(unknown: no listing cached)'];
    }
    if (missing.length === 0) return snapshot;
    if (isOffline()) throw offlineError(label, missing, snapshot);
  } else if (isOffline()) {
    throw offlineError(label, names ?? ['every file (this revision was never downloaded)'], storage);
  }

  // 2. the Hub
  const client = hubClient({ ...opts.retry, log: opts.log });
  const commit = await resolveCommit(client, type, repo, revision);
  const snapshot = snapshotFolder(storage, commit);
  const listing = await listRepo(client, type, repo, commit, snapshot);
  const absent = names?.filter((p) => !listing.some((f) => f.path === p)) ?? [];
  if (absent.length) throw noSuchFiles(label, absent);
  await mkdir(snapshot, { recursive: true });
  for (const f of listing.filter((f) => pick(f.path))) {
    await fetchFile(client, type, repo, commit, storage, f, opts.log);
  }
  await writeListing(storage, commit, listing);
  await writeRef(storage, revision, commit);
  return snapshot;
}

function selector(files: ResolveOptions['files']): (p: string) => boolean {
  if (!files) return () => true;
  if (typeof files === 'function') return files;
  const set = new Set(files);
  return (p) => set.has(p);
}

function noSuchFiles(label: string, paths: string[]): UserError {
  return new UserError(`${label} has no file ${paths.map((p) => JSON.stringify(p)).join(', ')}`, {
    hint: 'check the file names against the repo on the Hub (and the revision after "@")',
  });
}

function offlineError(label: string, missing: string[], where: string): UserError {
  return new UserError(
    `HF_HUB_OFFLINE is set and ${label} is not complete in the cache: missing ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`,
    {
      where: { file: where },
      hint: 'run once without HF_HUB_OFFLINE to download it (HF_HOME must point at the same cache), or pass a local folder',
    },
  );
}
