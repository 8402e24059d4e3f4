// resolveSource against the fake Hub on 127.0.0.1: cache layout, cache reuse without HTTP,
// offline mode, path safety, verification of what arrives, retries and error messages.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isRepoId, parseRepoId, resolveSource } from '../../../core/hub/index.ts';
import { UserError } from '../../../core/errors.ts';
import { startFakeHub, type FakeHub } from '../../helpers/fake-hub.ts';

const TOKEN = 'hf_fakeSecretToken0123456789abcdef';
const FAST = { attempts: 3, baseDelayMs: 5 };
let hub: FakeHub;
let home: string;
const saved = { ...process.env };
const temps: string[] = [];

const files = {
  'config.json': '{"vit_hidden_dim": 32}\n',
  'model.safetensors': new Uint8Array(4096).map((_, i) => (i * 7) & 255), // LFS
  'sub/dir/notes.txt': 'hello\n',
};

before(async () => {
  hub = await startFakeHub();
  hub.addToken(TOKEN, 'alice');
});
after(async () => {
    for (const t of temps) rmSync(t, { recursive: true, force: true });
  await hub.close();
  process.env = saved;
});
beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'vlm-hub-'));
  temps.push(home);
  process.env.HF_HOME = home;
  process.env.HF_ENDPOINT = hub.url;
  process.env.HF_TOKEN = TOKEN;
  delete process.env.HF_HUB_OFFLINE;
  delete process.env.HF_HUB_CACHE;
  hub.faults = {};
  hub.repos.clear();
  hub.requests.length = 0;
});

async function rejects(p: Promise<unknown>, re: RegExp): Promise<UserError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof UserError, `expected a UserError, got ${(e as Error)?.stack}`);
    assert.match(e.format(), re);
    assert.ok(!e.format().includes(TOKEN), 'the token leaked into an error');
    return e;
  }
  assert.fail(`expected a rejection matching ${re}`);
}

describe('repo ids', () => {
  it('accepts owner/name[@rev] and refuses the rest', () => {
    assert.deepEqual(parseRepoId('HuggingFaceTB/SmolLM2-135M@v1.0'), { repo: 'HuggingFaceTB/SmolLM2-135M', revision: 'v1.0' });
    for (const ok of ['a/b', 'lusxvr/nanoVLM-222M', 'o/n@main', 'o/n@refs/pr/1', 'o/n.v2']) assert.ok(isRepoId(ok), ok);
    for (const bad of ['gpt2', 'a/b/c', '../x', '/abs/path', 'a/..', 'a/b@', 'a/b@../x', 'a--b/c', './a', 'a /b', '']) {
      assert.ok(!isRepoId(bad), bad);
    }
  });
  it('a string that is neither a path nor a repo id is a UserError', async () => {
    await rejects(resolveSource('no/such/local/folder'), /neither an existing path nor a Hub repo id/);
  });
  it('an existing local path is returned absolute, without HTTP', async () => {
    assert.equal(await resolveSource(home), home);
    assert.equal(hub.requests.length, 0);
  });
});

