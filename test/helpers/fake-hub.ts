// A small fake of the Hugging Face Hub HTTP API, on 127.0.0.1 (random port), for tests only.
//
// It implements exactly the requests @huggingface/hub 2.x makes for what nanovlm-ts does, with the
// headers the client reads, and keeps everything in memory:
//   GET  /api/whoami-v2                                   who the token belongs to
//   POST /api/repos/create                                create a model/dataset repo (409 if it exists)
//   GET  /api/{models,datasets}/o/n/revision/<rev>        repo info incl. `sha` (modelInfo/datasetInfo)
//   GET  /api/{models,datasets}/o/n/tree/<rev>[/<dir>]    listing (recursive; lfs {oid,size,pointerSize})
//   GET  [/datasets]/o/n/resolve/<rev>/<path>             download: ETag, X-Repo-Commit, Content-Length,
//                                                         Accept-Ranges/Range (206 + Content-Range); LFS files
//                                                         answer 302 -> /cdn/<sha256> with X-Linked-Size and
//                                                         X-Linked-Etag, like the real Hub
//   POST /api/{models,datasets}/o/n/preupload/<rev>       which files go to LFS (*.safetensors, *.bin,
//                                                         *.parquet, images, or > 10 MB)
//   POST [/datasets]/o/n.git/info/lfs/objects/batch       LFS batch, "basic" transfer only (no multipart, no xet)
//   PUT  /lfs-upload/<oid>                                LFS object upload (sha256 and size checked)
//   POST /api/{models,datasets}/o/n/commit/<rev>          NDJSON commit: header, file (base64), lfsFile, deletedFile
// Auth: tokens are registered with addToken(); a bad token gets 401, a read-only token 403 on writes;
// private repos answer 401 (anonymous) / 404 (other user) like the Hub, with X-Error-Code.
// Faults (hub.faults): failNext {count, status, match} (e.g. 500 then success), listingExtra (malicious
// names), truncate / corrupt / dropConnection (download bodies), echoToken (error bodies repeat the
// Authorization header, to prove that we redact), conflictOnCommit (409).
// NOT covered: xet (upload or download), multipart LFS, paths-info, pagination of listings (Link
// header), pull requests, branches other than those created by commits, gated-repo flows, spaces,
// rate-limit headers beyond Retry-After. Everything it does not know answers 404 with its path, so a
// test that starts needing more fails loudly.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface FakeFile {
  content: Buffer;
  lfs: boolean;
}
export interface FakeRepo {
  type: 'model' | 'dataset';
  id: string; // owner/name
  private: boolean;
  commits: Map<string, Map<string, FakeFile>>; // commit sha -> files
  refs: Map<string, string>; // branch -> commit
  log: { sha: string; title: string }[];
}
export interface Faults {
  /** the next `count` requests whose path matches `match` get `status` (then normal service) */
  failNext?: { count: number; status: number; match?: RegExp };
  /** entries appended to every listing (e.g. {path: '../evil', size: 1}) */
  listingExtra?: { path: string; size: number; type?: string }[];
  /** download bodies shorter by this many bytes, with a Content-Length that matches (a lying server) */
  truncate?: number;
  /** flip one byte of download bodies */
  corrupt?: boolean;
  /** announce the full Content-Length, send half the body, then drop the connection */
  dropConnection?: boolean;
  /** error bodies repeat the request's Authorization header (a buggy proxy) */
  echoToken?: boolean;
  /** commits answer 409 */
  conflictOnCommit?: boolean;
}
export interface LoggedRequest {
  method: string;
  path: string;
  status?: number;
}

