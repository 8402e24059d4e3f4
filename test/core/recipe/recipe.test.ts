// Recipe loading: positions, extends (deep merge, lists replaced), overrides typed through the
// schema, defaults from the schemas, size and nesting caps, did-you-mean.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { UserErrors } from '../../../core/errors.ts';
import { closest, levenshtein } from '../../../core/recipe/did-you-mean.ts';
import { resolveRecipe } from '../../../core/recipe/index.ts';
import { MAX_RECIPE_BYTES, parseRecipeText } from '../../../core/recipe/load.ts';
import { parseOverride } from '../../../core/recipe/overrides.ts';
import { formatPath, parsePath } from '../../../core/recipe/positions.ts';
import { Registry } from '../../../core/registry.ts';
import { fixturePlugins } from './fixture-plugins.ts';

function dir(files: Record<string, string>): string {
  const d = mkdtempSync(join(tmpdir(), 'vlm-recipe-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text);
  return d;
}

const BASE = `name: base
runtime: { seed: 3, out_dir: out }
model:
  vision: { use: siglip-vit, hidden_dim: 32, image_size: 64 }
  projector: { use: pixel-shuffle }
  decoder: { use: llama, vocab_size: 300 }
  tokenizer: { use: bytes }
  image_processor: { use: resize }
data:
  train: [ { use: synthetic-shapes, count: 10 }, { use: synthetic-shapes, count: 20 } ]
optimizer: { use: adamw }
schedule: { use: cosine-warmup }
`;

test('paths: parse and format', () => {
  assert.deepEqual(parsePath('data.train[0].limit'), ['data', 'train', 0, 'limit']);
  assert.equal(formatPath(['data', 'train', 0, 'limit']), 'data.train[0].limit');
  assert.equal(parsePath('a..b'), undefined);
  assert.equal(parsePath('a.'), undefined);
  assert.equal(parsePath('[0]'), undefined);
  assert.deepEqual(parseOverride('data.train[1].count=5').path, ['data', 'train', 1, 'count']);
  assert.throws(() => parseOverride('=5'), /bad override "=5"/);
});

test('did you mean: edit distance, truncated names', () => {
  assert.equal(levenshtein('kitten', 'sitting'), 3);
  assert.equal(closest('bach_size', ['batch_size', 'epochs']), 'batch_size');
  assert.equal(closest('hidden', ['hidden_dim', 'n_heads']), 'hidden_dim');
  assert.equal(closest('zzzzzz', ['batch_size', 'epochs']), undefined);
});

test('extends: deep merge, the extending file wins, lists replaced; defaults filled', async () => {
  const d = dir({
    'base.yaml': BASE,
    'child.yaml': `name: child\nextends: base.yaml\nmodel:\n  vision: { hidden_dim: 48 }\ndata:\n  train: [ { use: synthetic-shapes, count: 5 } ]\nstages: [load, train]\n`,
  });
  const r = await resolveRecipe(join(d, 'child.yaml'), { registry: new Registry(fixturePlugins) });
  assert.equal(r.data.name, 'child');
  assert.equal(r.data.extends, undefined);
  assert.deepEqual(r.data.model.vision, { use: 'siglip-vit', hidden_dim: 48, image_size: 64 });
  assert.deepEqual(r.data.data.train, [{ use: 'synthetic-shapes', count: 5, split: 'train', limit: null }]);
  assert.equal(r.data.runtime.seed, 3);
  assert.equal(r.data.runtime.backend, 'auto'); // schema default
  assert.equal(r.data.train.batch_size, 8);
  assert.deepEqual(r.data.data.val, []);
  assert.deepEqual(r.chain, [join(d, 'child.yaml'), join(d, 'base.yaml')]);
  // positions: the child's own values point at the child, inherited ones at the base
  assert.equal(r.positions.lookup('model.vision.hidden_dim').line, 4);
  assert.match(r.positions.lookup('model.vision.hidden_dim').file!, /child\.yaml$/);
  assert.match(r.positions.lookup('model.decoder.vocab_size').file!, /base\.yaml$/);
  assert.equal(r.positions.lookup('model.decoder.vocab_size').line, 6);
  // the base's second list item is gone with the list it was in
  assert.match(r.positions.lookup('data.train[1].count').file!, /child\.yaml$/);
});

test('overrides are typed through the schema, plugin options included', async () => {
  const d = dir({ 'r.yaml': BASE });
  const r = await resolveRecipe(join(d, 'r.yaml'), {
    registry: new Registry(fixturePlugins),
    overrides: ['train.batch_size="16"', 'data.train[1].count=7', 'name=123', 'runtime.threads=null', 'train.max_grad_norm=0.5', 'model.vision.use=siglip-vit', 'stages=[load]'],
  });
  assert.equal(r.data.train.batch_size, 16);
  assert.equal(r.data.data.train[1].count, 7);
  assert.equal(r.data.name, '123');
  assert.equal(r.data.runtime.threads, null);
  assert.equal(r.data.train.max_grad_norm, 0.5);
  assert.deepEqual(r.data.stages, ['load']);
  assert.deepEqual(r.positions.lookup('train.batch_size'), { file: 'override train.batch_size="16"', yamlPath: 'train.batch_size' });
});

test('an override can set a section the recipe does not have', async () => {
  const d = dir({ 'r.yaml': BASE });
  const r = await resolveRecipe(join(d, 'r.yaml'), { registry: new Registry(fixturePlugins), overrides: ['eval.max_samples=5', 'publish.private=true'] });
  assert.equal(r.data.eval.max_samples, 5);
  assert.equal(r.data.publish.private, true);
});

test('hostile input: size cap, nesting cap, non-mapping', () => {
  const deep = 'a: ' + '['.repeat(40) + ']'.repeat(40) + '\n';
  assert.throws(() => parseRecipeText(deep, 'deep.yaml'), /nested more than 32 levels/);
  assert.throws(() => parseRecipeText('- a\n- b\n', 'list.yaml'), /must be a YAML mapping/);
  assert.throws(() => parseRecipeText('', 'empty.yaml'), /recipe is empty/);
  const d = dir({ 'big.yaml': 'name: big\n# ' + 'x'.repeat(MAX_RECIPE_BYTES) + '\n' });
  return assert.rejects(resolveRecipe(join(d, 'big.yaml'), { registry: new Registry(fixturePlugins) }), /more than the 1048576-byte limit/);
});

test('duplicate keys and several syntax errors are all reported', async () => {
  const d = dir({ 'dup.yaml': 'name: a\nname: b\nstages: [load\n' });
  await assert.rejects(resolveRecipe(join(d, 'dup.yaml'), { registry: new Registry(fixturePlugins) }), (e: unknown) => {
    assert.ok(e instanceof UserErrors);
    assert.ok(e.errors.length >= 2, e.message);
    assert.match(e.errors[0].format(), /dup\.yaml:2:1: invalid YAML: Map keys must be unique/);
    return true;
  });
});

test('a user plugin listed under plugins: is usable by name, relative to the recipe', async () => {
  const d = dir({
    'r.yaml': BASE.replace('name: base', 'name: mine\nplugins: [./my-tok.ts]').replace('tokenizer: { use: bytes }', 'tokenizer: { use: my-tok, size: 9 }'),
    'my-tok.ts': `import { definePlugin } from '${join(process.cwd(), 'core/plugin.ts')}';
export default definePlugin({ kind: 'tokenizer', name: 'my-tok', description: 'mine',
  options: { type: 'object', additionalProperties: false, properties: { size: { type: 'integer' } } } as const,
  create: () => { throw new Error('not needed'); } });
`,
  });
  const reg = new Registry(fixturePlugins);
  const r = await resolveRecipe(join(d, 'r.yaml'), { registry: reg });
  assert.equal(r.data.model.tokenizer.use, 'my-tok');
  assert.equal(reg.source('tokenizer', 'my-tok'), join(d, 'my-tok.ts'));
  await assert.rejects(resolveRecipe(join(d, 'r.yaml'), { registry: new Registry(fixturePlugins), overrides: ['model.tokenizer.sise=3'] }), /did you mean "size"/);
});