describe('download into the cache', () => {
  it('writes the Hub cache layout, verified, and reuses it without any HTTP request', async () => {
    const commit = hub.addRepo('model', 'alice/tiny', files);
    const snap = await resolveSource('alice/tiny', { retry: FAST });
    const storage = join(home, 'hub', 'models--alice--tiny');
    assert.equal(snap, join(storage, 'snapshots', commit));
    assert.equal(readFileSync(join(storage, 'refs', 'main'), 'utf8'), commit);
    for (const [p, c] of Object.entries(files)) assert.deepEqual(new Uint8Array(readFileSync(join(snap, p))), new Uint8Array(Buffer.from(c)));
    assert.ok(lstatSync(join(snap, 'model.safetensors')).isSymbolicLink());
    assert.match(readlinkSync(join(snap, 'model.safetensors')), /^\.\.\/\.\.\/blobs\/[0-9a-f]{64}$/);
    assert.ok(!readdirSync(join(storage, 'blobs')).some((n) => n.includes('incomplete')));
    const n = hub.requests.length;
    assert.ok(n > 0);
    assert.equal(await resolveSource('alice/tiny', { retry: FAST }), snap);
    assert.equal(hub.requests.length, n, 'second resolve made HTTP requests');
  });

  it('fetches only the files asked for, and names a file the repo lacks', async () => {
    hub.addRepo('model', 'alice/tiny', files);
    const snap = await resolveSource('alice/tiny', { files: ['config.json'], retry: FAST });
    assert.ok(existsSync(join(snap, 'config.json')));
    assert.ok(!existsSync(join(snap, 'model.safetensors')));
    assert.ok(!hub.requests.some((r) => r.path.includes('/cdn/')), 'the LFS file was downloaded');
    // a later full resolve completes the snapshot
    await resolveSource('alice/tiny', { retry: FAST });
    assert.ok(existsSync(join(snap, 'model.safetensors')));
    await rejects(resolveSource('alice/tiny', { files: ['tokenizer.json'], retry: FAST }), /has no file "tokenizer.json"/);
  });

  it('a branch that gained a file since it was cached is asked again; a predicate matching nothing gives an existing folder', async () => {
    hub.addRepo('model', 'alice/tiny', files);
    await resolveSource('alice/tiny', { files: ['config.json'], retry: FAST });
    hub.addRepo('model', 'alice/tiny', { ...files, 'tokenizer.json': '{}' }); // main moved
    const snap = await resolveSource('alice/tiny', { files: ['tokenizer.json'], retry: FAST });
    assert.equal(readFileSync(join(snap, 'tokenizer.json'), 'utf8'), '{}');
    const none = await resolveSource('alice/tiny', { files: (p) => p.endsWith('.parquet'), retry: FAST });
    assert.ok(existsSync(none));
  });

  it('parallel resolves of the same repo both succeed', async () => {
    hub.addRepo('model', 'alice/tiny', files);
    const [a, b] = await Promise.all([resolveSource('alice/tiny', { retry: FAST }), resolveSource('alice/tiny', { retry: FAST })]);
    assert.equal(a, b);
    assert.equal(readFileSync(join(a, 'model.safetensors')).length, 4096);
  });

  it('datasets use datasets--owner--name and a predicate', async () => {
    const commit = hub.addRepo('dataset', 'alice/shapes', { 'data/train.parquet': 'PAR1xxxxPAR1', 'README.md': '# d' });
    const snap = await resolveSource('alice/shapes', { repoType: 'dataset', files: (p) => p.endsWith('.parquet'), retry: FAST });
    assert.equal(snap, join(home, 'hub', 'datasets--alice--shapes', 'snapshots', commit));
    assert.equal(readFileSync(join(snap, 'data/train.parquet'), 'utf8'), 'PAR1xxxxPAR1');
    assert.ok(!existsSync(join(snap, 'README.md')));
  });

  it('@revision pins a commit; an unknown revision is a clear error', async () => {
    const first = hub.addRepo('model', 'alice/tiny', files);
    const snap = await resolveSource(`alice/tiny@${first}`, { retry: FAST });
    assert.ok(snap.endsWith(first));
    await rejects(resolveSource('alice/tiny@nope', { retry: FAST }), /revision not found.*RevisionNotFound[\s\S]*->/);
  });
});

describe('offline mode', () => {
  it('HF_HUB_OFFLINE=1 uses the cache only and names the missing file', async () => {
    hub.addRepo('model', 'alice/tiny', files);
    process.env.HF_HUB_OFFLINE = '1';
    const e = await rejects(resolveSource('alice/tiny', { files: ['config.json'] }), /HF_HUB_OFFLINE is set[\s\S]*config\.json/);
    assert.match(e.hint ?? '', /without HF_HUB_OFFLINE/);
    assert.equal(hub.requests.length, 0);
    delete process.env.HF_HUB_OFFLINE;
    const snap = await resolveSource('alice/tiny', { files: ['config.json'], retry: FAST });
    process.env.HF_HUB_OFFLINE = '1';
    const n = hub.requests.length;
    assert.equal(await resolveSource('alice/tiny', { files: ['config.json'] }), snap);
    await rejects(resolveSource('alice/tiny'), /missing model\.safetensors, sub\/dir\/notes\.txt/);
    assert.equal(hub.requests.length, n);
  });
});

