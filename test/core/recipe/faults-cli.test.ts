// Fault injection, recipes: every broken recipe is refused by `vlm run` (the real CLI, a child
// process) before anything heavy starts: exit 1, the file (and line:col / YAML path where there is
// one) and what to do, no stack trace (unless --debug), no run directory created, and the user's
// files untouched. broken.test.ts checks the exact messages of `vlm validate` in-process; this file
// checks the same families end to end through `vlm run`, plus the hostile inputs (alias bombs,
// deep nesting, a 10 MB recipe) that must fail fast instead of hanging or crashing.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import { assertUnchanged, assertUserError, hasStack, pool, snapshot, tinyRecipe, vlm, workspace, type CliResult } from '../../helpers/cli-faults.ts';

const OK = stringify(tinyRecipe());
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const run = pool(3);

/**
 * Write `files` into a fresh workspace, run `vlm run <args>`, check the common promises. Every case
 * is started when this file loads (three at a time); each test awaits its own result.
 */
function refused(files: Record<string, string>, args: string[]): Promise<CliResult> {
  const p = run(() => refusedNow(files, args));
  p.catch(() => undefined); // awaited (and reported) by its test
  return p;
}

async function refusedNow(files: Record<string, string>, args: string[]): Promise<CliResult> {
  const cwd = workspace();
  for (const [name, text] of Object.entries(files)) writeFileSync(join(cwd, name), text);
  const before = snapshot(cwd);
  const r = await vlm(['run', ...args], { cwd });
  assert.ok(!existsSync(join(cwd, 'runs')), 'a refused recipe created no run directory');
  assertUnchanged(before, snapshot(cwd));
  return r;
}

// every case starts when this file loads (three children at a time); each test awaits its own
const bomb = (() => {
  let text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
  for (let i = 0; i < 9; i++) {
    const n = String.fromCharCode(98 + i);
    const p = String.fromCharCode(97 + i);
    text += `${n}: &${n} [${Array(9).fill('*' + p).join(',')}]\n`;
  }
  return text + 'name: bomb\n';
})();
let deepBlock = 'name: deep\nmodel:\n';
for (let i = 0; i < 200; i++) deepBlock += '  '.repeat(i + 1) + `k${i}:\n`;
deepBlock += '  '.repeat(201) + 'v: 1\n';
const throwing = 'throw new Error("this plugin is broken on purpose");\nexport default [];\n';
const ESM = '{"type": "module"}\n';

const C = {
  invalidYaml: refused({ 'r.yaml': OK.replace('name: faults', 'name: faults\nmodel: {vision: [}') }, ['r.yaml']),
  bomb: refused({ 'bomb.yaml': bomb }, ['bomb.yaml']),
  deepFlow: refused({ 'flow.yaml': `name: deep\nmodel: ${'['.repeat(5000)}${']'.repeat(5000)}\n` }, ['flow.yaml']),
  deepBlock: refused({ 'block.yaml': deepBlock }, ['block.yaml']),
  big: refused({ 'big.yaml': OK + '# ' + 'x'.repeat(10 * 1024 * 1024) + '\n' }, ['big.yaml']),
  wrongTypes: refused({ 'r.yaml': OK.replace('batch_size: 2', 'batch_size: two').replace('hidden_dim: 32', 'hidden_dim: "32"') }, ['r.yaml']),
  unknownKey: refused({ 'r.yaml': OK.replace('batch_size: 2', 'batch_size: 2\n  bach_size: 3') }, ['r.yaml']),
  unknownPlugin: refused({ 'r.yaml': OK.replace('use: siglip-vit', 'use: siglip-vitt') }, ['r.yaml']),
  throws: refused({ 'r.yaml': 'plugins: [ ./broken.ts ]\n' + OK, 'broken.ts': throwing, 'package.json': ESM }, ['r.yaml']),
  throwsDebug: refused({ 'r.yaml': 'plugins: [ ./broken.ts ]\n' + OK, 'broken.ts': throwing, 'package.json': ESM }, ['r.yaml', '--debug']),
  cjsFolder: refused({ 'r.yaml': 'plugins: [ ./mine.ts ]\n' + OK, 'mine.ts': 'export default [];\n' }, ['r.yaml']),
  circular: refused({ 'a.yaml': 'extends: b.yaml\nname: a\n', 'b.yaml': 'extends: a.yaml\nname: b\n' }, ['a.yaml']),
  overrideKey: refused({ 'r.yaml': OK }, ['r.yaml', 'train.nope.deep=3']),
  overrideIndex: refused({ 'r.yaml': OK }, ['r.yaml', 'data.train[5].count=3']),
  missing: refused({}, ['missing.yaml']),
  notMapping: refused({ 'list.yaml': '- a\n- b\n' }, ['list.yaml']),
  outDirFile: refused({ 'r.yaml': OK, 'notes.txt': 'my notes\n' }, ['r.yaml', 'runtime.out_dir=notes.txt']),
};

