// Reading a Hub dataset's files lazily: HTTP range requests through the Hub client (token, retries,
// redaction: http.ts) instead of a full download, so `--limit 100` on a 5,000-row benchmark reads
// the Parquet footer and the first row groups only.
//   openRemoteFiles('lmms-lab/textvqa', {files: p => ...})  -> one AsyncBuffer per wanted file
// The bytes read are kept in the Hugging Face cache beside the repo's snapshots, in blocks:
//   $HF_HOME/hub/datasets--owner--name/blocks/<commit>/<path>/<index>   (blockSize bytes each, the last shorter)
// so a second run reads them from disk. A file the cache already holds in full (a snapshot
// downloaded earlier by resolveSource) is read from there. Blocks are not hash-checked (a part of
// a file cannot be); the size the server reports for the file (Content-Range) must equal the
// listing's, or the read fails.
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { asyncBufferFromFile, type AsyncBuffer } from 'hyparquet';
import { UserError } from '../errors.ts';
import { hubCacheDir, isOffline } from './config.ts';
import { hubClient, hubError, type HubClient } from './http.ts';
import { listRepo, resolveCommit } from './download.ts';
import { readListing, readRef, repoFolder, sizeOf, snapshotFolder, type ListedFile, type RepoType } from './cache.ts';
import { safeJoin } from './paths.ts';
import { parseRepoId, resolveSource } from './index.ts';

export interface RangeStats {
  /** HTTP range requests made */
  requests: number;
  /** bytes received */
  bytes: number;
}

export interface RemoteFile {
  /** path in the repo */
  path: string;
  size: number;
  /** where messages point: the file in the snapshot folder if complete, else its URL */
  location: string;
  buffer: AsyncBuffer;
}

/** 1 MiB: the granularity of what is fetched and cached (a slice needing many blocks is still one request) */
export const DEFAULT_BLOCK_SIZE = 1024 * 1024;

/**
 * The wanted files of a Hub repo as AsyncBuffers over range requests (see the header). Offline
 * (HF_HUB_OFFLINE=1), the repo must be complete in the cache (resolveSource's rules).
 */
export async function openRemoteFiles(
  id: string,
  opts: { repoType?: RepoType; files: (path: string) => boolean; log?: (line: string) => void; blockSize?: number; stats?: RangeStats },
): Promise<RemoteFile[]> {
  const type = opts.repoType ?? 'dataset';
  const parsed = parseRepoId(id);
  if (!parsed) throw new UserError(`"${id}" is not a Hub repo id (owner/name[@revision])`);
  const revision = parsed.revision ?? 'main';
  const storage = repoFolder(hubCacheDir(), type, parsed.repo);
  if (isOffline()) {
    // offline: only what a full download left in the cache
    const root = await resolveSource(id, { repoType: type, files: opts.files, log: opts.log });
    const listing = readListing(storage, readRef(storage, revision) ?? revision) ?? [];
    return listing
      .filter((f) => opts.files(f.path))
      .sort((a, b) => a.path.localeCompare(b.path))
      .map((f) => localFile(f, safeJoin(root, f.path, id)));
  }
  const client = hubClient({ log: opts.log });
  const commit = await resolveCommit(client, type, parsed.repo, revision);
  const snapshot = snapshotFolder(storage, commit);
  const listing = await listRepo(client, type, parsed.repo, commit, snapshot);
  const wanted = listing.filter((f) => opts.files(f.path)).sort((a, b) => a.path.localeCompare(b.path));
  const stats = opts.stats ?? { requests: 0, bytes: 0 };
  return wanted.map((f) => {
    const local = safeJoin(snapshot, f.path, `the Hub listing of ${parsed.repo}`);
    if (sizeOf(local) === f.size) return localFile(f, local);
    const prefix = type === 'dataset' ? '/datasets' : '';
    const url = `${client.endpoint}${prefix}/${parsed.repo}/resolve/${commit}/${f.path.split('/').map(encodeURIComponent).join('/')}`;
    const blocks = safeJoin(join(storage, 'blocks', commit), f.path, `the Hub listing of ${parsed.repo}`);
    return { path: f.path, size: f.size, location: url, buffer: rangeBuffer(client, url, f.size, blocks, opts.blockSize ?? DEFAULT_BLOCK_SIZE, stats, f.path) };
  });
}

