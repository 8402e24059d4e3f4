// The Hub cache layout, shared with Python's huggingface_hub (so either can reuse the other's files):
//
//   $HF_HUB_CACHE/models--owner--name/          (datasets--owner--name for datasets)
//     refs/main                                 text file: the commit a branch/tag pointed to
//     blobs/<etag>                              file contents; etag = sha256 (LFS) or git blob sha1
//     snapshots/<commit>/<path>                 relative symlink -> ../../blobs/<etag>
//     nanovlm-ts/<commit>.listing.json          ours: the repo listing at that commit (names,
//                                               sizes, hashes), so a later run knows the snapshot
//                                               is complete without asking the Hub
//
// A blob is written as blobs/<etag>.incomplete-<random>, verified (size, hash) and only then
// renamed: a partial download is never mistaken for a complete one.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { copyFile, lstat, mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { UserError } from '../errors.ts';
import { safeJoin } from './paths.ts';

export type RepoType = 'model' | 'dataset';

/** One file of a repo listing (what GET /api/{type}s/{repo}/tree returns for a file). */
export interface ListedFile {
  path: string;
  /** bytes of the file's content (the LFS object's size for LFS files) */
  size: number;
  /** git blob sha1 of the (pointer) file */
  oid: string;
  /** sha256 of the content, for LFS files */
  sha256?: string;
}

export const COMMIT = /^[0-9a-f]{40}$/;

export function repoFolder(cacheDir: string, type: RepoType, repo: string): string {
  return join(cacheDir, `${type}s--${repo.split('/').join('--')}`);
}

export function snapshotFolder(storage: string, commit: string): string {
  if (!COMMIT.test(commit)) throw new UserError(`the Hub returned an invalid commit id ${JSON.stringify(commit)}`);
  return join(storage, 'snapshots', commit);
}

/** The commit a branch/tag name resolved to last time, or undefined. */
export function readRef(storage: string, revision: string): string | undefined {
  if (COMMIT.test(revision)) return revision;
  try {
    const c = readFileSync(safeJoin(join(storage, 'refs'), revision, 'the revision name'), 'utf8').trim();
    return COMMIT.test(c) ? c : undefined;
  } catch (e) {
    if (e instanceof UserError) throw e;
    return undefined;
  }
}

export async function writeRef(storage: string, revision: string, commit: string): Promise<void> {
  if (COMMIT.test(revision)) return;
  await atomicWrite(safeJoin(join(storage, 'refs'), revision, 'the revision name'), commit);
}

function listingPath(storage: string, commit: string): string {
  return join(storage, 'nanovlm-ts', `${commit}.listing.json`);
}

export function readListing(storage: string, commit: string): ListedFile[] | undefined {
  try {
    const files = JSON.parse(readFileSync(listingPath(storage, commit), 'utf8')).files as ListedFile[];
    return Array.isArray(files) ? files : undefined;
  } catch {
    return undefined;
  }
}

export async function writeListing(storage: string, commit: string, files: ListedFile[]): Promise<void> {
  await atomicWrite(listingPath(storage, commit), JSON.stringify({ format_version: 1, commit, files }, null, 1));
}

/** Write `data` to a temp name beside `path`, then rename over it. */
export async function atomicWrite(path: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** The name a file's content has in blobs/: its sha256 (LFS) or git sha1. */
export function etagOf(f: ListedFile): string {
  const etag = f.sha256 ?? f.oid;
  if (!/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(etag ?? '')) {
    throw new UserError(`the Hub listing gives ${JSON.stringify(f.path)} an invalid hash ${JSON.stringify(etag)}`);
  }
  return etag;
}

/** Size of the file at `path` following symlinks, or -1 when absent. */
export function sizeOf(path: string): number {
  try {
    const s = statSync(path);
    return s.isFile() ? s.size : -1;
  } catch {
    return -1;
  }
}

/**
 * Which of `wanted` are not complete in the snapshot: absent, or (when the listing is known) of
 * the wrong size.
 */
export function missingFiles(snapshot: string, wanted: { path: string; size?: number }[]): string[] {
  return wanted
    .filter((f) => {
      const n = sizeOf(safeJoin(snapshot, f.path, 'the cache'));
      return n < 0 || (f.size !== undefined && n !== f.size);
    })
    .map((f) => f.path);
}

/** Incremental hasher that checks what arrives against the listing. */
export class Verifier {
  private readonly hash: ReturnType<typeof createHash>;
  bytes = 0;
  constructor(private readonly file: ListedFile) {
    if (file.sha256) this.hash = createHash('sha256');
    else {
      // git blob id: sha1("blob <size>\0" + content)
      this.hash = createHash('sha1');
      this.hash.update(`blob ${file.size}\0`);
    }
  }
  update(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
  }
  /** null when size and hash match, else what is wrong */
  problem(): string | null {
    if (this.bytes !== this.file.size) return `got ${this.bytes} of ${this.file.size} bytes`;
    const got = this.hash.digest('hex');
    const want = this.file.sha256 ?? this.file.oid;
    if (got !== want) return `${this.file.sha256 ? 'sha256' : 'git sha1'} is ${got}, the Hub lists ${want}`;
    return null;
  }
}

/** A temp path for a blob being downloaded (never the blob's final name). */
export function incompletePath(blob: string): string {
  return `${blob}.incomplete-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Point snapshots/<commit>/<path> at blobs/<etag> (relative symlink; a copy where symlinks fail). */
export async function linkIntoSnapshot(blob: string, pointer: string): Promise<void> {
  await mkdir(dirname(pointer), { recursive: true });
  if (await lstat(pointer).catch(() => null)) await rm(pointer, { force: true });
  try {
    await symlink(relative(dirname(pointer), blob), pointer);
  } catch (e) {
    // another resolve of the same repo linked it first
    if ((e as NodeJS.ErrnoException).code === 'EEXIST' && sizeOf(pointer) === sizeOf(blob)) return;
    const tmp = incompletePath(pointer);
    await copyFile(blob, tmp);
    await rename(tmp, pointer);
  }
}

export function blobPath(storage: string, f: ListedFile): string {
  return join(storage, 'blobs', etagOf(f));
}