describe('what arrives is checked', () => {
  it('a listing with "../" or absolute names is refused and nothing is written outside the cache', async () => {
    for (const evil of ['../../escape.txt', '/tmp/evil-abs.txt', 'a/../../x', 'sub\\..\\..\\x', 'C:/x']) {
      hub.repos.clear();
      hub.addRepo('model', 'alice/tiny', files);
      hub.faults.listingExtra = [{ path: evil, size: 3 }];
      await rejects(resolveSource('alice/tiny', { retry: FAST }), /refusing file name/);
      assert.ok(!existsSync(join(home, 'escape.txt')) && !existsSync(join(home, 'hub', 'escape.txt')));
      assert.ok(!existsSync(join(home, 'hub', 'models--alice--tiny', 'snapshots')), `${evil}: something was written`);
    }
  });

  it('a truncated download (short body, matching Content-Length) is detected, retried, and never kept', async () => {
    hub.addRepo('model', 'alice/tiny', files);
    hub.faults.truncate = 10;
    await rejects(resolveSource('alice/tiny', { retry: FAST }), /incomplete or corrupt \(got \d+ of \d+ bytes\)/);
    const storage = join(home, 'hub', 'models--alice--tiny');
    const blobs = existsSync(join(storage, 'blobs')) ? readdirSync(join(storage, 'blobs')) : [];
    assert.deepEqual(blobs, [], 'a partial blob was left behind');
    assert.ok(!existsSync(join(storage, 'refs', 'main')));
    hub.faults.truncate = 0;
    const snap = await resolveSource('alice/tiny', { retry: FAST });
    assert.equal(readFileSync(join(snap, 'model.safetensors')).length, 4096);
  });

  it('a corrupt body is caught by the hash (sha256 for LFS, git sha1 otherwise)', async () => {
    hub.addRepo('model', 'alice/tiny', files);
    hub.faults.corrupt = true;
    await rejects(resolveSource('alice/tiny', { files: ['model.safetensors'], retry: FAST }), /sha256 is [0-9a-f]{64}, the Hub lists/);
    await rejects(resolveSource('alice/tiny', { files: ['config.json'], retry: FAST }), /git sha1 is/);
  });

  it('a dropped connection is retried', async () => {
    hub.addRepo('model', 'alice/tiny', files);
    hub.faults.dropConnection = true;
    await rejects(resolveSource('alice/tiny', { files: ['model.safetensors'], retry: FAST }), /downloading model\.safetensors.*after 3 tries; nothing was kept/);
    assert.ok(!readdirSync(join(home, 'hub', 'models--alice--tiny', 'blobs')).length);
    hub.faults.dropConnection = false;
    await resolveSource('alice/tiny', { files: ['model.safetensors'], retry: FAST });
  });
});

describe('HTTP errors', () => {
  it('500 then success: retried transparently', async () => {
    hub.addRepo('model', 'alice/tiny', files);
    hub.faults.failNext = { count: 2, status: 500 };
    const snap = await resolveSource('alice/tiny', { retry: FAST });
    assert.ok(existsSync(join(snap, 'model.safetensors')));
    assert.equal(hub.requests.filter((r) => r.status === 500).length, 2);
  });
  it('500 forever: a UserError after the retries', async () => {
    hub.addRepo('model', 'alice/tiny', files);
    hub.faults.failNext = { count: 100, status: 503 };
    await rejects(resolveSource('alice/tiny', { retry: FAST }), /kept failing after retries \(HTTP 503/);
    assert.equal(hub.requests.length, 3);
  });
  it('401 with a bad token says to create a new token, never printing it (even when the server echoes it)', async () => {
    hub.addRepo('model', 'alice/tiny', files);
    process.env.HF_TOKEN = 'hf_revokedToken9876543210zyxw';
    hub.faults.echoToken = true;
    const e = await rejects(resolveSource('alice/tiny', { retry: FAST }), /401[\s\S]*HF_TOKEN/);
    assert.ok(!e.format().includes('hf_revokedToken9876543210zyxw'));
    assert.ok(!String(e.stack).includes('hf_revokedToken9876543210zyxw'));
  });
  it('an unreachable endpoint: retried, then "cannot reach" with what to check', async () => {
    const { createServer } = await import('node:net');
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as { port: number }).port;
    await new Promise<void>((r) => srv.close(() => r())); // nothing listens there now
    process.env.HF_ENDPOINT = `http://127.0.0.1:${port}`;
    await rejects(resolveSource('alice/tiny', { retry: FAST }), /cannot reach http:\/\/127\.0\.0\.1:\d+ \(.*ECONNREFUSED.*\)[\s\S]*HF_HUB_OFFLINE/);
  });
  it('404: repo not found, with what to check', async () => {
    await rejects(resolveSource('alice/missing', { retry: FAST }), /repo not found \(HTTP 404, RepoNotFound\)[\s\S]*check the repo id.*if you meant a local folder: \/.*alice\/missing does not exist/);
  });
  it('a private repo without a token: 401 saying to set HF_TOKEN', async () => {
    hub.addRepo('model', 'alice/secret', files, { private: true });
    delete process.env.HF_TOKEN;
    await rejects(resolveSource('alice/secret', { retry: FAST }), /401[\s\S]*set HF_TOKEN/);
    process.env.HF_TOKEN = TOKEN;
    await resolveSource('alice/secret', { retry: FAST });
  });
  it('the CLI token file ($HF_HOME/token) is used when HF_TOKEN is unset', async () => {
    hub.addRepo('model', 'alice/secret', files, { private: true });
    delete process.env.HF_TOKEN;
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(home, 'token'), TOKEN + '\n');
    await resolveSource('alice/secret', { retry: FAST });
  });
});
