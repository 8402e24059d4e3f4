// `vlm eval` as a new user meets it (issue 20, items 2, 3 and 7): --model <run dir> uses the run's
// recipe with its relative data paths resolved against the original recipe's folder, builds no
// training data, leaves no run folder behind when it fails; a model folder without a recipe is
// refused (no silent default data); no arguments says what is missing.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { main as evalMain } from '../../../core/commands/eval.ts';
import type { EvalResult } from '../../../core/types.ts';
import { useTestBackend } from '../../helpers/backend.ts';
import { commandEnv, makeTinyRun, type TinyRun } from '../../helpers/tiny-run.ts';

let t: TinyRun;
const cwd = process.cwd();

before(async () => {
  await useTestBackend();
  t = await makeTinyRun();
  // from somewhere else than the project: relative paths must not resolve against the working directory
  const elsewhere = join(t.root, 'elsewhere');
  mkdirSync(elsewhere);
  process.chdir(elsewhere);
});

after(() => {
  process.chdir(cwd);
  rmSync(t.root, { recursive: true, force: true });
});

const evalRuns = () => readdirSync(join(t.root, 'runs')).filter((d) => d.includes('-eval-'));

test('vlm eval --model <run dir>: the run\'s recipe, relative data paths resolved against the original recipe, no training data built', async () => {
  const c = commandEnv();
  const code = await evalMain(['--model', t.runDir, 'runtime.backend=' + (process.env.VLM_TEST_BACKEND ?? 'wasm')], c.env).catch((e) => {
    throw new Error(`${e.message}\n${c.err()}`);
  });
  assert.equal(code, 0, c.err());
  const runs = evalRuns();
  assert.equal(runs.length, 1);
  const { results } = JSON.parse(readFileSync(join(t.root, 'runs', runs[0], 'eval', 'results.json'), 'utf8')) as { results: EvalResult[] };
  assert.equal(results[0].evaluator, 'multiple-choice');
  assert.equal(results[0].metrics.n, 4); // the 4 rows of project/data/colours
  rmSync(join(t.root, 'runs', runs[0]), { recursive: true });
});

test('a failed vlm eval leaves no run folder behind', async () => {
  const c = commandEnv();
  await assert.rejects(evalMain(['--model', t.runDir, 'data.eval[0].path=data/nope'], c.env), /no data\.jsonl in .*data[/\\]nope/);
  assert.deepEqual(evalRuns(), []);
});

test('vlm eval --model <folder without recipe.yaml> is refused and says what to pass', async () => {
  const bare = join(t.root, 'bare-model');
  mkdirSync(bare);
  for (const f of ['config.json', 'model.safetensors']) cpSync(join(t.modelDir, f), join(bare, f));
  await assert.rejects(evalMain(['--model', bare], commandEnv().env), (e: Error & { hint?: string }) => {
    assert.match(e.message, /carries no recipe\.yaml/);
    assert.match(e.hint ?? '', /vlm eval --model .*bare-model <recipe\.yaml>/);
    return true;
  });
  assert.deepEqual(evalRuns(), []);
  // a published model folder carries its recipe.yaml (the run's, with its "# resolved from" line):
  // that one is used, its relative paths resolved against the original recipe's folder
  const published = join(t.root, 'published');
  mkdirSync(published);
  for (const f of ['config.json', 'model.safetensors', 'nanovlm-ts.json']) cpSync(join(t.modelDir, f), join(published, f));
  cpSync(join(t.runDir, 'recipe.yaml'), join(published, 'recipe.yaml'));
  const c = commandEnv();
  assert.equal(await evalMain(['--model', published, 'runtime.backend=' + (process.env.VLM_TEST_BACKEND ?? 'wasm')], c.env), 0, c.err());
  const runs = evalRuns();
  assert.equal(runs.length, 1);
  assert.ok(existsSync(join(t.root, 'runs', runs[0], 'eval', 'results.json')));
  rmSync(join(t.root, 'runs', runs[0]), { recursive: true });
});

test('vlm eval with no arguments says --model is missing; a mistyped local path is reported as a path', async () => {
  await assert.rejects(evalMain([], commandEnv().env), /--model is missing/);
  // `runs/nope` is also a valid Hub repo id; runs/ being a local folder, it is reported as a missing path (no Hub request)
  process.chdir(t.root);
  try {
    await assert.rejects(evalMain(['--model', 'runs/nope'], commandEnv().env), (e: Error & { hint?: string }) => {
      assert.match(e.message, /^no local folder runs\/nope \(.* does not exist\)$/);
      assert.match(e.hint ?? '', /runs\/ is a local folder, so this was not tried as a Hub repo id/);
      return true;
    });
  } finally {
    process.chdir(join(t.root, 'elsewhere'));
  }
});
