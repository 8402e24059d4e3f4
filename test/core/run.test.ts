// `vlm run` with stand-in stages: the run directory (resolved recipe, run.log, metrics.jsonl),
// stage order, a stage failing with a UserError, an existing directory, Ctrl-C.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { cli } from '../../core/cli.ts';
import { UserError } from '../../core/errors.ts';
import { definePlugin, type Plugin } from '../../core/plugin.ts';
import { createRun, timestamp } from '../../core/run.ts';
import { resolveRecipe } from '../../core/recipe/index.ts';
import { Registry } from '../../core/registry.ts';
import type { RunContext } from '../../core/types.ts';
import { fixturePlugins } from './recipe/fixture-plugins.ts';

process.env.CI = 'true'; // plain line renderer

const calls: string[] = [];
/** a stand-in stage with the options of the real stage of that name (its section of the recipe) */
function stage(name: string, run: (ctx: RunContext, report: (l: string) => void) => Promise<void>): Plugin {
  return definePlugin({
    kind: 'stage',
    name,
    description: `test stage ${name}`,
    options: fixturePlugins.find((p) => p.kind === 'stage' && p.name === name)!.options,
    create: () => ({ title: name, run }),
  });
}
const stages = [
  stage('load', async (ctx, report) => {
    calls.push('load');
    report('loading');
    ctx.log.info('load says hi');
    ctx.artifacts.thing = 'thing.txt';
  }),
  stage('train', async (ctx) => {
    calls.push('train');
    ctx.metrics({ step: 1, loss: 2.5 });
    ctx.metrics({ step: 2, loss: 2.0 });
  }),
  stage('eval', async () => {
    calls.push('eval');
    throw new UserError('the eval data is missing', { where: { file: 'data/x.parquet' }, hint: 'download it' });
  }),
  stage('publish', async (ctx) => {
    calls.push('publish');
    process.kill(process.pid, 'SIGINT');
    while (!ctx.signal.aborted) await new Promise((r) => setTimeout(r, 5));
  }),
];
const builtins = [...fixturePlugins.filter((p) => p.kind !== 'stage'), ...stages];

function setup(stagesList: string): string {
  const d = mkdtempSync(join(tmpdir(), 'vlm-run-'));
  writeFileSync(
    join(d, 'r.yaml'),
    `name: tiny
runtime: { backend: cpu, out_dir: ${join(d, 'runs')} }
model:
  vision: { use: siglip-vit }
  projector: { use: pixel-shuffle }
  decoder: { use: llama, vocab_size: 300 }
  tokenizer: { use: bytes }
  image_processor: { use: resize }
data: { train: [ { use: synthetic-shapes } ] }
optimizer: { use: adamw }
schedule: { use: cosine-warmup }
stages: ${stagesList}
`,
  );
  return d;
}

async function vlm(...argv: string[]) {
  let out = '';
  let err = '';
  const code = await cli(argv, { builtins, stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } });
  return { code, out, err };
}

test('run: stages in recipe order; run dir with resolved recipe, log and metrics', async () => {
  calls.length = 0;
  const d = setup('[train, load]');
  const r = await vlm('run', join(d, 'r.yaml'), 'train.batch_size=4');
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(calls, ['train', 'load']);
  const runs = readdirSync(join(d, 'runs'));
  assert.equal(runs.length, 1);
  assert.match(runs[0], /^tiny-\d{8}-\d{6}$/);
  const runDir = join(d, 'runs', runs[0]);
  const resolved = parse(readFileSync(join(runDir, 'recipe.yaml'), 'utf8'));
  assert.deepEqual(JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')), { recipe: join(d, 'r.yaml'), overrides: ['train.batch_size=4'] });
  assert.equal(resolved.train.batch_size, 4);
  assert.equal(resolved.train.epochs, 1); // default filled in
  assert.equal(resolved.model.vision.hidden_dim, 768); // plugin default filled in
  assert.deepEqual(
    readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)),
    [{ step: 1, loss: 2.5 }, { step: 2, loss: 2.0 }],
  );
  const log = readFileSync(join(runDir, 'run.log'), 'utf8');
  assert.match(log, /info load says hi/);
  assert.match(r.err, /backend: cpu/);
  assert.match(r.err, /thing: .*thing\.txt/);
});

