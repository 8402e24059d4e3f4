// Faults during training, with real child processes running `vlm run` (bin/vlm.js):
// - kill -9 at random moments while checkpoints are being written (every step), 10 times: the
//   latest checkpoint is always complete and readable, and --resume finishes the run;
// - SIGINT / SIGTERM mid-run: the step finishes, a checkpoint is written, the resume command is
//   printed, the exit code is non-zero, and the resumed run continues at the next step;
// - disk full (ENOSPC, injected through VLM_FAULT_CHECKPOINT) while writing a checkpoint: the run
//   stops with a clear error and the previous checkpoint stays latest and loadable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../helpers/shared.ts';
import { findLatestCheckpoint } from '../../../core/train/trainer-checkpoints.ts';
import { readSafetensors } from '../../../core/weights/safetensors.ts';
import { rng } from '../../helpers/train.ts';
import { smallRecipe, tmpOut, writeRecipe } from '../../helpers/run.ts';

const VLM = join(REPO_ROOT, 'bin', 'vlm.js');

function start(args: string[], env: Record<string, string> = {}): { child: ChildProcess; done: Promise<{ code: number | null; signal: string | null; stderr: string }> } {
  const child = spawn(process.execPath, [VLM, 'run', ...args], { cwd: REPO_ROOT, env: { ...process.env, CI: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdout!.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; signal: string | null; stderr: string }>((r) => child.on('close', (code, signal) => r({ code, signal, stderr })));
  return { child, done };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const runDirIn = (out: string) => {
  const d = existsSync(out) ? readdirSync(out) : [];
  return d.length === 1 ? join(out, d[0]) : null;
};

const trainSteps = (runDir: string) =>
  existsSync(join(runDir, 'metrics.jsonl'))
    ? readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"type":"train"')).map((l) => JSON.parse(l).step as number)
    : [];

/** the latest checkpoint is complete: every file parses, and its parts agree on the step */
function assertLoadable(runDir: string): number {
  const found = findLatestCheckpoint(runDir);
  assert.ok(found, `a complete checkpoint in ${runDir}`);
  const model = readSafetensors(join(found.folder, 'model.safetensors'));
  assert.ok(model.tensors.size > 10);
  const opt = readSafetensors(join(found.folder, 'optimizer.safetensors'));
  assert.equal(Number(opt.metadata?.step), found.trainer.step);
  assert.equal(JSON.parse(readFileSync(join(found.folder, 'config.json'), 'utf8')).lm_hidden_dim, 48);
  return found.trainer.step;
}

test('kill -9 at random moments during checkpoint writes (10 times): the latest checkpoint stays loadable and --resume finishes', async () => {
  const out = tmpOut();
  const recipe = writeRecipe(smallRecipe(out, { max_steps: 40, checkpoint_every: 1, keep_checkpoints: 2, batch_size: 2 }, { data: { train: [{ use: 'synthetic-shapes', split: 'train', count: 200, format: 'open' }] } }));
  const rand = rng(7);
  let runDir: string | null = null;
  let lastStep = 0;
  for (let i = 0; i < 10; i++) {
    const { child, done } = start(runDir ? [recipe, '--resume', runDir] : [recipe]);
    // wait until this process is training and writing checkpoints (past the step it resumed at)
    await waitFor(() => {
      runDir ??= runDirIn(out);
      return !!runDir && (findLatestCheckpoint(runDir)?.trainer.step ?? 0) > lastStep;
    }, `child ${i} to write a checkpoint`);
    await sleep(Math.floor(rand() * 150));
    child.kill('SIGKILL');
    const r = await done;
    assert.equal(r.signal, 'SIGKILL', `child ${i} was still running when killed: ${r.stderr}`);
    const step = assertLoadable(runDir!);
    assert.ok(step > lastStep, `progress after kill ${i}: ${step} > ${lastStep}`);
    lastStep = step;
  }
  const final = start([recipe, '--resume', runDir!]);
  const r = await final.done;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(assertLoadable(runDir!), 40);
  assert.ok(!readdirSync(join(runDir!, 'checkpoints')).some((f) => f.startsWith('.tmp-')), 'no leftover temporary folder');
});

test('SIGINT / SIGTERM mid-run: checkpoint, resume command, non-zero exit; the resumed run continues at the next step', async () => {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    const out = tmpOut();
    const recipe = writeRecipe(smallRecipe(out, { max_steps: 20, checkpoint_every: 1000, batch_size: 2 }, { data: { train: [{ use: 'synthetic-shapes', split: 'train', count: 100, format: 'open' }] } }));
    const { child, done } = start([recipe]);
    let runDir: string | null = null;
    await waitFor(() => !!(runDir ??= runDirIn(out)) && trainSteps(runDir).length >= 3, 'three training steps');
    child.kill(sig);
    const r = await done;
    assert.notEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, /interrupted/);
    assert.match(r.stderr, new RegExp(`resume with: vlm run --resume ${runDir!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    const steps = trainSteps(runDir!);
    const saved = assertLoadable(runDir!);
    assert.equal(saved, steps.at(-1), 'the checkpoint holds the last finished step');
    assert.ok(saved < 20, `interrupted before the end (step ${saved})`);
    if (sig === 'SIGTERM') continue; // same code path; resuming is checked once
    const resumed = await start(['--resume', runDir!]).done;
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.deepEqual(trainSteps(runDir!), Array.from({ length: 20 }, (_, i) => i + 1), 'every step exactly once');
  }
});

test('disk full (ENOSPC) while writing a checkpoint: clear error, previous checkpoint stays latest and loadable', async () => {
  const out = tmpOut();
  const recipe = writeRecipe(smallRecipe(out, { max_steps: 12, checkpoint_every: 4, batch_size: 2 }));
  const r = await start([recipe], { VLM_FAULT_CHECKPOINT: 'enospc:2' }).done;
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /disk full while writing checkpoint .*step-8/);
  assert.match(r.stderr, /previous checkpoint \(step-4\) is intact/);
  assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, 'a user error, no stack trace');
  const runDir = runDirIn(out)!;
  assert.equal(assertLoadable(runDir), 4);
  assert.deepEqual(readdirSync(join(runDir, 'checkpoints')).sort(), ['latest', 'step-4']);
});
