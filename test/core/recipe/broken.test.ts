// The broken-recipe corpus (test/core/recipe/broken/): `vlm validate` reports every problem at once,
// each with file:line:col, YAML path and message (+ "did you mean"), exit code 1, no stack trace.
import assert from 'node:assert/strict';
import { dirname, join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cli } from '../../../core/cli.ts';
import { fixturePlugins, validateWithFixtures } from './fixture-plugins.ts';

const DIR = join(dirname(fileURLToPath(import.meta.url)), 'broken');
const rel = (f: string) => relative(process.cwd(), join(DIR, f));

const validate = (file: string, ...args: string[]) => validateWithFixtures(join(DIR, file), ...args);

function lines(err: string): string[] {
  return err.trimEnd().split('\n');
}

test('a valid recipe passes', async () => {
  const r = await validate('base-ok.yaml');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /ok \(load -> train\)/);
});

test('bad YAML syntax: the line and column of the parse error', async () => {
  const r = await validate('bad-yaml.yaml');
  assert.equal(r.code, 1);
  assert.deepEqual(lines(r.err), [
    `error: ${rel('bad-yaml.yaml')}:4:3: invalid YAML: Flow map in block collection must be sufficiently indented and end with a }`,
  ]);
  assert.doesNotMatch(r.err, /at .*\.ts:\d+/); // no stack trace
});

test('wrong types: every problem at once, recipe keys and plugin options', async () => {
  const r = await validate('wrong-types.yaml');
  assert.equal(r.code, 1);
  const f = rel('wrong-types.yaml');
  assert.deepEqual(lines(r.err), [
    '5 problems:',
    `error: ${f}:4:9 runtime.seed: must be integer, got string "zero"`,
    `error: ${f}:5:12 runtime.backend: must be one of "auto", "webgpu", "tensorflow", "wasm", "cpu", got string "gpu" (did you mean "cpu"?)`,
    `error: ${f}:7:15 train.batch_size: must be integer, got string "eight" (plugin train)`,
    `error: ${f}:8:11 train.epochs: must be >= 1, got number 0 (plugin train)`,
    `error: ${f}:10:42 model.vision.hidden_dim: must be integer, got string "big" (plugin siglip-vit)`,
  ]);
});

test('unknown plugins and stages: did you mean, and what exists', async () => {
  const r = await validate('unknown-plugin.yaml');
  assert.equal(r.code, 1);
  const f = rel('unknown-plugin.yaml');
  assert.deepEqual(lines(r.err), [
    '3 problems:',
    `error: ${f}:4:18 model.vision.use: unknown vision plugin "siglip-vt" (did you mean "siglip-vit"?)`,
    '  -> vision plugins: siglip-vit',
    `error: ${f}:5:19 model.decoder.use: unknown decoder plugin "lama" (did you mean "llama"?)`,
    '  -> decoder plugins: llama',
    `error: ${f}:6:16 stages[1]: unknown stage plugin "trian" (did you mean "train"?)`,
    '  -> stage plugins: load, train, eval, publish',
  ]);
});

test('unknown keys point at the key, with did you mean', async () => {
  const r = await validate('unknown-key.yaml');
  assert.equal(r.code, 1);
  const f = rel('unknown-key.yaml');
  assert.deepEqual(lines(r.err), [
    '3 problems:',
    `error: ${f}:3:1 trian: unknown key "trian" (did you mean "train"?)`,
    `error: ${f}:6:3 train.bach_size: unknown option "bach_size" (did you mean "batch_size"?) (plugin train)`,
    `error: ${f}:8:30 model.vision.hiden_dim: unknown option "hiden_dim" (did you mean "hidden_dim"?) (plugin siglip-vit)`,
  ]);
});