test('a stage failing with a UserError: printed cleanly, exit 1, logged', async () => {
  calls.length = 0;
  const d = setup('[load, eval, train]');
  const r = await vlm('run', join(d, 'r.yaml'));
  assert.equal(r.code, 1);
  assert.deepEqual(calls, ['load', 'eval']);
  assert.match(r.err, /error: data\/x\.parquet: the eval data is missing\n {2}-> download it/);
  assert.doesNotMatch(r.err, /at .*run\.test\.ts/);
});

test('Ctrl-C aborts ctx.signal; the run stops with exit code 130 and says how to resume', async () => {
  calls.length = 0;
  const d = setup('[publish, load]');
  const r = await vlm('run', join(d, 'r.yaml'));
  assert.equal(r.code, 130, r.err);
  assert.deepEqual(calls, ['publish']);
  assert.match(r.err, /SIGINT: stopping after the current step/);
  assert.match(r.err, /resume with: vlm run .*r\.yaml --resume /);
  assert.equal(process.listenerCount('SIGINT'), 0); // handlers removed
});

test('an existing run directory is an error unless --force', async () => {
  const d = setup('[load]');
  const recipe = await resolveRecipe(join(d, 'r.yaml'), { registry: new Registry(builtins) });
  const runDir = join(d, 'runs', 'fixed');
  mkdirSync(runDir, { recursive: true });
  writeFileSync(join(runDir, 'keep.txt'), 'mine');
  assert.throws(() => createRun(recipe, { registry: new Registry(builtins), backend: 'cpu', flags: {}, runDir }), /run directory .*fixed already exists/);
  const run = createRun(recipe, { registry: new Registry(builtins), backend: 'cpu', flags: { force: true }, runDir });
  run.close();
  assert.ok(existsSync(join(runDir, 'recipe.yaml')));
  assert.equal(readFileSync(join(runDir, 'keep.txt'), 'utf8'), 'mine');
});

test('--resume reopens the run directory and keeps its recipe.yaml', async () => {
  const d = setup('[load]');
  const recipe = await resolveRecipe(join(d, 'r.yaml'), { registry: new Registry(builtins) });
  const runDir = join(d, 'old-run');
  mkdirSync(runDir);
  writeFileSync(join(runDir, 'recipe.yaml'), 'name: original\n');
  const run = createRun(recipe, { registry: new Registry(builtins), backend: 'cpu', flags: { resume: runDir } });
  run.close();
  assert.equal(run.ctx.runDir, runDir);
  assert.equal(readFileSync(join(runDir, 'recipe.yaml'), 'utf8'), 'name: original\n');
  assert.throws(() => createRun(recipe, { registry: new Registry(builtins), backend: 'cpu', flags: { resume: join(d, 'nope') } }), /no such run directory/);
});

test('timestamp format', () => {
  assert.equal(timestamp(new Date(2026, 0, 2, 3, 4, 5)), '20260102-030405');
});

test('vlm run arguments: default recipe, overrides, --resume picks the run directory recipe', async () => {
  const { parseRunArgs, DEFAULT_RECIPE } = await import('../../core/commands/run.ts');
  assert.match(DEFAULT_RECIPE, /recipes[/\\]shapes-tiny\.yaml$/);
  const a = parseRunArgs(['train.batch_size=4', '--force']);
  assert.equal(a.recipe, DEFAULT_RECIPE);
  assert.deepEqual(a.overrides, ['train.batch_size=4']);
  assert.deepEqual(a.flags, { resume: undefined, force: true, dryRun: false, debug: false });
  const d = mkdtempSync(join(tmpdir(), 'vlm-args-'));
  writeFileSync(join(d, 'recipe.yaml'), 'name: x\n');
  assert.equal(parseRunArgs(['--resume', d]).recipe, join(d, 'recipe.yaml'));
  writeFileSync(join(d, 'run.json'), JSON.stringify({ recipe: '/abs/r.yaml', overrides: ['train.epochs=2'] }));
  const resumed = parseRunArgs(['--resume', d, 'train.batch_size=3']);
  assert.equal(resumed.recipe, '/abs/r.yaml');
  assert.deepEqual(resumed.overrides, ['train.epochs=2', 'train.batch_size=3']);
  assert.equal(parseRunArgs(['mine.yaml', '--resume', d, '--dry-run']).recipe, 'mine.yaml');
  assert.throws(() => parseRunArgs(['a.yaml', 'b.yaml']), /one recipe at a time/);
});
