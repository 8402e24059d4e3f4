// Fault injection, training, as a user meets it through `vlm run` (child processes):
//   - NaN: a learning rate of 1e30 makes step 2 non-finite: exit 1, the module that first went
//     non-finite named, the last good checkpoint (step 1) still `latest` and loadable, and the
//     message says how to resume;
//   - SIGINT mid-run: non-zero exit, no stack trace, a checkpoint of the last finished step, and the
//     resume command printed -- which, run exactly as printed, finishes the run with every step once;
//   - resume with a changed recipe: refused, naming the key, with --force as the way out, and the
//     run directory not touched (apart from its log);
//   - the run directory already exists: refused, the user's file in it untouched.
// test/plugins/stage/train-faults.test.ts covers kill -9 during checkpoint writes (many times), SIGTERM and disk
// full (ENOSPC); test/plugins/stage/train.test.ts the in-process resume/NaN mechanics. Not repeated here.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import { findLatestCheckpoint } from '../../../core/train/trainer-checkpoints.ts';
import { readSafetensors } from '../../../core/weights/safetensors.ts';
import { timestamp } from '../../../core/run.ts';
import { assertNoLeftovers, assertUnchanged, assertUserError, hasStack, runDirIn, snapshot, startVlm, tinyRecipe, vlm, workspace } from '../../helpers/cli-faults.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const trainSteps = (runDir: string): number[] =>
  existsSync(join(runDir, 'metrics.jsonl'))
    ? readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
        .split('\n')
        .filter((l) => l.includes('"type":"train"'))
        .map((l) => JSON.parse(l).step as number)
    : [];

/** the latest checkpoint parses completely; its step */
function latestLoadable(runDir: string): number {
  const found = findLatestCheckpoint(runDir);
  assert.ok(found, `a complete checkpoint in ${runDir}`);
  const model = readSafetensors(join(found.folder, 'model.safetensors'));
  assert.ok(model.tensors.size > 10);
  for (const [name, t] of model.tensors) assert.ok(Array.from(t.data as Float32Array).every(Number.isFinite), `${name} is finite in the kept checkpoint`);
  readSafetensors(join(found.folder, 'optimizer.safetensors'));
  JSON.parse(readFileSync(join(found.folder, 'config.json'), 'utf8'));
  return found.trainer.step;
}

