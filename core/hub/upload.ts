// Uploading a local folder to a Hub repo in one commit: check the token (whoami), create the repo
// if it is missing (409 = it exists: fine), then commit every file (small ones inline, LFS ones
// through the LFS batch API) with @huggingface/hub's `commit`. `dryRun` lists what would go up and
// touches neither the network nor the token.
import { openAsBlob } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { commit, createRepo, HubApiError, whoAmI } from '@huggingface/hub';
import { UserError } from '../errors.ts';
import { hubEndpoint, isOffline } from './config.ts';
import { hubError, hubClient, type HubClient, type RetryOptions } from './http.ts';
import { unsafeReason } from './paths.ts';
import type { RepoType } from './cache.ts';

export interface UploadFile {
  /** repo-relative path with '/' separators */
  path: string;
  size: number;
  /** absolute local path */
  local: string;
}

export interface UploadOptions {
  repoType?: RepoType;
  private?: boolean;
  /** commit title */
  message: string;
  description?: string;
  dryRun?: boolean;
  log?: (line: string) => void;
  retry?: RetryOptions;
}

export interface UploadResult {
  url: string;
  commit?: string;
  files: UploadFile[];
  bytes: number;
  dryRun: boolean;
}

/** Every regular file below `folder` (sorted; `.git` and temp files skipped). */
export async function listFolder(folder: string): Promise<UploadFile[]> {
  const out: UploadFile[] = [];
  async function walk(dir: string): Promise<void> {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.name === '.git' || /\.(tmp|incomplete)-/.test(e.name)) continue;
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() || e.isSymbolicLink()) {
        const s = await stat(p);
        if (!s.isFile()) continue;
        const path = relative(folder, p).split(sep).join('/');
        const bad = unsafeReason(path);
        if (bad) throw new UserError(`cannot upload ${p}: its name has a ${bad}`, { hint: 'rename the file' });
        out.push({ path, size: s.size, local: p });
      }
    }
  }
  await walk(folder);
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

export function repoUrl(endpoint: string, type: RepoType, repo: string): string {
  return `${endpoint}/${type === 'dataset' ? 'datasets/' : ''}${repo}`;
}

/** Upload `folder` to `repo` (owner/name) in one commit; see the header. */
export async function uploadFolder(folder: string, repo: string, opts: UploadOptions): Promise<UploadResult> {
  const type = opts.repoType ?? 'model';
  const files = await listFolder(folder);
  const bytes = files.reduce((s, f) => s + f.size, 0);
  const log = opts.log ?? (() => {});
  if (opts.dryRun) {
    const url = repoUrl(hubEndpoint(), type, repo);
    log(`dry run: would upload ${files.length} files (${formatBytes(bytes)}) to ${url} in one commit "${opts.message}":`);
    for (const f of files) log(`  ${f.path}  ${formatBytes(f.size)} (${f.size} bytes)`);
    return { url, files, bytes, dryRun: true };
  }
  if (isOffline()) {
    throw new UserError(`HF_HUB_OFFLINE is set, so nothing can be uploaded to ${repo}`, {
      hint: 'unset HF_HUB_OFFLINE to publish, or use --dry-run to see what would be uploaded',
    });
  }
  const client = hubClient({ ...opts.retry, log });
  if (!client.token) {
    throw new UserError(`publishing to ${repo} needs a Hugging Face token and none is set`, {
      hint: `create a token with write access at ${client.endpoint}/settings/tokens, then set HF_TOKEN (or run \`huggingface-cli login\`)`,
    });
  }
  const url = repoUrl(client.endpoint, type, repo);
  const who = await whoAmI({ ...client.params, accessToken: client.token }).catch((e) => {
    throw hubError(e, client, `checking the token with ${client.endpoint}`, { write: true });
  });
  log(`logged in to ${client.endpoint} as ${who.name}`);
  await ensureRepo(client, type, repo, !!opts.private, log);
  const operations = await Promise.all(
    files.map(async (f) => ({ operation: 'addOrUpdate' as const, path: f.path, content: await openAsBlob(f.local) })),
  );
  log(`uploading ${files.length} files (${formatBytes(bytes)}) to ${url}`);
  const out = await commit({
    ...client.params,
    accessToken: client.token,
    repo: { type, name: repo },
    title: opts.message,
    description: opts.description,
    operations,
    useXet: false,
  }).catch((e) => {
    throw hubError(e, client, `uploading to ${type} ${repo}`, { write: true });
  });
  return { url, commit: out?.commit.oid, files, bytes, dryRun: false };
}

async function ensureRepo(client: HubClient, type: RepoType, repo: string, priv: boolean, log: (m: string) => void): Promise<void> {
  try {
    await createRepo({
      ...client.params,
      accessToken: client.token!,
      repo: { type, name: repo },
      ...(priv ? { visibility: 'private' as const } : {}),
    });
    log(`created ${priv ? 'private ' : ''}${type} repo ${repo}`);
  } catch (e) {
    if (e instanceof HubApiError && e.statusCode === 409) {
      log(`${type} repo ${repo} exists: adding a commit`);
      return;
    }
    throw hubError(e, client, `creating ${type} repo ${repo}`, { write: true });
  }
}
