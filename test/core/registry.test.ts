// The registry: named bindings per kind, option validation with defaults, errors wrapped with the
// plugin's name and recipe position, user plugin modules (TypeScript too), name clashes.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { UserError, UserErrors } from '../../core/errors.ts';
import { definePlugin } from '../../core/plugin.ts';
import { isModulePath, Registry } from '../../core/registry.ts';
import type { PluginContext, Tokenizer } from '../../core/types.ts';

const PLUGIN_TS = resolve('core/plugin.ts');

const tok = definePlugin({
  kind: 'tokenizer',
  name: 'bytes',
  description: 'test tokenizer',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: { vocab: { type: 'integer', default: 259, description: 'size' }, lower: { type: 'boolean' } },
  } as const,
  create(options): Tokenizer {
    if (options.vocab === 13) throw new Error('13 is unlucky');
    if (options.vocab === 14) throw new UserError('14 is not allowed', { hint: 'use 15' });
    return { vocabSize: options.vocab, eosTokenId: 0, padTokenId: 0, encode: () => [], decode: () => '', files: () => ({}) };
  },
});

const ctx: Omit<PluginContext, 'registry'> = {
  recipe: {},
  recipeDir: process.cwd(),
  yamlPath: 'model.tokenizer',
  seed: 0,
  log: { info() {}, warn() {}, debug() {} },
};

test('named bindings per kind; create fills defaults and passes the registry', async () => {
  const r = new Registry([tok]);
  assert.ok(r.has('tokenizer', 'bytes'));
  assert.ok(!r.has('tokenizer', 'hf'));
  assert.ok(!r.has('vision', 'bytes'));
  assert.equal(r.get('tokenizer', 'bytes'), tok);
  const t = await r.create('tokenizer', { use: 'bytes' }, ctx);
  assert.equal(t.vocabSize, 259);
  assert.deepEqual(r.names('tokenizer'), ['bytes']);
  assert.equal(r.source('tokenizer', 'bytes'), 'built-in');
});

test('create: bad options are UserErrors naming the option; unknown plugin suggests', async () => {
  const r = new Registry([tok]);
  await assert.rejects(r.create('tokenizer', { use: 'bytes', vocab: 'x', lowr: true }, ctx), (e: unknown) => {
    assert.ok(e instanceof UserErrors);
    assert.deepEqual(
      e.errors.map((x) => x.format()),
      ['model.tokenizer.lowr: unknown option "lowr" (did you mean "lower"?) (plugin bytes)', 'model.tokenizer.vocab: must be integer, got string "x" (plugin bytes)'],
    );
    return true;
  });
  await assert.rejects(r.create('tokenizer', { use: 'byte' }, ctx), /unknown tokenizer plugin "byte" \(did you mean "bytes"\?\)/);
});

test('errors thrown by a plugin are wrapped with its name and the recipe path', async () => {
  const r = new Registry([tok]);
  await assert.rejects(r.create('tokenizer', { use: 'bytes', vocab: 13 }, ctx), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.equal(e.format(), 'model.tokenizer: tokenizer plugin "bytes" failed: 13 is unlucky\n  -> run with --debug for the stack trace');
    assert.match(String((e.cause as Error).stack), /registry\.test\.ts/);
    return true;
  });
  await assert.rejects(r.create('tokenizer', { use: 'bytes', vocab: 14 }, ctx), (e: unknown) => {
    assert.equal((e as UserError).format(), 'model.tokenizer: tokenizer plugin "bytes": 14 is not allowed\n  -> use 15');
    return true;
  });
});

test('recipe positions travel with each create: two recipes resolved in one process each point into their own file', async () => {
  const { loadRecipeFile } = await import('../../core/recipe/load.ts');
  const r = new Registry([tok]);
  const dir = mkdtempSync(join(tmpdir(), 'vlm-positions-'));
  // the same entry at different lines of two files
  writeFileSync(join(dir, 'a.yaml'), 'name: a\nmodel:\n  tokenizer: { use: bytes, vocab: 13 }\n');
  writeFileSync(join(dir, 'b.yaml'), 'name: b\n\n\n\nmodel:\n  tokenizer: { use: bytes, vocab: 13 }\n');
  const a = loadRecipeFile(join(dir, 'a.yaml'));
  const b = loadRecipeFile(join(dir, 'b.yaml')); // read after a, as `vlm bench a.yaml b.yaml` resolves both first
  const where = async (rec: typeof a) => {
    try {
      await r.create('tokenizer', (rec.data as any).model.tokenizer, { ...ctx, positions: rec.positions });
    } catch (e) {
      return (e as UserError).where;
    }
    assert.fail('create should fail');
  };
  const wa = await where(a);
  assert.equal(wa.file, join(dir, 'a.yaml'));
  assert.equal(wa.line, 3);
  const wb = await where(b);
  assert.equal(wb.file, join(dir, 'b.yaml'));
  assert.equal(wb.line, 6);
  // without positions: the YAML path only
  await assert.rejects(r.create('tokenizer', { use: 'bytes', vocab: 13 }, ctx), (e: unknown) => (e as UserError).where.file === undefined && (e as UserError).where.yamlPath === 'model.tokenizer');
});

