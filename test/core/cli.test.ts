// The CLI: help lists every command, an unknown command suggests the closest, `vlm plugins`
// lists plugins with their options, user errors print without a stack.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cli, COMMANDS, formatError } from '../../core/cli.ts';
import { UserError, UserErrors } from '../../core/errors.ts';
import { fixturePlugins } from './recipe/fixture-plugins.ts';

async function vlm(...argv: string[]) {
  let out = '';
  let err = '';
  const code = await cli(argv, { builtins: fixturePlugins, stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } });
  return { code, out, err };
}

test('vlm help lists every command', async () => {
  for (const argv of [[], ['help'], ['--help']]) {
    const r = await vlm(...argv);
    assert.equal(r.code, 0);
    for (const c of ['run', 'validate', 'inspect', 'plugins', 'generate', 'eval', 'compare', 'bench', 'memory']) {
      assert.match(r.out, new RegExp(`^  ${c} `, 'm'), c);
      assert.ok(c in COMMANDS);
    }
  }
});

test('an unknown command suggests the closest', async () => {
  const r = await vlm('valdate', 'x.yaml');
  assert.equal(r.code, 1);
  assert.equal(r.err, 'error: unknown command "valdate" (did you mean "validate"?)\n  -> vlm help lists the commands\n');
});

test('vlm plugins: by kind, with the defining file, description and options', async () => {
  const r = await vlm('plugins', 'dataset');
  assert.equal(r.code, 0, r.err);
  assert.equal(
    r.out,
    [
      'dataset:',
      '  synthetic-shapes  test/core/recipe/fixture-plugins.ts', // the file that defines it
      '    test dataset synthetic-shapes',
      '    - split: "train" | "val" | "test" = "train"',
      '    - count: integer = 100',
      '    - limit: integer | null = null',
      '',
    ].join('\n'),
  );
  const all = await vlm('plugins', '--json');
  const kinds = JSON.parse(all.out);
  assert.equal(kinds.length, 12); // core/types.ts PLUGIN_KINDS (adapter included)
  assert.deepEqual(kinds.find((k: { kind: string }) => k.kind === 'decoder').plugins[0].options[1], {
    name: 'vocab_size',
    type: 'integer',
    default: '',
    required: true,
    description: '',
  });
  const bad = await vlm('plugins', 'datasets');
  assert.match(bad.err, /unknown plugin kind "datasets" \(did you mean "dataset"\?\)/);
});

test('formatError: user errors without stack, others with it', () => {
  const u = new UserErrors([new UserError('a', { where: { file: 'r.yaml', line: 2, col: 3, yamlPath: 'x' } }), new UserError('b')]);
  assert.equal(formatError(u), '2 problems:\nerror: r.yaml:2:3 x: a\nerror: b');
  assert.match(formatError(u, true), /error: b\nUserError: a\n\s+at /);
  assert.match(formatError(new TypeError('boom')), /^internal error \(a bug; please report it with this output\): TypeError: boom\n\s+at /);
});

test('a folder where a recipe belongs (issue 20, item 7): one line naming what it is and what to run, exit 1, no stack', async () => {
  const { mkdtempSync, mkdirSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const root = mkdtempSync(join(tmpdir(), 'vlm-cli-dir-'));
  const run = join(root, 'shapes-tiny-20261207-000000');
  mkdirSync(run);
  writeFileSync(join(run, 'run.json'), '{}');
  writeFileSync(join(run, 'recipe.yaml'), 'name: x\n');
  const plain = join(root, 'some-folder');
  mkdirSync(plain);
  writeFileSync(join(plain, 'a.yaml'), 'name: a\n');
  for (const cmd of ['run', 'validate', 'inspect']) {
    const r = await vlm(cmd, run);
    assert.equal(r.code, 1, cmd);
    assert.doesNotMatch(r.err, /internal error|EISDIR|    at /, cmd);
    assert.match(r.err, /is a run directory, not a recipe file\n  -> to continue that run: vlm run --resume .*; to start a new run from its recipe: vlm run .*recipe\.yaml/, cmd);
  }
  const v = await vlm('validate', plain);
  assert.equal(v.code, 1);
  assert.match(v.err, /some-folder is a folder, not a recipe file\n  -> recipes there: .*a\.yaml/);
});