test('an unknown key with no close match lists the known ones', async () => {
  const r = await validate('no-close-match.yaml', 'model.projector.zzz=1');
  assert.equal(r.code, 1);
  assert.deepEqual(lines(r.err), [
    '2 problems:',
    'error: override model.projector.zzz=1: model.projector.zzz: unknown key "zzz" under model.projector; known keys: use, factor',
    `error: ${rel('no-close-match.yaml')}:4:37 data.train[0].from: unknown option "from"; known options: split, count, limit (plugin synthetic-shapes)`,
  ]);
});

test('a missing required plugin option', async () => {
  const r = await validate('missing-option.yaml');
  assert.equal(r.code, 1);
  assert.deepEqual(lines(r.err), [`error: ${rel('missing-option.yaml')}:5:3 model.decoder: missing required option "vocab_size" (plugin llama)`]);
});

test('bad override paths and values', async () => {
  const r = await validate('base-ok.yaml', 'train.bach_size=3', 'data.train[3].count=1', 'model.vision.hidden=2', 'runtime.seed=abc');
  assert.equal(r.code, 1);
  assert.deepEqual(lines(r.err), [
    '4 problems:',
    'error: override data.train[3].count=1: data.train has no entry [3] (it has 1)',
    'error: override model.vision.hidden=2: model.vision.hidden: unknown key "hidden" under model.vision (did you mean "hidden_dim"?)',
    'error: override runtime.seed=abc runtime.seed: must be integer, got string "abc"',
    'error: override train.bach_size=3: train.bach_size: unknown key "bach_size" under train (did you mean "batch_size"?)',
  ]);
});

test('an argument that is not an override', async () => {
  const r = await validate('base-ok.yaml', 'nonsense');
  assert.equal(r.code, 1);
  assert.deepEqual(lines(r.err), ['error: one recipe at a time: "nonsense" is not an override', '  -> overrides are written key.path=value, e.g. train.batch_size=8']);
});

test('overrides are typed through the schema', async () => {
  const r = await validate('base-ok.yaml', 'train.batch_size=16', 'data.train[0].limit=100', 'data.train[0].count="7"', 'name=123');
  assert.equal(r.code, 0, r.err);
});

test('circular extends shows the chain', async () => {
  const r = await validate('circular-a.yaml');
  assert.equal(r.code, 1);
  const chain = ['circular-a.yaml', 'circular-b.yaml', 'circular-a.yaml'].map(rel).join(' -> ');
  assert.deepEqual(lines(r.err), [`error: ${rel('circular-b.yaml')} extends: circular extends: ${chain}`]);
});

test('errors in an extended file point at that file', async () => {
  const r = await validate('extends-bad-base.yaml');
  assert.equal(r.code, 1);
  assert.ok(
    lines(r.err).includes(`error: ${rel('bad-base.yaml')}:3:42 model.vision.hidden_dim: must be >= 1, got number -3 (plugin siglip-vit)`),
    r.err,
  );
  assert.ok(lines(r.err).includes(`error: ${rel('extends-bad-base.yaml')}:1:1: the train stage needs \`optimizer\``), r.err);
});

test('YAML alias bombs are refused', async () => {
  const r = await validate('alias-bomb.yaml');
  assert.equal(r.code, 1);
  assert.match(r.err, /alias-bomb\.yaml: invalid YAML: Excessive alias count/);
});

test('a plugin module that throws on import: named, with the recipe line', async () => {
  const r = await validate('plugin-throws.yaml');
  assert.equal(r.code, 1);
  assert.deepEqual(lines(r.err), [
    `error: ${rel('plugin-throws.yaml')}:4:5 plugins[0]: plugin module ./throws-on-import.ts failed to load: this plugin module is broken on purpose`,
    '  -> fix the module (run with --debug for the stack trace)',
  ]);
});

test('--debug adds the stack trace', async () => {
  let err = '';
  const code = await cli(['validate', join(DIR, 'plugin-throws.yaml'), '--debug'], {
    builtins: fixturePlugins,
    stdout: { write: () => true },
    stderr: { write: (s: string) => (err += s) },
  });
  assert.equal(code, 1);
  assert.match(err, /caused by: Error: this plugin module is broken on purpose\n\s+at /);
});
