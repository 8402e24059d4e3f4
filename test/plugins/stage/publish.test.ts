// End to end through the publish stage against the fake Hub on 127.0.0.1: the tiny fixture model is
// published (local folder + hub upload), the bytes that arrive equal the folder, the model loads back
// by repo id with identical logits, --dry-run uploads nothing, and the token appears nowhere: not in
// any file the run or the cache produced, not in what was uploaded, not in stdout/stderr or the log.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { parse } from 'yaml';
import { useTestBackend } from '../../helpers/backend.ts';
import { FIXTURES, REPO_ROOT, needsShared } from '../../helpers/shared.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createRegistry } from '../../../core/registry.ts';
import vision from '../../../plugins/vision/index.ts';
import projector from '../../../plugins/projector/index.ts';
import decoder from '../../../plugins/decoder/index.ts';
import publishers from '../../../plugins/publisher/index.ts';
import { checkpointModelSection, loadCheckpoint } from '../../../core/weights/model-folder.ts';
import { readSafetensors } from '../../../core/weights/safetensors.ts';
import { resolveSource } from '../../../core/hub/index.ts';
import publishStage from '../../../plugins/stage/publish.ts';
import type { RunContext, Stage, Tokenizer } from '../../../core/types.ts';
import type { VisionLanguageModel } from '../../../core/model/vlm.ts';
import { startFakeHub, type FakeHub } from '../../helpers/fake-hub.ts';

const TOKEN = 'hf_publishSecretToken0123456789XYZ';
const TINY = join(FIXTURES, 'tiny');
const saved = { ...process.env };
const temps: string[] = [];
let hub: FakeHub;
let model: VisionLanguageModel;
// only the kinds this test needs (the model's and the publishers)
const registry = createRegistry([...vision, ...projector, ...decoder, ...publishers]);

const tokenizer: Tokenizer = {
  vocabSize: 300,
  eosTokenId: 0,
  padTokenId: 0,
  encode: (t) => [...Buffer.from(t)],
  decode: (ids) => Buffer.from(ids).toString(),
  files: () => ({ 'tokenizer.json': '{"kind": "bytes"}\n' }),
};

function runContext(runDir: string, publishers: Record<string, unknown>[], lines: string[], flags: RunContext['flags'] = {}, modelSection?: Record<string, unknown>): RunContext {
  const log = { info: (m: string) => lines.push(m), warn: (m: string) => lines.push(m), debug: (m: string) => lines.push(m) };
  const recipe = {
    name: 'tiny-published',
    model: modelSection ?? checkpointModelSection(TINY, registry).section, // the tiny fixture's shapes, as a recipe would write them
    data: { train: [{ use: 'synthetic-shapes', split: 'train', count: 10 }] },
    publish: { repo_id: 'alice/tiny-vlm', private: false, license: 'apache-2.0', message: null, publishers },
  };
  writeFileSync(join(runDir, 'recipe.yaml'), 'name: tiny-published\n');
  return {
    recipe,
    recipePath: join(runDir, 'recipe.yaml'),
    recipeDir: runDir,
    runDir,
    backend: tf.getBackend(),
    registry,
    log,
    signal: new AbortController().signal,
    seed: 0,
    model,
    tokenizer,
    datasets: { train: [], val: [], eval: [] },
    metrics: () => {},
    evalResults: [{ evaluator: 'multiple-choice', dataset: 'shapes/test', metrics: { accuracy: 0.5 } }],
    artifacts: {},
    facts: { train_time_s: 12.5, steps: 3 },
    flags,
  };
}

const execFileP = promisify(execFile);

/** Run the publish stage in a child process (as the CLI would); returns everything it wrote. */
async function child(runDir: string, publishers: unknown[], env: Record<string, string | undefined>, dryRun = false) {
  const args = ['--import', 'tsx', join(import.meta.dirname, 'publish-child.ts'), runDir, JSON.stringify(publishers)];
  if (dryRun) args.push('--dry-run');
  try {
    const { stdout, stderr } = await execFileP(process.execPath, args, { env: { ...process.env, ...env }, cwd: REPO_ROOT });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

function allFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? allFiles(p) : statSync(p).isFile() ? [p] : [];
  });
}