describe('training faults through vlm run', () => {
  it('NaN: stops at the first non-finite step naming the module; the last good checkpoint stays latest and loadable', async () => {
    const cwd = workspace();
    writeFileSync(join(cwd, 'r.yaml'), stringify(tinyRecipe({ train: { max_steps: 8, checkpoint_every: 1 } })));
    const before = snapshot(cwd);
    const r = await vlm(['run', 'r.yaml', 'optimizer.lr=1e30'], { cwd });
    const runDir = runDirIn(cwd)!;
    assertUserError(
      r,
      /error: training diverged at step (\d+) \(epoch 0\): loss NaN.*first non-finite output: (vision_encoder|MP|decoder)/,
      new RegExp(`-> the last good checkpoint is \\S*checkpoints/step-1 \\(resume with --resume ${runDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)`),
    );
    assert.equal(latestLoadable(runDir), 1);
    assert.deepEqual(readdirSync(join(runDir, 'checkpoints')).filter((f) => f.startsWith('step-')), ['step-1'], 'no checkpoint of a diverged step');
    assert.ok(!existsSync(join(runDir, 'model')), 'nothing published from a diverged run');
    assertUnchanged(before, snapshot(cwd));
    assertNoLeftovers(cwd);
  });

  it('SIGINT mid-run: checkpoint, resume command, non-zero exit; a changed recipe is refused on resume; the printed command finishes the run', async () => {
    const cwd = workspace();
    const recipe = tinyRecipe({ train: { max_steps: 30, checkpoint_every: 1000 }, data: { train: [{ use: 'synthetic-shapes', split: 'train', count: 100, format: 'open' }] }, stages: ['load', 'train'] });
    writeFileSync(join(cwd, 'r.yaml'), stringify(recipe));
    const userFiles = snapshot(cwd);
    const s = startVlm(['run', 'r.yaml'], { cwd });
    const t0 = Date.now();
    let runDir: string | null = null;
    while (!(runDir ??= runDirIn(cwd)) || trainSteps(runDir).length < 2) {
      assert.ok(Date.now() - t0 < 90_000, `no training steps after 90 s:\n${s.output()}`);
      await sleep(25);
    }
    s.child.kill('SIGINT');
    const r = await s.done;
    assert.notEqual(r.code, 0, r.all);
    assert.equal(r.signal, null, 'the process exits by itself (not killed by the signal)');
    assert.ok(!hasStack(r.all), `no stack trace on Ctrl-C:\n${r.all}`);
    assert.doesNotMatch(r.all, /internal error/);
    const steps = trainSteps(runDir);
    const saved = latestLoadable(runDir);
    assert.equal(saved, steps.at(-1), 'the checkpoint holds the last finished step');
    assert.ok(saved < 30, 'interrupted before the end');
    const m = /resume with: (vlm run .*--resume \S+)/.exec(r.all);
    assert.ok(m, `the resume command is printed:\n${r.all}`);

    // a changed recipe: refused, naming the key; nothing in the run directory changes but its log
    const changed = structuredClone(recipe) as any;
    changed.optimizer.lr = 1e-3;
    writeFileSync(join(cwd, 'changed.yaml'), stringify(changed));
    const inRun = snapshot(runDir, (rel) => rel === 'run.log');
    const refused = await vlm(['run', 'changed.yaml', '--resume', runDir], { cwd });
    assertUserError(refused, /optimizer\.lr/, /--force/);
    assertUnchanged(inRun, snapshot(runDir, (rel) => rel === 'run.log'), 'a file of the interrupted run');

    // the printed command, as printed
    const args = m[1].split(/\s+/).slice(1);
    const resumed = await vlm(args, { cwd });
    assert.equal(resumed.code, 0, resumed.all);
    assert.deepEqual(trainSteps(runDir), Array.from({ length: 30 }, (_, i) => i + 1), 'every step exactly once');
    assert.equal(latestLoadable(runDir), 30);
    assertUnchanged(userFiles, snapshot(cwd));
    assertNoLeftovers(cwd);
  });

  it('--resume of a directory that does not exist: says what to pass', async () => {
    const cwd = workspace();
    writeFileSync(join(cwd, 'r.yaml'), stringify(tinyRecipe()));
    const r = await vlm(['run', 'r.yaml', '--resume', 'runs/nope'], { cwd });
    assertUserError(r, /--resume runs\/nope: no such run directory/, /-> pass a directory such as runs\//);
    assert.ok(!existsSync(join(cwd, 'runs')), 'nothing created');
  });

  it('the run directory already exists: refused, and the file the user had there is untouched', async () => {
    const cwd = workspace();
    writeFileSync(join(cwd, 'r.yaml'), stringify(tinyRecipe()));
    // occupy every name the run could take in the next minute (runs/<name>-<YYYYMMDD-HHMMSS>)
    const now = Date.now();
    for (let s = -2; s < 60; s++) {
      const d = join(cwd, 'runs', `faults-${timestamp(new Date(now + s * 1000))}`);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, 'notes.txt'), 'my notes about this run\n');
    }
    const before = snapshot(cwd);
    const r = await vlm(['run', 'r.yaml'], { cwd });
    assertUserError(r, /run directory \S*runs\/faults-\d{8}-\d{6} already exists/, /-> .*--force.*--resume/);
    const after = snapshot(cwd);
    assertUnchanged(before, after);
    assert.equal(after.size, before.size, 'no file added');
  });
});
