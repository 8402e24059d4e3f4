// Sharded checkpoints (model.safetensors.index.json + model-0000k-of-0000n.safetensors, as
// save_pretrained writes large models; core/weights/model-weights.ts): a checkpoint split into shards
// here (the same tensors, by name) loads exactly as the single file does, for a nanoVLM model folder
// (loadCheckpoint, `vlm compare`), a Hub SigLIP2 backbone (`from:` a folder and a Hub repo) and a
// Hub model repo; a missing shard or a shard without the tensors the index gives it is a clear error.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { compareFixture, errors, formatTable } from '../../../core/commands/compare.ts';
import { UserError } from '../../../core/errors.ts';
import { resolveModelFolder } from '../../../core/load-model.ts';
import { loadCheckpoint } from '../../../core/weights/model-folder.ts';
import { hasModelWeights, isWeightsFile, openModelWeights, WEIGHTS_INDEX_FILE } from '../../../core/weights/model-weights.ts';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../../../core/weights/safetensors.ts';
import { pointAtFakeHub, startFakeHub, type FakeHub } from '../../helpers/fake-hub.ts';
import { setup, silentLog } from '../../helpers/model.ts';

const HEAD = join(import.meta.dirname, '..', 'model', 'fixtures', 'head-tiny');
const SIGLIP2 = join(import.meta.dirname, '..', 'hub', 'fixtures', 'siglip2-tiny');
const tmp = mkdtempSync(join(tmpdir(), 'vlm-sharded-'));
let hub: FakeHub;
let home: string;
const savedEnv = { ...process.env };
before(async () => {
  hub = await startFakeHub();
  home = pointAtFakeHub(hub, 'vlm-sharded-hub-');
});
after(async () => {
  await hub.close();
  process.env = savedEnv;
  rmSync(home, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
});

/** `src`'s model.safetensors split into `n` shards (tensors in name order, dealt out in runs) + the index, in a new folder with `src`'s other files. */
function shard(src: string, dest: string, n: number, others: string[]): string {
  mkdirSync(dest, { recursive: true });
  for (const f of others) copyFileSync(join(src, f), join(dest, f));
  const { tensors, metadata } = readSafetensors(join(src, 'model.safetensors'));
  const names = [...tensors.keys()].sort();
  const per = Math.ceil(names.length / n);
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let k = 0; k < n; k++) {
    const file = `model-${String(k + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
    const part = new Map<string, TensorToWrite>();
    for (const name of names.slice(k * per, (k + 1) * per)) {
      const t = tensors.get(name)!;
      part.set(name, { dtype: t.dtype as 'F32', shape: t.shape, data: t.data });
      weightMap[name] = file;
      total += t.data.length * 4;
    }
    writeSafetensors(join(dest, file), part, metadata);
  }
  writeFileSync(join(dest, WEIGHTS_INDEX_FILE), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  return dest;
}

const dirFiles = (dir: string) =>
  Object.fromEntries(
    ['config.json', 'README.md', 'model.safetensors', WEIGHTS_INDEX_FILE, ...Array.from({ length: 3 }, (_, k) => `model-0000${k + 1}-of-00003.safetensors`)].flatMap((f) => {
      try {
        return [[f, f.endsWith('.json') || f.endsWith('.md') ? readFileSync(join(dir, f), 'utf8') : new Uint8Array(readFileSync(join(dir, f)))]];
      } catch {
        return [];
      }
    }),
  );

test('the Hub file names of a weights layout', () => {
  for (const f of ['model.safetensors', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors']) assert.ok(isWeightsFile(f), f);
  for (const f of ['optimizer.safetensors', 'adapter_model.safetensors', 'sub/model.safetensors', 'pytorch_model.bin']) assert.ok(!isWeightsFile(f), f);
});

test('a nanoVLM HEAD checkpoint in 3 shards loads the same tensors as the single file, and vlm compare passes on it', async () => {
  const registry = await setup();
  const dir = shard(HEAD, join(tmp, 'head-sharded'), 3, ['config.json']);
  assert.ok(hasModelWeights(dir));
  const a = await loadCheckpoint(HEAD, registry, { log: silentLog });
  const b = await loadCheckpoint(dir, registry, { log: silentLog });
  try {
    assert.deepEqual([...b.params.keys()], [...a.params.keys()]);
    for (const [name, v] of a.params) assert.deepEqual(b.params.get(name)!.dataSync(), v.dataSync(), name);
  } finally {
    a.dispose();
    b.dispose();
  }
  const rows = await compareFixture({ model: dir, inputs: join(HEAD, 'inputs.safetensors'), expected: join(HEAD, 'expected.safetensors'), registry });
  const failed = rows.filter((r) => !r.pass);
  assert.equal(failed.length, 0, formatTable(failed));
  assert.ok(rows.length > 100);
});

test('a missing shard, a shard without its tensors, a bad index: clear errors naming the file', async () => {
  const registry = await setup();
  const dir = shard(HEAD, join(tmp, 'head-broken'), 3, ['config.json']);
  rmSync(join(dir, 'model-00002-of-00003.safetensors'));
  await assert.rejects(loadCheckpoint(dir, registry, { log: silentLog }), (e: UserError) => {
    assert.ok(e instanceof UserError);
    assert.match(e.message, /names shard "model-00002-of-00003\.safetensors", not found in/);
    assert.equal(e.where.file, join(dir, 'model-00002-of-00003.safetensors'));
    return true;
  });
  // the index gives a shard a tensor it does not hold
  const index = JSON.parse(readFileSync(join(dir, WEIGHTS_INDEX_FILE), 'utf8'));
  const moved = Object.keys(index.weight_map).find((n) => index.weight_map[n] === 'model-00003-of-00003.safetensors')!;
  for (const n of Object.keys(index.weight_map)) if (index.weight_map[n] === 'model-00002-of-00003.safetensors') index.weight_map[n] = 'model-00001-of-00003.safetensors';
  index.weight_map[moved] = 'model-00001-of-00003.safetensors';
  writeFileSync(join(dir, WEIGHTS_INDEX_FILE), JSON.stringify(index));
  assert.throws(() => openModelWeights(dir, 'x'), (e: UserError) => e instanceof UserError && e.message.includes(`model-00001-of-00003.safetensors: no tensor "`) && /says is there/.test(e.message));
  writeFileSync(join(dir, WEIGHTS_INDEX_FILE), JSON.stringify({ weight_map: { a: '../escape.safetensors' } }));
  assert.throws(() => openModelWeights(dir, 'x'), /is not a shard file name \(".." segment\)/);
  writeFileSync(join(dir, WEIGHTS_INDEX_FILE), '{"metadata": {}}');
  assert.throws(() => openModelWeights(dir, 'x'), /no "weight_map" object/);
  rmSync(join(dir, WEIGHTS_INDEX_FILE));
  assert.ok(!hasModelWeights(dir));
  await assert.rejects(loadCheckpoint(dir, registry, { log: silentLog }), /model\.safetensors not found: a nanoVLM checkpoint folder has model\.safetensors \(or a sharded model\.safetensors\.index\.json with its shards\)/);
});

