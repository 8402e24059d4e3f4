// uploadFolder against the fake Hub on 127.0.0.1: one commit whose bytes equal the folder, repo
// creation, dry run, retries, and the 401/403/404/409 messages (never containing the token).
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { uploadFolder, resolveSource } from '../../../core/hub/index.ts';
import { UserError } from '../../../core/errors.ts';
import { startFakeHub, type FakeHub } from '../../helpers/fake-hub.ts';

const TOKEN = 'hf_fakeWriteToken0123456789abcdef';
const READ_TOKEN = 'hf_fakeReadOnlyToken0123456789ab';
const FAST = { attempts: 3, baseDelayMs: 5 };
let hub: FakeHub;
let folder: string;
let home: string;
const saved = { ...process.env };
const temps: string[] = [];

before(async () => {
  hub = await startFakeHub();
  hub.addToken(TOKEN, 'alice', true, ['team']);
  hub.addToken(READ_TOKEN, 'alice', false);
});
after(async () => {
    for (const t of temps) rmSync(t, { recursive: true, force: true });
  await hub.close();
  process.env = saved;
});
beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'vlm-hubup-'));
  temps.push(home);
  folder = join(home, 'model');
  mkdirSync(join(folder, 'extra'), { recursive: true });
  writeFileSync(join(folder, 'config.json'), '{"a": 1}\n');
  writeFileSync(join(folder, 'model.safetensors'), Buffer.alloc(300_000, 7)); // goes through LFS
  writeFileSync(join(folder, 'README.md'), '---\nlibrary_name: nanovlm-ts\n---\n# m\n');
  writeFileSync(join(folder, 'extra', 'tokenizer.json'), '{}');
  process.env.HF_HOME = join(home, 'hf');
  process.env.HF_ENDPOINT = hub.url;
  process.env.HF_TOKEN = TOKEN;
  delete process.env.HF_HUB_OFFLINE;
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
    for (const t of [TOKEN, READ_TOKEN]) assert.ok(!e.format().includes(t) && !String(e.stack).includes(t), 'token leaked');
    return e;
  }
  assert.fail(`expected a rejection matching ${re}`);
}

describe('uploadFolder', () => {
  it('creates the repo and uploads the folder in one commit; the bytes that arrive equal the folder', async () => {
    const lines: string[] = [];
    const r = await uploadFolder(folder, 'alice/tiny', { message: 'Upload tiny', private: true, log: (l) => lines.push(l), retry: FAST });
    const repo = hub.repo('model', 'alice/tiny')!;
    assert.ok(repo.private);
    assert.deepEqual(repo.log.map((c) => c.title), ['initial commit', 'Upload tiny']);
    assert.equal(r.commit, repo.log[1].sha);
    const got = hub.files('model', 'alice/tiny');
    for (const f of ['config.json', 'model.safetensors', 'README.md', 'extra/tokenizer.json']) {
      assert.ok(got.get(f)?.equals(readFileSync(join(folder, f))), `${f} differs`);
    }
    assert.ok(hub.requests.some((q) => q.method === 'PUT' && q.path.startsWith('/lfs-upload/')), 'no LFS upload');
    assert.ok(!lines.join('\n').includes(TOKEN));
    // and it loads back by repo id
    const snap = await resolveSource('alice/tiny', { retry: FAST });
    assert.ok(readFileSync(join(snap, 'model.safetensors')).equals(readFileSync(join(folder, 'model.safetensors'))));
  });

  it('an existing repo (409 on create) gets a new commit', async () => {
    hub.addRepo('model', 'team/m', { 'old.txt': 'x' });
    await uploadFolder(folder, 'team/m', { message: 'second', retry: FAST });
    assert.deepEqual(hub.repo('model', 'team/m')!.log.map((c) => c.title), ['initial commit', 'second']);
    assert.ok(hub.files('model', 'team/m').has('old.txt'));
  });

  it('--dry-run lists files and sizes and makes no request, even without a token', async () => {
    delete process.env.HF_TOKEN;
    const lines: string[] = [];
    const r = await uploadFolder(folder, 'alice/tiny', { message: 'x', dryRun: true, log: (l) => lines.push(l) });
    assert.equal(hub.requests.length, 0);
    assert.equal(r.files.length, 4);
    assert.match(lines.join('\n'), /would upload 4 files[\s\S]*model\.safetensors .*\(300000 bytes\)/);
  });

  it('500 then success is retried', async () => {
    hub.faults.failNext = { count: 2, status: 500, match: /commit|lfs-upload/ };
    await uploadFolder(folder, 'alice/tiny', { message: 'm', retry: FAST });
    assert.equal(hub.files('model', 'alice/tiny').get('config.json')?.toString(), '{"a": 1}\n');
    assert.equal(hub.faults.failNext!.count, 0);
    assert.equal(hub.requests.filter((q) => q.status === 500).length, 2);
  });

  it('HF_HUB_OFFLINE=1 refuses to upload, without a request', async () => {
    process.env.HF_HUB_OFFLINE = '1';
    await rejects(uploadFolder(folder, 'alice/tiny', { message: 'm', retry: FAST }), /HF_HUB_OFFLINE is set[\s\S]*--dry-run/);
    assert.equal(hub.requests.length, 0);
  });
  it('no token: says how to get one', async () => {
    delete process.env.HF_TOKEN;
    await rejects(uploadFolder(folder, 'alice/tiny', { message: 'm', retry: FAST }), /needs a Hugging Face token[\s\S]*HF_TOKEN/);
    assert.equal(hub.requests.length, 0);
  });
  it('401: the token is rejected', async () => {
    process.env.HF_TOKEN = 'hf_notAValidTokenAtAll12345';
    hub.faults.echoToken = true;
    const e = await rejects(uploadFolder(folder, 'alice/tiny', { message: 'm', retry: FAST }), /401[\s\S]*new one/);
    assert.ok(!e.format().includes('hf_notAValidTokenAtAll12345'));
  });
  it('403: a read-only token, or someone else\'s namespace', async () => {
    process.env.HF_TOKEN = READ_TOKEN;
    await rejects(uploadFolder(folder, 'alice/tiny', { message: 'm', retry: FAST }), /403[\s\S]*write access/);
    process.env.HF_TOKEN = TOKEN;
    await rejects(uploadFolder(folder, 'bob/tiny', { message: 'm', retry: FAST }), /creating model repo bob\/tiny.*403/);
  });
  it('409 on commit: says to run publish again', async () => {
    hub.faults.conflictOnCommit = true;
    await rejects(uploadFolder(folder, 'alice/tiny', { message: 'm', retry: FAST }), /409[\s\S]*run publish again/);
  });
  it('404 on commit (repo deleted meanwhile) names the repo', async () => {
    hub.faults.failNext = { count: 1, status: 404, match: /preupload/ };
    await rejects(uploadFolder(folder, 'alice/tiny', { message: 'm', retry: FAST }), /uploading to model alice\/tiny: repo not found/);
  });
});
