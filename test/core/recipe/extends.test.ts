// Swapping a component through `extends` (issue 20, item 1): a plugin entry whose `use` changes
// starts from the new plugin's defaults (the parent's options are not carried over), and
// `key: !unset` in YAML / `~key` on the command line deletes an inherited key.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { UserErrors } from '../../../core/errors.ts';
import { deepMerge } from '../../../core/recipe/extends.ts';
import { resolveRecipe } from '../../../core/recipe/index.ts';
import { isOverride } from '../../../core/recipe/overrides.ts';
import { Registry } from '../../../core/registry.ts';
import builtins from '../../../plugins/index.ts';

const SHAPES = resolve('recipes/shapes-tiny.yaml');
const CONV = resolve('examples/custom-backbone/conv-encoder.ts');

function recipeDir(files: Record<string, string>): string {
  const d = mkdtempSync(join(tmpdir(), 'vlm-extends-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text);
  return d;
}

test('extends: another `use` in a plugin entry starts from that plugin\'s defaults (the default recipe, a custom backbone)', async () => {
  const d = recipeDir({
    'child.yaml': `extends: ${SHAPES}\nplugins: [ ${CONV} ]\nmodel:\n  vision: { use: conv-encoder, image_size: 32, channels: [32, 64], hidden_dim: 64 }\n  projector: { use: pixel-shuffle, factor: 2 }\n`,
  });
  const r = await resolveRecipe(join(d, 'child.yaml'), { registry: new Registry(builtins) });
  const v = r.data.model.vision;
  assert.equal(v.use, 'conv-encoder');
  assert.deepEqual(v.channels, [32, 64]);
  for (const k of ['inter_dim', 'n_heads', 'n_blocks', 'patch_size']) assert.equal(k in v, false, `${k} carried over from siglip-vit`);
  // the same plugin keeps merging key by key
  assert.equal(r.data.model.projector.factor, 2);
  assert.equal(r.data.model.decoder.hidden_dim, 128);
});

test('extends: `key: !unset` deletes an inherited key, whose default then applies', async () => {
  const d = recipeDir({
    'child.yaml': `extends: ${SHAPES}\nmodel:\n  vision: { inter_dim: !unset }\ntrain: { checkpoint_every: !unset, max_steps: 10 }\n`,
  });
  const r = await resolveRecipe(join(d, 'child.yaml'), { registry: new Registry(builtins) });
  assert.equal(r.data.model.vision.hidden_dim, 64);
  assert.equal(r.data.model.vision.inter_dim, builtins.find((p) => p.name === 'siglip-vit')!.options.properties!.inter_dim.default);
  assert.notEqual(r.data.model.vision.inter_dim, 128);
  assert.equal(r.data.train.checkpoint_every, null); // the schema default
  assert.equal(r.data.train.max_steps, 10);
});

test('overrides: `~key` deletes a key; `use=<other plugin>` drops the old plugin\'s options', async () => {
  assert.equal(isOverride('~model.vision.inter_dim'), true);
  const reg = new Registry(builtins);
  const r = await resolveRecipe(SHAPES, { registry: reg, overrides: ['~model.vision.inter_dim', '~train.checkpoint_every'] });
  assert.notEqual(r.data.model.vision.inter_dim, 128);
  assert.equal(r.data.train.checkpoint_every, null);

  const d = recipeDir({ 'r.yaml': `extends: ${SHAPES}\nplugins: [ ${CONV} ]\n` });
  const s = await resolveRecipe(join(d, 'r.yaml'), {
    registry: new Registry(builtins),
    overrides: ['model.vision.use=conv-encoder', 'model.vision.channels=[16]', 'model.vision.hidden_dim=64'],
  });
  assert.deepEqual(Object.keys(s.data.model.vision).sort(), ['channels', 'hidden_dim', 'image_size', 'ln_eps', 'use'].sort());
  assert.deepEqual(s.data.model.vision.channels, [16]);

  // deleting what is not set is an error naming the override
  await assert.rejects(resolveRecipe(SHAPES, { registry: new Registry(builtins), overrides: ['~train.warmup'] }), (e: unknown) => {
    assert.ok(e instanceof UserErrors);
    assert.match(e.message, /override ~train\.warmup/);
    return true;
  });
});

test('deepMerge: the rules on their own', () => {
  assert.deepEqual(deepMerge({ a: { use: 'x', p: 1, q: 2 } }, { a: { q: 3 } }), { a: { use: 'x', p: 1, q: 3 } });
  assert.deepEqual(deepMerge({ a: { use: 'x', p: 1 } }, { a: { use: 'y', r: 1 } }), { a: { use: 'y', r: 1 } });
  assert.deepEqual(deepMerge({ l: [1, 2] }, { l: [3] }), { l: [3] });
});
