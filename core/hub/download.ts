// Downloading a repo snapshot into the cache: ask the Hub which commit the revision is, list the
// files at that commit (refusing unsafe names), and fetch each wanted file that the cache does not
// already hold, verifying size and hash before the file gets its final name.
import { createWriteStream } from 'node:fs';
import { rename, rm, mkdir } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { dirname } from 'node:path';
import { datasetInfo, downloadFile, listFiles, modelInfo } from '@huggingface/hub';
import { UserError } from '../errors.ts';
import { redact } from './config.ts';
import { hubError, type HubClient } from './http.ts';
import { safeJoin } from './paths.ts';
import {
  COMMIT,
  blobPath,
  incompletePath,
  linkIntoSnapshot,
  sizeOf,
  snapshotFolder,
  Verifier,
  type ListedFile,
  type RepoType,
} from './cache.ts';

/** The commit a branch/tag/commit names on the Hub. */
export async function resolveCommit(client: HubClient, type: RepoType, repo: string, revision: string): Promise<string> {
  const action = `resolving ${type} ${repo}@${revision}`;
  try {
    const info = type === 'dataset'
      ? await datasetInfo({ ...client.params, name: repo, revision, additionalFields: ['sha'] })
      : await modelInfo({ ...client.params, name: repo, revision, additionalFields: ['sha'] });
    const sha = (info as { sha?: string }).sha;
    if (!sha || !COMMIT.test(sha)) throw new UserError(`${action}: the Hub answered without a valid commit id`);
    return sha;
  } catch (e) {
    throw hubError(e, client, action);
  }
}

/**
 * Every file of the repo at `commit`. Throws (and writes nothing) if any listed name is unsafe:
 * a listing with "../x" or "/etc/x" in it is refused as a whole.
 */
export async function listRepo(client: HubClient, type: RepoType, repo: string, commit: string, snapshot: string): Promise<ListedFile[]> {
  const action = `listing ${type} ${repo}@${commit.slice(0, 8)}`;
  const files: ListedFile[] = [];
  try {
    for await (const e of listFiles({ ...client.params, repo: { type, name: repo }, revision: commit, recursive: true })) {
      safeJoin(snapshot, e.path, `the Hub listing of ${repo}`);
      if (e.type !== 'file') continue;
      files.push({ path: e.path, size: e.lfs?.size ?? e.size, oid: e.oid ?? '', ...(e.lfs ? { sha256: e.lfs.oid } : {}) });
    }
  } catch (e) {
    throw hubError(e, client, action);
  }
  return files;
}

/** Make snapshots/<commit>/<f.path> a verified copy of the Hub's file (no-op when it already is). */
export async function fetchFile(
  client: HubClient,
  type: RepoType,
  repo: string,
  commit: string,
  storage: string,
  f: ListedFile,
  log?: (m: string) => void,
): Promise<void> {
  const pointer = safeJoin(snapshotFolder(storage, commit), f.path, `the Hub listing of ${repo}`);
  if (sizeOf(pointer) === f.size) return;
  const blob = blobPath(storage, f);
  if (sizeOf(blob) !== f.size) {
    await mkdir(dirname(blob), { recursive: true });
    const action = `downloading ${f.path} from ${type} ${repo}@${commit.slice(0, 8)}`;
    log?.(`${action} (${f.size} bytes)`);
    // the retrying fetch covers HTTP errors; this loop covers bodies that arrive short or wrong
    const tries = 3;
    for (let attempt = 1; ; attempt++) {
      const tmp = incompletePath(blob);
      let problem: string | null;
      try {
        problem = await streamTo(client, type, repo, commit, f, tmp);
      } catch (e) {
        await rm(tmp, { force: true });
        const err = hubError(e, client, action);
        if (err instanceof UserError) throw err;
        if (attempt >= tries) {
          throw new UserError(`${err.message} (after ${tries} tries; nothing was kept)`, {
            hint: 'the connection broke during the download: check the network and run the command again',
          });
        }
        log?.(`${redact(err.message)}; retry ${attempt}/${tries - 1}`);
        continue;
      }
      if (problem === null) {
        await rename(tmp, blob);
        break;
      }
      await rm(tmp, { force: true });
      if (attempt >= tries) {
        throw new UserError(`${action}: the download is incomplete or corrupt (${problem}) after ${tries} tries; nothing was kept`, {
          hint: 'run the command again; if it keeps failing the file on the Hub may be damaged',
        });
      }
      log?.(`${f.path}: ${problem}; retry ${attempt}/${tries - 1}`);
    }
  }
  await linkIntoSnapshot(blob, pointer);
}

/** Stream the file into `tmp`, returning null when size and hash check out, else the problem. */
async function streamTo(client: HubClient, type: RepoType, repo: string, commit: string, f: ListedFile, tmp: string): Promise<string | null> {
  const blob = await downloadFile({ ...client.params, repo: { type, name: repo }, path: f.path, revision: commit });
  if (!blob) throw new UserError(`${type} ${repo}@${commit.slice(0, 8)} has no file ${f.path} (the listing named it)`);
  const check = new Verifier(f);
  try {
    await pipeline(
      Readable.fromWeb(blob.stream() as unknown as WebReadableStream<Uint8Array>),
      async function* (chunks: AsyncIterable<Uint8Array>) {
        for await (const c of chunks) {
          check.update(c);
          yield c;
        }
      },
      createWriteStream(tmp),
    );
  } catch (e) {
    // WebBlob.stream() reports HTTP failures as a bare message string
    throw typeof e === 'string' ? new Error(e) : e;
  }
  return check.problem();
}