function logits(m: VisionLanguageModel): Float32Array {
  const inputs = readSafetensors(join(TINY, 'inputs.safetensors')).tensors;
  const t = (n: string) => inputs.get(n)!;
  const ids = tf.tensor2d(Int32Array.from(t('input_ids').data as BigInt64Array, Number), t('input_ids').shape as [number, number], 'int32');
  const mask = tf.tensor2d(Int32Array.from(t('attention_mask').data as BigInt64Array, Number), t('attention_mask').shape as [number, number], 'int32');
  const images = tf.tensor4d(t('images').data as Float32Array, t('images').shape as [number, number, number, number]);
  const out = tf.tidy(() => m.forward(ids, images, mask));
  const data = out.dataSync() as Float32Array;
  tf.dispose([ids, mask, images, out]);
  return data;
}

describe('publish stage + load back by repo id', needsShared('fixtures', 'nanovlm', 'tiny'), () => {
  let home: string;
  before(async () => {
    await useTestBackend();
    hub = await startFakeHub();
    hub.addToken(TOKEN, 'alice');
    model = await loadCheckpoint(TINY, registry);
  });
  after(async () => {
    for (const t of temps) rmSync(t, { recursive: true, force: true });
    model?.dispose();
    await hub?.close();
    process.env = saved;
  });
  beforeEach(() => {
    home = mkdtempSync(join(tmpdir(), 'vlm-publish-'));
    temps.push(home);
    process.env.HF_HOME = join(home, 'hf');
    process.env.HF_ENDPOINT = hub.url;
    process.env.HF_TOKEN = TOKEN;
    delete process.env.HF_HUB_OFFLINE;
    hub.repos.clear();
    hub.requests.length = 0;
    hub.faults = {};
  });

  it('local + hub: the bytes on the Hub equal the folder, and the model loads back with identical logits', async () => {
    const runDir = join(home, 'run');
    mkdirSync(runDir);
    const lines: string[] = [];
    const ctx = runContext(runDir, [{ use: 'local' }, { use: 'hub' }], lines);
    hub.faults.failNext = { count: 1, status: 503, match: /commit/ }; // a transient failure on the way
    await (publishStage.create({} as never, {} as never) as Stage).run(ctx, (l: string) => lines.push(l));
    assert.equal(hub.faults.failNext.count, 0);

    const folder = join(runDir, 'model');
    const local = allFiles(folder).map((p) => p.slice(folder.length + 1)).sort();
    assert.deepEqual(local, ['README.md', 'config.json', 'model.safetensors', 'nanovlm-ts.json', 'recipe.yaml', 'tokenizer.json']);
    const remote = hub.files('model', 'alice/tiny-vlm');
    assert.deepEqual([...remote.keys()].filter((k) => k !== '.gitattributes').sort(), local);
    for (const f of local) assert.ok(remote.get(f)?.equals(readFileSync(join(folder, f))), `${f} differs on the Hub`);
    assert.equal(hub.repo('model', 'alice/tiny-vlm')!.log.length, 2, 'one commit after repo creation');
    assert.equal(ctx.artifacts.model, 'model');
    const card = readFileSync(join(folder, 'README.md'), 'utf8');
    assert.match(card, /library_name: nanovlm-ts/);
    assert.match(card, /from_pretrained\("alice\/tiny-vlm"\)/);
    assert.deepEqual(
      JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8')),
      JSON.parse(readFileSync(join(TINY, 'config.json'), 'utf8')),
    );
    const published = JSON.parse(readFileSync(join(runDir, 'publish.json'), 'utf8'));
    assert.deepEqual(published.published.map((p: { use: string }) => p.use), ['local', 'hub']);

    // load back by repo id, from a clean cache
    const snap = await resolveSource('alice/tiny-vlm');
    assert.ok(snap.startsWith(join(home, 'hf', 'hub', 'models--alice--tiny-vlm', 'snapshots')));
    const back = await loadCheckpoint(snap, registry);
    try {
      const a = logits(model);
      const b = logits(back);
      assert.equal(a.length, 3 * 12 * 300);
      assert.deepEqual(b, a, 'logits differ after the round trip');
    } finally {
      back.dispose();
    }
  });

  it('the token appears nowhere: files of the run, the cache, the upload, stdout/stderr (child process)', async () => {
    const runDir = join(home, 'run');
    const r = await child(runDir, [{ use: 'local' }, { use: 'hub' }], {});
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /uploaded 6 files .* to http:\/\/127\.0\.0\.1:\d+\/alice\/tiny-vlm/);
    assert.ok(hub.repo('model', 'alice/tiny-vlm')!.private);
    await resolveSource('alice/tiny-vlm'); // fill the cache too
    const remote = hub.files('model', 'alice/tiny-vlm');
    const haystack = [
      ...allFiles(runDir).map((p) => readFileSync(p).toString('latin1')),
      ...allFiles(join(home, 'hf')).map((p) => readFileSync(p).toString('latin1')),
      ...[...remote.values()].map((b) => b.toString('latin1')),
      r.stdout,
      r.stderr,
    ].join('\n');
    assert.ok(allFiles(runDir).length >= 7);
    assert.ok(!haystack.includes(TOKEN), 'the token leaked');
    assert.ok(!/hf_[A-Za-z0-9]{20,}/.test(haystack), 'something token-shaped leaked');

    // a rejected token (echoed back by the server in its error body), with the stack printed
    const bad = 'hf_wrongTokenABCDEFGHIJ0123456789';
    hub.faults.echoToken = true;
    const r2 = await child(join(home, 'run2'), [{ use: 'local' }, { use: 'hub' }], { HF_TOKEN: bad });
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /did not accept the token from \$HF_TOKEN[\s\S]*create a new one/);
    assert.match(r2.stderr, /you sent: Bearer \*\*\*\)/, 'the echoed token should show redacted');
    const all = [r2.stdout, r2.stderr, ...allFiles(join(home, 'run2')).map((p) => readFileSync(p).toString('latin1'))].join('\n');
    assert.ok(!all.includes(bad), 'the bad token leaked');
    assert.ok(existsSync(join(home, 'run2', 'model', 'model.safetensors')), 'the local folder is complete although the upload failed');
  });

  it('a hub publisher without a local one writes <run>/model first; --dry-run uploads nothing and needs no token', async () => {
    const runDir = join(home, 'run');
    const r = await child(runDir, [{ use: 'hub', repo_id: 'alice/dry' }], { HF_TOKEN: '' }, true);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(join(runDir, 'model', 'model.safetensors')));
    assert.equal(hub.requests.length, 0, 'the dry run made HTTP requests');
    assert.match(r.stdout, /dry run: would upload 6 files .* to http:\/\/127\.0\.0\.1:\d+\/alice\/dry/);
    const size = statSync(join(runDir, 'model', 'model.safetensors')).size;
    assert.match(r.stdout, new RegExp(`model\\.safetensors .*\\(${size} bytes\\)`));
    assert.equal(JSON.parse(readFileSync(join(runDir, 'publish.json'), 'utf8')).dry_run, true);
  });

  it('a recipe with only model.from gets the checkpoint\'s components in the sidecar, so the folder loads', async () => {
    const runDir = join(home, 'run');
    mkdirSync(runDir);
    const section = { from: TINY, tokenizer: { use: 'bytes' } };
    await (publishStage.create({} as never, {} as never) as Stage).run(runContext(runDir, [{ use: 'local' }], [], {}, section), () => {});
    const side = JSON.parse(readFileSync(join(runDir, 'model', 'nanovlm-ts.json'), 'utf8'));
    assert.equal(side.model.vision.use, 'siglip-vit');
    assert.equal(side.model.decoder.hidden_dim, 48);
    assert.deepEqual(side.model.tokenizer, { use: 'bytes' });
    const back = await loadCheckpoint(join(runDir, 'model'), registry);
    try {
      assert.deepEqual(logits(back), logits(model));
    } finally {
      back.dispose();
    }
  });

  it('a folder the user already had is not replaced', async () => {
    const mine = join(home, 'mine');
    mkdirSync(mine);
    writeFileSync(join(mine, 'precious.txt'), 'keep me');
    const runDir = join(home, 'run');
    mkdirSync(runDir);
    const ctx = runContext(runDir, [{ use: 'local', path: mine }], []);
    await assert.rejects((publishStage.create({} as never, {} as never) as Stage).run(ctx, () => {}), /already exists and is not a model folder/);
    assert.deepEqual(readdirSync(mine), ['precious.txt']);
    assert.deepEqual(readdirSync(home).sort(), ['mine', 'run'], 'a temp folder was left behind');
    // a folder we wrote before is replaced
    const ours = join(home, 'ours');
    await (publishStage.create({} as never, {} as never) as Stage).run(runContext(runDir, [{ use: 'local', path: ours }], []), () => {});
    await (publishStage.create({} as never, {} as never) as Stage).run(runContext(runDir, [{ use: 'local', path: ours }], []), () => {});
    assert.ok(existsSync(join(ours, 'model.safetensors')));
    assert.deepEqual(readdirSync(home).sort(), ['mine', 'ours', 'run']);
  });
});