describe('broken recipes through vlm run', () => {
  it('invalid YAML: file:line:col', async () => {
    assertUserError(await C.invalidYaml, /^error: r\.yaml:2:\d+: invalid YAML: /m);
  });

  it('alias bomb (billion laughs): refused, naming the file and what to do', async () => {
    assertUserError(await C.bomb, /^error: bomb\.yaml: invalid YAML: Excessive alias count/m, /-> YAML aliases are limited/);
  });

  it('deep nesting: 5000 nested flow lists and 200 nested block maps are refused, not a crash', async () => {
    assertUserError(await C.deepFlow, /^error: flow\.yaml: recipe is nested too deeply to parse/m, /-> /);
    assertUserError(await C.deepBlock, /^error: block\.yaml: recipe is nested more than \d+ levels deep/m, /-> /);
  });

  it('a 10 MB recipe is refused by its size without being parsed', async () => {
    assertUserError(await C.big, /^error: big\.yaml: recipe is 10\d{6} bytes, more than the \d+-byte limit/m, /-> /);
  });

  it('wrong types: every problem at once, each with line:col and YAML path', async () => {
    assertUserError(await C.wrongTypes, /error: r\.yaml:\d+:\d+ train\.batch_size: must be integer, got string "two"/, /error: r\.yaml:\d+:\d+ model\.vision\.hidden_dim: must be integer/);
  });

  it('unknown key: points at the key, with did you mean', async () => {
    assertUserError(await C.unknownKey, /error: r\.yaml:\d+:\d+ train\.bach_size: unknown option "bach_size" \(did you mean "batch_size"\?\) \(plugin train\)/);
  });

  it('unknown plugin: did you mean, and which plugins exist', async () => {
    assertUserError(await C.unknownPlugin, /error: r\.yaml:\d+:\d+ model\.vision\.use: unknown vision plugin "siglip-vitt" \(did you mean "siglip-vit"\?\)/, /-> vision plugins: .*siglip-vit/);
  });

  it('a plugin module that throws on import: module, recipe line, hint; --debug adds the stack', async () => {
    assertUserError(await C.throws, /error: r\.yaml:1:\d+ plugins\[0\]: plugin module \.\/broken\.ts failed to load: this plugin is broken on purpose/, /-> .*--debug/);
    const d = await C.throwsDebug;
    assert.equal(d.code, 1);
    assert.ok(hasStack(d.stderr), `--debug shows the stack trace:\n${d.stderr}`);
    assert.match(d.stderr, /this plugin is broken on purpose/);
  });

  it('a TypeScript plugin in a CommonJS folder (no "type": "module") loads: one that exports nothing is named', async () => {
    assertUserError(await C.cjsFolder, /plugins\[0\]: plugin module \.\/mine\.ts exports no plugin/, /-> export default definePlugin/);
  });

  it('a TypeScript plugin (types, import/export) in a CommonJS folder loads and its plugin is used', async () => {
    const cwd = workspace();
    const plugin = [
      `import { definePlugin } from ${JSON.stringify(join(ROOT, 'core', 'plugin.ts'))};`,
      "export default definePlugin({ kind: 'schedule', name: 'my-flat', description: 'constant lr', options: { type: 'object', additionalProperties: false, properties: {} } as const,",
      '  create() { return { lr: (_step: number, base: number): number => base }; } });',
    ].join('\n');
    writeFileSync(join(cwd, 'mine.ts'), plugin + '\n');
    const recipe = 'plugins: [ ./mine.ts ]\n' + OK.replace('use: constant', 'use: my-flat');
    assert.match(recipe, /use: my-flat/);
    writeFileSync(join(cwd, 'r.yaml'), recipe);
    const r = await vlm(['validate', 'r.yaml'], { cwd });
    assert.equal(r.code, 0, r.all);
    assert.match(r.all, /r\.yaml: ok/);
  });

  it('circular extends: the chain', async () => {
    assertUserError(await C.circular, /circular extends: a\.yaml -> b\.yaml -> a\.yaml/);
  });

  it('overrides of missing paths: the override, the path and what exists', async () => {
    assertUserError(await C.overrideKey, /override train\.nope\.deep=3: .*unknown key "nope"/);
    assertUserError(await C.overrideIndex, /override data\.train\[5\]\.count=3: data\.train has no entry \[5\] \(it has 1\)/);
  });

  it('a recipe that does not exist, and one that is not a mapping', async () => {
    assertUserError(await C.missing, /recipe not found: .*missing\.yaml/, /-> check the path/);
    assertUserError(await C.notMapping, /list\.yaml:1:1: a recipe must be a YAML mapping/);
  });

  it('runtime.out_dir naming a file: the YAML path and what to do (the file untouched)', async () => {
    assertUserError(await C.outDirFile, /error: runtime\.out_dir: cannot create the run directory \S*notes\.txt\/faults-\d{8}-\d{6} \(ENOTDIR\)/, /-> runtime\.out_dir names a file; point it at a folder/);
  });
});