test('a sharded SigLIP2 backbone (folder, then Hub repo) gives the vision output of the single file', async () => {
  const registry = await setup();
  const dir = shard(SIGLIP2, join(tmp, 'siglip2-sharded'), 3, ['config.json']);
  const exp = readSafetensors(join(SIGLIP2, 'expected.safetensors')).tensors;
  const images = tf.tensor4d(exp.get('images')!.data as Float32Array, exp.get('images')!.shape as [number, number, number, number]);
  const ctx = { recipe: {}, recipeDir: tmp, yamlPath: 'model.vision', seed: 0, log: silentLog };
  hub.addRepo('model', 'google/siglip2-sharded-tiny', { ...dirFiles(dir), 'README.md': 'x' });
  for (const from of [dir, 'google/siglip2-sharded-tiny']) {
    const vit = await registry.create('vision', { use: 'siglip-vit', from }, ctx);
    const out = tf.tidy(() => vit.forward(images));
    const e = errors(out.dataSync() as Float32Array, exp.get('vit_out')!.data as Float32Array);
    assert.ok(e.relL2 <= 1e-5, `${from}: vit_out ${JSON.stringify(e)}`);
    out.dispose();
    vit.dispose();
  }
  images.dispose();
  const fetched = new Set(hub.requests.filter((r) => r.path.includes('/resolve/')).map((r) => r.path.split('/').pop()));
  assert.deepEqual([...fetched].sort(), ['config.json', // not README.md
    'model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors', WEIGHTS_INDEX_FILE].sort());
});

test('a sharded nanoVLM checkpoint repo on the Hub resolves to a model folder and loads', async () => {
  const registry = await setup();
  const dir = shard(HEAD, join(tmp, 'head-hub'), 3, ['config.json']);
  hub.addRepo('model', 'someone/nanoVLM-sharded', dirFiles(dir));
  const folder = await resolveModelFolder('someone/nanoVLM-sharded');
  const model = await loadCheckpoint(folder, registry, { log: silentLog });
  const want = readSafetensors(join(HEAD, 'model.safetensors')).tensors.get('decoder.head.weight')!;
  assert.deepEqual(model.params.get('decoder.token_embedding.weight')!.dataSync(), want.data);
  model.dispose();
});

test('model.from: a sharded checkpoint folder builds the model with the weights of the single file', async () => {
  const { buildComponents } = await import('../../../core/build.ts');
  const { createRegistry } = await import('../../../core/registry.ts');
  const builtins = (await import('../../../plugins/index.ts')).default;
  await setup();
  const dir = shard(HEAD, join(tmp, 'head-from'), 2, ['config.json']);
  const registry = createRegistry(builtins);
  const recipe = { model: { from: dir, tokenizer: { use: 'bytes' }, image_processor: { use: 'resize' } } };
  const { model } = await buildComponents(recipe, registry, { recipe, recipeDir: tmp, seed: 0, log: silentLog });
  const want = readSafetensors(join(HEAD, 'model.safetensors')).tensors;
  for (const name of ['vision_encoder.blocks.0.attn.qkv_proj.weight', 'MP.proj.weight', 'decoder.blocks.1.mlp.down_proj.weight']) {
    assert.deepEqual(model.params.get(name)!.dataSync(), want.get(name)!.data, name);
  }
  model.dispose();
});