function localFile(f: ListedFile, path: string): RemoteFile {
  let buffer: AsyncBuffer | undefined;
  const size = statSync(path).size;
  // hyparquet's file buffer, opened on first use
  const lazy: AsyncBuffer = {
    byteLength: size,
    async slice(start, end) {
      buffer ??= await asyncBufferFromFile(path);
      return buffer.slice(start, end);
    },
  };
  return { path: f.path, size, location: path, buffer: lazy };
}

/**
 * An AsyncBuffer of `size` bytes at `url`: slice(start, end) reads the blocks covering [start, end)
 * from `blockDir`, fetching the missing ones (each run of consecutive missing blocks in one request).
 */
export function rangeBuffer(client: HubClient, url: string, size: number, blockDir: string, blockSize: number, stats: RangeStats, name = url): AsyncBuffer {
  const blockFile = (i: number) => join(blockDir, String(i));
  const blockLength = (i: number) => Math.min(blockSize, size - i * blockSize);
  const have = (i: number) => sizeOf(blockFile(i)) === blockLength(i);

  async function fetchBlocks(first: number, last: number): Promise<void> {
    const from = first * blockSize;
    const to = Math.min(size, (last + 1) * blockSize) - 1;
    const action = `reading bytes ${from}-${to} of ${name}`;
    let res: Response;
    try {
      res = await client.fetch(url, { headers: { Range: `bytes=${from}-${to}`, ...(client.token ? { Authorization: `Bearer ${client.token}` } : {}) } });
    } catch (e) {
      throw hubError(e, client, action);
    }
    if (!res.ok) {
      await res.arrayBuffer().catch(() => undefined);
      throw new UserError(`${action}: HTTP ${res.status} ${res.statusText}`, { hint: 'check the network and the repo (a private or gated dataset needs HF_TOKEN)' });
    }
    let body = new Uint8Array(await res.arrayBuffer());
    stats.requests++;
    stats.bytes += body.length;
    if (res.status === 206) {
      const total = /\/(\d+)$/.exec(res.headers.get('content-range') ?? '')?.[1];
      if (total !== undefined && Number(total) !== size) {
        throw new UserError(`${action}: the server has ${total} bytes, the listing said ${size} (the file changed?)`, { hint: 'run the command again' });
      }
    } else {
      // a server that ignores Range sends the whole file: keep the part asked for
      if (body.length !== size) throw new UserError(`${action}: got ${body.length} bytes for a ${size}-byte file`, { hint: 'run the command again' });
      body = body.subarray(from, to + 1);
    }
    if (body.length !== to - from + 1) throw new UserError(`${action}: got ${body.length} bytes, expected ${to - from + 1}`, { hint: 'the connection broke: run the command again' });
    mkdirSync(blockDir, { recursive: true });
    for (let i = first; i <= last; i++) {
      const part = body.subarray((i - first) * blockSize, (i - first) * blockSize + blockLength(i));
      const tmp = `${blockFile(i)}.tmp-${process.pid}`;
      writeFileSync(tmp, part);
      renameSync(tmp, blockFile(i));
    }
  }

  return {
    byteLength: size,
    async slice(start: number, end = size): Promise<ArrayBuffer> {
      start = Math.max(0, start);
      end = Math.min(size, end);
      if (end <= start) return new ArrayBuffer(0);
      const b0 = Math.floor(start / blockSize);
      const b1 = Math.floor((end - 1) / blockSize);
      for (let i = b0; i <= b1; ) {
        if (have(i)) {
          i++;
          continue;
        }
        let j = i;
        while (j + 1 <= b1 && !have(j + 1)) j++;
        await fetchBlocks(i, j);
        i = j + 1;
      }
      const out = new Uint8Array(end - start);
      for (let i = b0; i <= b1; i++) {
        const block = readFileSync(blockFile(i));
        const from = Math.max(start, i * blockSize);
        const to = Math.min(end, i * blockSize + block.length);
        out.set(block.subarray(from - i * blockSize, to - i * blockSize), from - start);
      }
      return out.buffer;
    },
  };
}

/** true when the repo id's files may be read lazily (not a local path) */
export function isRemote(idOrPath: string, baseDir = '.'): boolean {
  return !existsSync(resolve(baseDir, idOrPath)) && parseRepoId(idOrPath) !== null;
}
