// The whole path through the CLI, against the fake Hub on 127.0.0.1: `vlm run` with model.from a
// Hub repo id (downloaded through the cache) and publishers [local, hub]; then `vlm generate
// --model <repo id>` (loads back by repo id), once online and once with HF_HUB_OFFLINE=1 from the
// cache; `vlm run --dry-run` uploads nothing. Every file the runs and the cache produced and
// everything the processes printed is searched for the token.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { FIXTURES, REPO_ROOT, needsShared } from '../../helpers/shared.ts';
import { startFakeHub, type FakeHub } from '../../helpers/fake-hub.ts';

const TOKEN = 'hf_cliSecretToken0123456789ABCDEFG';
const execFileP = promisify(execFile);
const TINY = join(FIXTURES, 'tiny');
let hub: FakeHub;
let dir: string;
const outputs: string[] = [];

async function vlm(args: string[], env: Record<string, string | undefined> = {}) {
  const fullEnv: NodeJS.ProcessEnv = { ...process.env, HF_HOME: join(dir, 'hf'), HF_ENDPOINT: hub.url, HF_TOKEN: TOKEN, CI: '1', ...env };
  for (const [k, v] of Object.entries(fullEnv)) if (v === undefined) delete fullEnv[k];
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [join(REPO_ROOT, 'bin', 'vlm.js'), ...args], { env: fullEnv, cwd: dir });
    outputs.push(stdout, stderr);
    return { code: 0, stdout, stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    outputs.push(x.stdout, x.stderr);
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

function allFiles(d: string): string[] {
  if (!existsSync(d)) return [];
  return readdirSync(d, { withFileTypes: true }).flatMap((e) => {
    const p = join(d, e.name);
    return e.isDirectory() ? allFiles(p) : statSync(p).isFile() ? [p] : [];
  });
}

function recipe(extra: string): string {
  return `name: hub-e2e
runtime: { backend: wasm, seed: 0, out_dir: ${join(dir, 'runs')} }
model:
  from: alice/tiny-base
  tokenizer: { use: bytes }
  image_processor: { use: resize }
publish:
  repo_id: alice/tiny-published
  publishers: [ { use: local }, { use: hub, private: true, message: "e2e upload" } ]
${extra}
stages: [ load, publish ]
`;
}

describe('vlm run / vlm generate with Hub repo ids', needsShared('fixtures', 'nanovlm', 'tiny'), () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vlm-hubcli-'));
    hub = await startFakeHub();
    hub.addToken(TOKEN, 'alice');
    hub.addRepo('model', 'alice/tiny-base', {
      'config.json': readFileSync(join(TINY, 'config.json')),
      'model.safetensors': readFileSync(join(TINY, 'model.safetensors')),
    });
    await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 200, g: 30, b: 30 } } }).png().toFile(join(dir, 'red.png'));
  });
  after(async () => {
    await hub?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('run: model.from by repo id, local + hub publish; the Hub has the folder byte for byte', async () => {
    writeFileSync(join(dir, 'recipe.yaml'), recipe(''));
    const r = await vlm(['run', 'recipe.yaml']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const [runDir] = readdirSync(join(dir, 'runs')).map((n) => join(dir, 'runs', n));
    const folder = join(runDir, 'model');
    const local = allFiles(folder).map((p) => p.slice(folder.length + 1)).sort();
    assert.ok(local.includes('model.safetensors') && local.includes('README.md') && local.includes('recipe.yaml'), local.join(','));
    const remote = hub.files('model', 'alice/tiny-published');
    for (const f of local) assert.ok(remote.get(f)?.equals(readFileSync(join(folder, f))), `${f} differs on the Hub`);
    assert.deepEqual(hub.repo('model', 'alice/tiny-published')!.log.map((c) => c.title), ['initial commit', 'e2e upload']);
    assert.ok(readFileSync(join(folder, 'model.safetensors')).equals(readFileSync(join(TINY, 'model.safetensors'))), 'weights changed on the way');
    const card = readFileSync(join(folder, 'README.md'), 'utf8');
    assert.match(card, /base_model:\n\s+- alice\/tiny-base/);
  });

  it('generate --model <repo id>: online, then offline from the cache without a request', async () => {
    const args = ['generate', '--model', 'alice/tiny-published', '--image', 'red.png', '--prompt', 'What colour?', '--max-new-tokens', '3', '--num', '1', '--greedy', '--backend', 'wasm'];
    const online = await vlm(args);
    assert.equal(online.code, 0, online.stdout + online.stderr);
    const n = hub.requests.length;
    const offline = await vlm(args, { HF_HUB_OFFLINE: '1' });
    assert.equal(offline.code, 0, offline.stdout + offline.stderr);
    assert.equal(hub.requests.length, n, 'the offline run made requests');
    assert.equal(offline.stdout, online.stdout, 'offline generation differs');
    const missing = await vlm(['generate', '--model', 'alice/never-downloaded', '--image', 'red.png', '--backend', 'wasm'], { HF_HUB_OFFLINE: '1' });
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /HF_HUB_OFFLINE is set/);
    assert.ok(!/\n\s+at /.test(missing.stderr), 'a user error printed a stack trace');
  });

  it('run --dry-run uploads nothing', async () => {
    const before = hub.requests.filter((q) => q.method !== 'GET').length;
    const r = await vlm(['run', 'recipe.yaml', '--dry-run']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(hub.requests.filter((q) => q.method !== 'GET').length, before);
    assert.match(r.stdout + r.stderr, /would upload \d+ files/);
  });

  it('the token is in no file produced and in no output', () => {
    const files = [...allFiles(join(dir, 'runs')), ...allFiles(join(dir, 'hf'))];
    assert.ok(files.length > 10);
    for (const f of files) assert.ok(!readFileSync(f).toString('latin1').includes(TOKEN), `token in ${f}`);
    for (const b of hub.files('model', 'alice/tiny-published').values()) assert.ok(!b.toString('latin1').includes(TOKEN));
    assert.ok(!outputs.join('\n').includes(TOKEN), 'token in the output');
  });
});