test('a name clash with a built-in is an error unless the plugin says replaces', () => {
  const r = new Registry([tok]);
  const clash = { ...tok, description: 'another' };
  assert.throws(() => r.register(clash, '/x/my.ts'), /tokenizer plugin "bytes" from \/x\/my.ts clashes with the built-in plugin of that name/);
  const replacing = { ...tok, description: 'mine', replaces: 'bytes' };
  r.register(replacing, '/x/my.ts');
  assert.equal(r.get('tokenizer', 'bytes').description, 'mine');
  assert.equal(r.source('tokenizer', 'bytes'), '/x/my.ts');
  assert.throws(() => r.register({ ...tok, name: 'b2', replaces: 'nope' }, '/x/my.ts'), /replaces "nope", which is not registered/);
});

test('user plugin modules: TypeScript, default or named exports, arrays', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vlm-reg-'));
  const body = (name: string) =>
    `definePlugin({ kind: 'dataset', name: '${name}', description: 'd', options: { type: 'object', properties: {} } as const, create: () => ({ name: '${name}', size: async () => 0, async *samples() {} }) })`;
  writeFileSync(join(dir, 'one.ts'), `import { definePlugin } from '${PLUGIN_TS}';\nconst n: string = 'x';\nexport default ${body('one')};\n`);
  writeFileSync(join(dir, 'many.ts'), `import { definePlugin } from '${PLUGIN_TS}';\nexport const plugins = [${body('two')}, ${body('three')}];\n`);
  writeFileSync(join(dir, 'none.js'), 'export const x = 1;\n');
  const r = new Registry([]);
  await r.loadModules([
    { spec: './one.ts', baseDir: dir, where: {} },
    { spec: './many.ts', baseDir: dir, where: {} },
  ]);
  assert.deepEqual(r.names('dataset').sort(), ['one', 'three', 'two']);
  assert.equal(r.source('dataset', 'one'), join(dir, 'one.ts'));
  await assert.rejects(r.loadModules([{ spec: './none.js', baseDir: dir, where: { file: 'r.yaml', line: 3, col: 5 } }]), (e: unknown) => {
    assert.equal((e as UserError).format().split('\n')[0], 'r.yaml:3:5: plugin module ./none.js exports no plugin');
    return true;
  });
  await assert.rejects(r.loadModules([{ spec: './missing.ts', baseDir: dir, where: {} }]), /plugin module not found: .*missing\.ts/);
  await assert.rejects(r.loadModules([{ spec: 'vlm-no-such-package', baseDir: dir, where: {} }]), /plugin package "vlm-no-such-package" is not installed/);
  // an npm package name resolves like an import from the recipe's folder (here: an installed package that is no plugin)
  await assert.rejects(r.loadModules([{ spec: 'yaml', baseDir: process.cwd(), where: {} }]), /plugin module yaml exports no plugin/);
  // loading the same module again is harmless
  await r.loadModules([{ spec: './one.ts', baseDir: dir, where: {} }]);
});

test('a plugins: entry ending in .ts/.js is a path even without ./ (issue 20, item 5); the hints say which is which', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vlm-reg-'));
  mkdirSync(join(dir, 'plugins'));
  const body = `definePlugin({ kind: 'dataset', name: 'nodot', description: 'd', options: { type: 'object', properties: {} } as const, create: () => ({ name: 'nodot', size: async () => 0, async *samples() {} }) })`;
  writeFileSync(join(dir, 'plugins', 'nodot.ts'), `import { definePlugin } from '${PLUGIN_TS}';\nexport default ${body};\n`);
  writeFileSync(join(dir, 'flat.ts'), `import { definePlugin } from '${PLUGIN_TS}';\nexport default ${body.replace(/nodot/g, 'flat')};\n`);
  const r = new Registry([]);
  await r.loadModules([
    { spec: 'plugins/nodot.ts', baseDir: dir, where: {} },
    { spec: 'flat.ts', baseDir: dir, where: {} },
  ]);
  assert.deepEqual(r.names('dataset').sort(), ['flat', 'nodot']);
  assert.equal(r.source('dataset', 'nodot'), join(dir, 'plugins', 'nodot.ts'));
  await assert.rejects(r.loadModules([{ spec: 'plugins/missing.ts', baseDir: dir, where: {} }]), (e: unknown) => {
    assert.match((e as UserError).message, /plugin module not found: .*plugins[/\\]missing\.ts/);
    assert.match((e as UserError).hint ?? '', /is a file path, relative to the recipe file/);
    return true;
  });
  await assert.rejects(r.loadModules([{ spec: 'vlm-no-such-package', baseDir: dir, where: {} }]), (e: unknown) => {
    assert.match((e as UserError).hint ?? '', /npm install vlm-no-such-package; or, for a file, write a path: \.\/vlm-no-such-package/);
    return true;
  });
  assert.equal(isModulePath('chart.js', dir), false); // a package whose name ends in .js
  assert.equal(isModulePath('@scope/x.js', dir), false);
});