const LFS_EXT = /\.(safetensors|bin|pt|pth|ckpt|h5|onnx|parquet|arrow|png|jpe?g|webp|gif|zip|gz|tar|npy|npz|msgpack)$/i;
const isLfs = (path: string, size: number) => LFS_EXT.test(path) || size > 10 * 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitOid = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const pointerOf = (b: Buffer) =>
  Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(b)}\nsize ${b.length}\n`);

export class FakeHub {
  url = '';
  readonly repos = new Map<string, FakeRepo>(); // "model:owner/name"
  readonly tokens = new Map<string, { user: string; write: boolean; orgs: string[] }>();
  readonly lfsObjects = new Map<string, Buffer>(); // sha256 -> content
  readonly requests: LoggedRequest[] = [];
  /** bytes of file content sent by downloads (full or ranged), for tests of partial reads */
  bytesServed = 0;
  faults: Faults = {};
  private server?: Server;
  private commitCounter = 0;

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        if (!res.headersSent) this.json(res, 500, { error: `fake hub bug: ${(e as Error).message}` });
        else res.destroy();
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server!.close(() => r()));
    this.server = undefined;
  }

  addToken(token: string, user: string, write = true, orgs: string[] = []): void {
    this.tokens.set(token, { user, write, orgs });
  }

  /** Create a repo with one commit holding `files`; returns the commit sha. */
  addRepo(type: 'model' | 'dataset', id: string, files: Record<string, string | Uint8Array>, opts: { private?: boolean } = {}): string {
    const repo: FakeRepo = { type, id, private: !!opts.private, commits: new Map(), refs: new Map(), log: [] };
    this.repos.set(`${type}:${id}`, repo);
    const map = new Map<string, FakeFile>();
    for (const [p, c] of Object.entries(files)) {
      const content = Buffer.from(c);
      map.set(p, { content, lfs: isLfs(p, content.length) });
    }
    return this.newCommit(repo, map, 'initial commit');
  }

  repo(type: 'model' | 'dataset', id: string): FakeRepo | undefined {
    return this.repos.get(`${type}:${id}`);
  }

  /** The files at the head of `main` (path -> bytes). */
  files(type: 'model' | 'dataset', id: string): Map<string, Buffer> {
    const r = this.repo(type, id);
    const head = r?.refs.get('main');
    const out = new Map<string, Buffer>();
    if (!r || !head) return out;
    for (const [p, f] of r.commits.get(head)!) out.set(p, f.content);
    return out;
  }

  private newCommit(repo: FakeRepo, files: Map<string, FakeFile>, title: string): string {
    const sha = createHash('sha1').update(`${repo.id}:${++this.commitCounter}:${title}`).digest('hex');
    repo.commits.set(sha, files);
    repo.refs.set('main', sha);
    repo.log.push({ sha, title });
    return sha;
  }

  // ---- plumbing ---------------------------------------------------------------------------------

  private json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const data = Buffer.from(JSON.stringify(body));
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(data.length), ...headers });
    res.end(data);
  }

  private fail(req: IncomingMessage, res: ServerResponse, status: number, error: string, code?: string): void {
    const echo = this.faults.echoToken && req.headers.authorization ? ` (you sent: ${req.headers.authorization})` : '';
    this.json(res, status, { error: error + echo }, code ? { 'X-Error-Code': code } : {});
  }

  private async body(req: IncomingMessage): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  private auth(req: IncomingMessage): { user: string; write: boolean; orgs: string[] } | 'bad' | undefined {
    const h = req.headers.authorization;
    if (!h) return undefined;
    const m = /^Bearer (.+)$/.exec(h);
    return (m && this.tokens.get(m[1])) || 'bad';
  }

  /** The repo if the caller may read it; otherwise answers the request and returns undefined. */
  private readable(req: IncomingMessage, res: ServerResponse, type: string, id: string): FakeRepo | undefined {
    const who = this.auth(req);
    if (who === 'bad') return void this.fail(req, res, 401, 'Invalid credentials in Authorization header');
    const repo = this.repo(type as 'model', id);
    const visible = repo && (!repo.private || (who && (who.user === id.split('/')[0] || who.orgs.includes(id.split('/')[0]))));
    if (!visible) {
      if (!who) return void this.fail(req, res, 401, 'Repository not found', 'RepoNotFound');
      return void this.fail(req, res, 404, 'Repository not found', 'RepoNotFound');
    }
    return repo;
  }

  private writable(req: IncomingMessage, res: ServerResponse, namespace: string): { user: string } | undefined {
    const who = this.auth(req);
    if (!who || who === 'bad') return void this.fail(req, res, 401, 'Invalid credentials in Authorization header');
    if (!who.write || (namespace !== who.user && !who.orgs.includes(namespace))) {
      return void this.fail(req, res, 403, `You don't have the rights to write to ${namespace}`);
    }
    return who;
  }

  private commitOf(repo: FakeRepo, rev: string): string | undefined {
    return repo.refs.get(rev) ?? (repo.commits.has(rev) ? rev : undefined);
  }

  // ---- routes -----------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', this.url);
    const path = u.pathname;
    const entry: LoggedRequest = { method: req.method ?? 'GET', path };
    this.requests.push(entry);
    res.on('finish', () => (entry.status = res.statusCode));

    const f = this.faults.failNext;
    if (f && f.count > 0 && (!f.match || f.match.test(path))) {
      f.count--;
      await this.body(req);
      return this.fail(req, res, f.status, `injected failure ${f.status}`);
    }

    let m: RegExpExecArray | null;
    if (req.method === 'GET' && path === '/api/whoami-v2') return this.whoami(req, res);
    if (req.method === 'POST' && path === '/api/repos/create') return this.create(req, res);
    if (req.method === 'PUT' && (m = /^\/lfs-upload\/([0-9a-f]{64})$/.exec(path))) return this.lfsPut(req, res, m[1]);
    if (req.method === 'GET' && (m = /^\/cdn\/([0-9a-f]{64})$/.exec(path))) {
      const data = this.lfsObjects.get(m[1]);
      if (!data) return this.fail(req, res, 404, 'no such object');
      return this.serveBytes(req, res, data, { ETag: `"${m[1]}"` });
    }
    if ((m = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/(revision|tree|preupload|commit)\/(.*)$/.exec(path))) {
      const type = m[1] === 'models' ? 'model' : 'dataset';
      const [, , id, op, rest] = m;
      if (op === 'revision' && req.method === 'GET') return this.info(req, res, type, id, decodeURIComponent(rest));
      if (op === 'tree' && req.method === 'GET') return this.tree(req, res, type, id, rest, u.searchParams.get('recursive') === 'true');
      if (op === 'preupload' && req.method === 'POST') return this.preupload(req, res, type, id);
      if (op === 'commit' && req.method === 'POST') return this.commit(req, res, type, id, decodeURIComponent(rest));
    }
    if (req.method === 'POST' && (m = /^\/(datasets\/)?([^/]+\/[^/]+)\.git\/info\/lfs\/objects\/batch$/.exec(path))) {
      return this.lfsBatch(req, res, m[1] ? 'dataset' : 'model', m[2]);
    }
    if (req.method === 'GET' && (m = /^\/(datasets\/)?([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path))) {
      return this.resolve(req, res, m[1] ? 'dataset' : 'model', m[2], decodeURIComponent(m[3]), decodeURIComponent(m[4]));
    }
    await this.body(req);
    this.fail(req, res, 404, `fake hub: no route for ${req.method} ${path}`);
  }

  private whoami(req: IncomingMessage, res: ServerResponse): void {
    const who = this.auth(req);
    if (!who || who === 'bad') return this.fail(req, res, 401, 'Invalid credentials in Authorization header');
    this.json(res, 200, {
      type: 'user',
      id: `id-${who.user}`,
      name: who.user,
      fullname: who.user,
      email: `${who.user}@example.invalid`,
      emailVerified: true,
      isPro: false,
      orgs: who.orgs.map((o) => ({ type: 'org', name: o })),
      auth: { type: 'access_token', accessToken: { displayName: 'test', role: who.write ? 'write' : 'read', createdAt: '2026-01-01T00:00:00Z' } },
    });
  }

  private async create(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = JSON.parse((await this.body(req)).toString() || '{}');
    const namespace = body.organization ?? this.tokens.get(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '')?.user;
    if (!this.writable(req, res, namespace)) return;
    const type = body.type === 'dataset' ? 'dataset' : 'model';
    const id = `${namespace}/${body.name}`;
    const url = `${this.url}/${type === 'dataset' ? 'datasets/' : ''}${id}`;
    if (this.repo(type, id)) return this.json(res, 409, { error: `You already created this ${type} repo`, url });
    const repo: FakeRepo = { type, id, private: body.visibility === 'private' || body.private === true, commits: new Map(), refs: new Map(), log: [] };
    this.repos.set(`${type}:${id}`, repo);
    this.newCommit(repo, new Map([['.gitattributes', { content: Buffer.from('*.safetensors filter=lfs diff=lfs merge=lfs -text\n'), lfs: false }]]), 'initial commit');
    this.json(res, 200, { url, name: id, id: `id-${id}` });
  }

  private info(req: IncomingMessage, res: ServerResponse, type: string, id: string, rev: string): void {
    const repo = this.readable(req, res, type, id);
    if (!repo) return;
    const sha = this.commitOf(repo, rev === 'HEAD' ? 'main' : rev);
    if (!sha) return this.fail(req, res, 404, `Invalid rev id: ${rev}`, 'RevisionNotFound');
    this.json(res, 200, {
      _id: `id-${id}`,
      id,
      sha,
      private: repo.private,
      gated: false,
      downloads: 0,
      likes: 0,
      lastModified: '2026-01-01T00:00:00.000Z',
      siblings: [...repo.commits.get(sha)!.keys()].map((rfilename) => ({ rfilename })),
    });
  }

  private tree(req: IncomingMessage, res: ServerResponse, type: string, id: string, rest: string, recursive: boolean): void {
    const repo = this.readable(req, res, type, id);
    if (!repo) return;
    const [rev, ...dirParts] = rest.split('/');
    const sha = this.commitOf(repo, decodeURIComponent(rev));
    if (!sha) return this.fail(req, res, 404, `Invalid rev id: ${rev}`, 'RevisionNotFound');
    const dir = dirParts.join('/');
    const entries: unknown[] = [];
    const dirs = new Set<string>();
    for (const [p, f] of repo.commits.get(sha)!) {
      if (dir && !p.startsWith(dir + '/')) continue;
      const rel = dir ? p.slice(dir.length + 1) : p;
      if (!recursive && rel.includes('/')) {
        dirs.add((dir ? dir + '/' : '') + rel.split('/')[0]);
        continue;
      }
      if (recursive) {
        const parts = p.split('/');
        for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
      }
      const ptr = pointerOf(f.content);
      entries.push(
        f.lfs
          ? { type: 'file', path: p, size: f.content.length, oid: gitOid(ptr), lfs: { oid: sha256(f.content), size: f.content.length, pointerSize: ptr.length } }
          : { type: 'file', path: p, size: f.content.length, oid: gitOid(f.content) },
      );
    }
    for (const d of dirs) entries.unshift({ type: 'directory', path: d, size: 0, oid: '0'.repeat(40) });
    for (const x of this.faults.listingExtra ?? []) entries.push({ type: 'file', oid: 'a'.repeat(40), ...x });
    this.json(res, 200, entries);
  }

  private resolve(req: IncomingMessage, res: ServerResponse, type: string, id: string, rev: string, path: string): void {
    const repo = this.readable(req, res, type, id);
    if (!repo) return;
    const sha = this.commitOf(repo, rev);
    if (!sha) return this.fail(req, res, 404, `Invalid rev id: ${rev}`, 'RevisionNotFound');
    const f = repo.commits.get(sha)!.get(path);
    if (!f) return this.fail(req, res, 404, `Entry not found`, 'EntryNotFound');
    if (f.lfs) {
      const oid = sha256(f.content);
      this.lfsObjects.set(oid, f.content);
      res.writeHead(302, {
        Location: `/cdn/${oid}`,
        'X-Repo-Commit': sha,
        'X-Linked-Size': String(f.content.length),
        'X-Linked-Etag': `"${oid}"`,
        ETag: `"${gitOid(pointerOf(f.content))}"`,
        'Content-Length': '0',
      });
      return void res.end();
    }
    this.serveBytes(req, res, f.content, { ETag: `"${gitOid(f.content)}"`, 'X-Repo-Commit': sha });
  }

  /** Serve `data` honouring `Range: bytes=a-b`, with the download faults applied to full bodies. */
  private serveBytes(req: IncomingMessage, res: ServerResponse, data: Buffer, headers: Record<string, string>): void {
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const base = { 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes', ...headers };
    if (range) {
      const a = Number(range[1]);
      const b = Math.min(range[2] ? Number(range[2]) : data.length - 1, data.length - 1);
      const part = data.subarray(a, b + 1);
      res.writeHead(206, { ...base, 'Content-Range': `bytes ${a}-${b}/${data.length}`, 'Content-Length': String(part.length) });
      this.bytesServed += part.length;
      return void res.end(part);
    }
    let body = data;
    if (this.faults.truncate) body = body.subarray(0, Math.max(0, body.length - this.faults.truncate));
    if (this.faults.corrupt && body.length > 0) {
      body = Buffer.from(body);
      body[body.length >> 1] ^= 0xff;
    }
    if (this.faults.dropConnection) {
      res.writeHead(200, { ...base, 'Content-Length': String(body.length) });
      res.write(body.subarray(0, body.length >> 1), () => res.socket?.destroy());
      return;
    }
    res.writeHead(200, { ...base, 'Content-Length': String(body.length) });
    this.bytesServed += body.length;
    res.end(body);
  }

  private async preupload(req: IncomingMessage, res: ServerResponse, type: string, id: string): Promise<void> {
    const body = JSON.parse((await this.body(req)).toString());
    if (!this.writable(req, res, id.split('/')[0])) return;
    if (!this.repo(type as 'model', id)) return this.fail(req, res, 404, 'Repository not found', 'RepoNotFound');
    this.json(res, 200, {
      files: (body.files as { path: string; size: number }[]).map((f) => ({
        path: f.path,
        uploadMode: isLfs(f.path, f.size) ? 'lfs' : 'regular',
        shouldIgnore: false,
      })),
    });
  }

  private async lfsBatch(req: IncomingMessage, res: ServerResponse, type: string, id: string): Promise<void> {
    const body = JSON.parse((await this.body(req)).toString());
    if (!this.writable(req, res, id.split('/')[0])) return;
    if (!this.repo(type as 'model', id)) return this.fail(req, res, 404, 'Repository not found', 'RepoNotFound');
    const objects = (body.objects as { oid: string; size: number }[]).map((o) =>
      this.lfsObjects.has(o.oid)
        ? { oid: o.oid, size: o.size }
        : { oid: o.oid, size: o.size, authenticated: true, actions: { upload: { href: `${this.url}/lfs-upload/${o.oid}`, expires_in: 3600 } } },
    );
    const data = Buffer.from(JSON.stringify({ transfer: 'basic', objects }));
    res.writeHead(200, { 'Content-Type': 'application/vnd.git-lfs+json', 'Content-Length': String(data.length) });
    res.end(data);
  }

  private async lfsPut(req: IncomingMessage, res: ServerResponse, oid: string): Promise<void> {
    const data = await this.body(req);
    if (sha256(data) !== oid) return this.fail(req, res, 400, 'sha256 of the uploaded object does not match its oid');
    this.lfsObjects.set(oid, data);
    res.writeHead(200, { 'Content-Length': '0' });
    res.end();
  }

  private async commit(req: IncomingMessage, res: ServerResponse, type: string, id: string, branch: string): Promise<void> {
    const raw = (await this.body(req)).toString();
    if (!this.writable(req, res, id.split('/')[0])) return;
    const repo = this.repo(type as 'model', id);
    if (!repo) return this.fail(req, res, 404, 'Repository not found', 'RepoNotFound');
    if (this.faults.conflictOnCommit) return this.fail(req, res, 409, 'A commit has happened since. Please refresh and try again.');
    const parent = repo.refs.get(branch);
    const files = new Map(parent ? repo.commits.get(parent) : []);
    let title = '';
    for (const line of raw.split('\n').filter(Boolean)) {
      const { key, value } = JSON.parse(line);
      if (key === 'header') title = value.summary;
      else if (key === 'file') files.set(value.path, { content: Buffer.from(value.content, value.encoding === 'base64' ? 'base64' : 'utf8'), lfs: false });
      else if (key === 'lfsFile') {
        const content = this.lfsObjects.get(value.oid);
        if (!content || content.length !== value.size) return this.fail(req, res, 400, `LFS object ${value.oid} for ${value.path} was not uploaded`);
        files.set(value.path, { content, lfs: true });
      } else if (key === 'deletedFile') files.delete(value.path);
      else return this.fail(req, res, 400, `unknown commit operation ${key}`);
    }
    if (!title) return this.fail(req, res, 400, 'commit without a summary');
    const sha = this.newCommit(repo, files, title);
    this.json(res, 200, { success: true, commitOid: sha, commitUrl: `${this.url}/${id}/commit/${sha}`, hookOutput: '' });
  }
}

export async function startFakeHub(): Promise<FakeHub> {
  return new FakeHub().start();
}

/**
 * Point this process's Hub client at `hub` with an empty cache: a fresh HF_HOME (returned; the
 * caller removes it), HF_ENDPOINT = the fake Hub, and no token, offline flag or cache override
 * inherited from the environment. Save `process.env` before and restore it after.
 */
export function pointAtFakeHub(hub: FakeHub, prefix: string): string {
  const home = mkdtempSync(join(tmpdir(), prefix));
  process.env.HF_HOME = home;
  process.env.HF_ENDPOINT = hub.url;
  delete process.env.HF_TOKEN;
  delete process.env.HF_HUB_OFFLINE;
  delete process.env.HF_HUB_CACHE;
  return home;
}
