// core/build.ts: components in order (image processor sized from the vision encoder), datasets by
// role, and model.from: weights from a checkpoint folder, with or without components in the recipe.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildComponents, buildDatasets } from '../../core/build.ts';
import { resolveRecipe } from '../../core/recipe/index.ts';
import { Registry } from '../../core/registry.ts';
import { saveCheckpoint } from '../../core/weights/model-folder.ts';
import builtins from '../../plugins/index.ts';
import { useTestBackend } from '../helpers/backend.ts';

const quiet = { info() {}, warn() {}, debug() {} };
const MODEL = `model:
  vision: { use: siglip-vit, hidden_dim: 16, inter_dim: 32, patch_size: 8, image_size: 16, n_heads: 2, n_blocks: 1 }
  projector: { use: pixel-shuffle, factor: 2 }
  decoder: { use: llama, hidden_dim: 16, inter_dim: 32, n_heads: 2, n_kv_heads: 1, n_blocks: 1, vocab_size: 260, max_length: 16 }
  tokenizer: { use: bytes }
  image_processor: { use: resize }
`;

async function resolve(text: string, dir = mkdtempSync(join(tmpdir(), 'vlm-build-'))) {
  writeFileSync(join(dir, 'r.yaml'), text);
  const registry = new Registry(builtins);
  const r = await resolveRecipe(join(dir, 'r.yaml'), { registry });
  return { r, registry, ctx: { recipe: r.data, recipeDir: r.dir, seed: 1, log: quiet } };
}

test('components: image processor sized from the vision encoder; datasets by role', async () => {
  await useTestBackend();
  const { r, registry, ctx } = await resolve(
    `name: b\n${MODEL}data:\n  train: [ { use: synthetic-shapes, split: train, count: 8 } ]\n  eval: [ { use: synthetic-shapes, split: test, count: 4 }, { use: synthetic-shapes, split: val, count: 4 } ]\nstages: [load]\n`,
  );
  const { model, tokenizer, imageProcessor } = await buildComponents(r.data, registry, ctx);
  try {
    assert.equal(imageProcessor.size, 16);
    assert.equal(model.imageSize, 16);
    assert.equal(tokenizer.vocabSize <= 260, true);
    assert.equal(model.numImageTokens, 1); // (16/8)^2 = 4 tokens, pixel shuffle 2 -> 1
    const ds = await buildDatasets(r.data, registry, ctx);
    assert.deepEqual([ds.train.length, ds.val.length, ds.eval.length], [1, 0, 2]);
    assert.equal(await ds.eval[0].size(), 4);
  } finally {
    model.dispose();
  }
});

test('model.from: weights from a checkpoint folder (with components, and from the checkpoint alone)', async () => {
  await useTestBackend();
  const first = await resolve(`name: a\n${MODEL}stages: [load]\n`);
  const a = await buildComponents(first.r.data, first.registry, first.ctx);
  const dir = mkdtempSync(join(tmpdir(), 'vlm-build-from-'));
  await saveCheckpoint(a.model, join(dir, 'ckpt'), { model: first.r.data.model });
  const want = await a.model.params.get('MP.proj.weight')!.data();

  // same components, another seed, weights from the folder (relative to the recipe)
  const second = await resolve(`name: b\n${MODEL.replace('model:\n', 'model:\n  from: ./ckpt\n')}runtime: { seed: 7 }\nstages: [load]\n`, dir);
  const b = await buildComponents(second.r.data, second.registry, { ...second.ctx, seed: 7 });
  // no components: the checkpoint's sidecar names them
  const third = await resolve(`name: c\nmodel:\n  from: ./ckpt\n  tokenizer: { use: bytes }\n  image_processor: { use: resize }\nstages: [load]\n`, dir);
  const c = await buildComponents(third.r.data, third.registry, third.ctx);
  try {
    assert.deepEqual(await b.model.params.get('MP.proj.weight')!.data(), want);
    assert.deepEqual(await c.model.params.get('MP.proj.weight')!.data(), want);
    assert.equal(c.imageProcessor.size, 16);
  } finally {
    for (const m of [a.model, b.model, c.model]) m.dispose();
  }
});

test("model.from with backbones that name a Hub `from:`: the backbones' sources are never resolved (offline, nothing downloaded), shapes from config.json", async () => {
  await useTestBackend();
  const first = await resolve(`name: a\n${MODEL}stages: [load]\n`);
  const a = await buildComponents(first.r.data, first.registry, first.ctx);
  const dir = mkdtempSync(join(tmpdir(), 'vlm-build-from-hub-'));
  await saveCheckpoint(a.model, join(dir, 'ckpt'), { model: first.r.data.model });
  const want = await a.model.params.get('decoder.blocks.0.attn.q_proj.weight')!.data();
  // backbones as a recipe that started from Hub backbones writes them: `from:` repo ids, no shapes
  // (they came from the backbones' config.json); such repos do not exist and the Hub is off
  const recipe = `name: b
model:
  from: ./ckpt
  vision: { use: siglip-vit, from: nobody/no-such-siglip }
  projector: { use: pixel-shuffle, factor: 2 }
  decoder: { use: llama, from: nobody/no-such-llama, vocab_size: 260, max_length: 16 }
  tokenizer: { use: bytes }
  image_processor: { use: resize }
stages: [load]
`;
  const saved = { ...process.env };
  process.env.HF_HUB_OFFLINE = '1';
  process.env.HF_ENDPOINT = 'http://127.0.0.1:9'; // nothing listens: any request would fail
  try {
    const second = await resolve(recipe, dir);
    const b = await buildComponents(second.r.data, second.registry, second.ctx);
    try {
      assert.equal(b.model.vision.hiddenDim, 16); // from the checkpoint's config.json, not the (absent) Hub config
      assert.deepEqual(await b.model.params.get('decoder.blocks.0.attn.q_proj.weight')!.data(), want);
    } finally {
      b.model.dispose();
    }
  } finally {
    process.env = saved;
    a.model.dispose();
  }
});
