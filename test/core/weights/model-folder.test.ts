// nanoVLM checkpoints: save -> reload gives identical logits; the saved files are what nanoVLM's
// save_pretrained writes (same key set, shapes, tied-weight alias and config.json text as the fixture
// produced by PyTorch); loading validates names and shapes and reports problems a user can act on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FIXTURES, needsShared } from '../../helpers/shared.ts';
import { UserError } from '../../../core/errors.ts';
import { loadCheckpoint, saveCheckpoint, SIDECAR_FILE } from '../../../core/weights/model-folder.ts';
import { readSafetensors, readSafetensorsHeader, writeSafetensors, type TensorToWrite } from '../../../core/weights/safetensors.ts';
import { VLM_CONFIG_FIELDS } from '../../../core/model/config.ts';
import type { VisionLanguageModel } from '../../../core/model/vlm.ts';
import { loadInputs, setup, silentLog } from '../../helpers/model.ts';

const TINY = join(FIXTURES, 'tiny');
const tmp = mkdtempSync(join(tmpdir(), 'ckpt-test-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));
const shared = needsShared('fixtures', 'nanovlm', 'tiny');

async function logitsOf(model: VisionLanguageModel): Promise<Float32Array> {
  const x = loadInputs(join(TINY, 'inputs.safetensors'));
  const l = model.forward(x.inputIds, x.images, x.attentionMask);
  const out = (await l.data()) as Float32Array;
  tf.dispose([l, x.images, x.inputIds, x.attentionMask, x.targets]);
  return out;
}

/** copy of the tiny checkpoint whose model.safetensors is rewritten by `edit` */
function editedCopy(name: string, edit: (t: Map<string, TensorToWrite>, meta: Record<string, string> | null) => Record<string, string> | null | void): string {
  const d = join(tmp, name);
  cpSync(TINY, d, { recursive: true });
  const { tensors, metadata } = readSafetensors(join(TINY, 'model.safetensors'));
  const m = tensors as unknown as Map<string, TensorToWrite>;
  const meta = edit(m, metadata);
  writeSafetensors(join(d, 'model.safetensors'), m, meta === undefined ? metadata : meta);
  return d;
}

test('save -> reload: identical logits; same keys, shapes, alias metadata and config.json text as nanoVLM', shared, async () => {
  const registry = await setup();
  const model = await loadCheckpoint(TINY, registry, { log: silentLog });
  const out = join(tmp, 'saved');
  await saveCheckpoint(model, out, { model: { vision: { use: 'siglip-vit' }, projector: { use: 'pixel-shuffle' }, decoder: { use: 'llama' } } });
  const a = await logitsOf(model);
  model.dispose();

  const reloaded = await loadCheckpoint(out, registry, { log: silentLog });
  const b = await logitsOf(reloaded);
  reloaded.dispose();
  assert.deepEqual(b, a, 'logits bit-identical after save -> reload');

  // the weights file: exactly nanoVLM's key set with the same shapes, tied head stored once
  const ours = readSafetensorsHeader(join(out, 'model.safetensors'));
  const ref = readSafetensorsHeader(join(TINY, 'model.safetensors'));
  assert.deepEqual([...ours.entries.keys()].sort(), [...ref.entries.keys()].sort());
  for (const [k, e] of ref.entries) {
    assert.deepEqual(ours.entries.get(k)!.shape, e.shape, k);
    assert.equal(ours.entries.get(k)!.dtype, 'F32', k);
  }
  assert.ok(ours.entries.has('decoder.head.weight') && !ours.entries.has('decoder.token_embedding.weight'));
  assert.ok(ours.entries.has('decoder.rotary_embd.inv_freq'));
  assert.deepEqual(ours.metadata, ref.metadata);
  assert.deepEqual(ours.metadata, { 'decoder.token_embedding.weight': 'decoder.head.weight' });
  // every value round-trips exactly (incl. the inv_freq buffer computed in float32 as torch does)
  const ov = readSafetensors(join(out, 'model.safetensors')).tensors;
  for (const [k, t] of readSafetensors(join(TINY, 'model.safetensors')).tensors) assert.deepEqual(ov.get(k)!.data, t.data, k);

  // config.json: exactly VLMConfig's fields in order, written as json.dumps(asdict(cfg), indent=4)
  const cfgText = readFileSync(join(out, 'config.json'), 'utf8');
  assert.deepEqual(Object.keys(JSON.parse(cfgText)), VLM_CONFIG_FIELDS);
  assert.equal(cfgText.trim(), readFileSync(join(TINY, 'config.json'), 'utf8').trim());
  assert.deepEqual(JSON.parse(readFileSync(join(out, SIDECAR_FILE), 'utf8')).format_version, 1);
});

test('a file storing the tied weight as decoder.token_embedding.weight loads the same model', shared, async () => {
  const registry = await setup();
  const d = editedCopy('untied-name', (t) => {
    t.set('decoder.token_embedding.weight', t.get('decoder.head.weight')!);
    t.delete('decoder.head.weight');
    return null;
  });
  const m1 = await loadCheckpoint(d, registry, { log: silentLog });
  const m2 = await loadCheckpoint(TINY, registry, { log: silentLog });
  assert.deepEqual(await logitsOf(m1), await logitsOf(m2));
  m1.dispose();
  m2.dispose();
});

test('load errors: missing config.json, shape mismatch, missing and unexpected tensors', shared, async () => {
  const registry = await setup();
  const before = tf.memory().numTensors;
  const noCfg = join(tmp, 'nocfg');
  cpSync(TINY, noCfg, { recursive: true });
  unlinkSync(join(noCfg, 'config.json'));
  await assert.rejects(loadCheckpoint(noCfg, registry), (e: unknown) => e instanceof UserError && /config\.json not found/.test(e.message));

  // config says a wider MLP than the weights have
  const shape = join(tmp, 'shape');
  cpSync(TINY, shape, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(TINY, 'config.json'), 'utf8'));
  const [inter, C] = [cfg.lm_inter_dim, cfg.lm_hidden_dim];
  writeFileSync(join(shape, 'config.json'), JSON.stringify({ ...cfg, lm_inter_dim: inter + 8 }));
  await assert.rejects(loadCheckpoint(shape, registry), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.ok(
      e.message.includes(`tensor "decoder.blocks.0.mlp.gate_proj.weight": expected shape [${inter + 8},${C}], found [${inter},${C}]`),
      e.message,
    );
    return true;
  });

  const mpShape = readSafetensorsHeader(join(TINY, 'model.safetensors')).entries.get('MP.proj.weight')!.shape;
  const missing = editedCopy('missing', (t) => void t.delete('MP.proj.weight'));
  await assert.rejects(loadCheckpoint(missing, registry), (e: unknown) => e instanceof UserError && e.message.includes(`missing tensor "MP.proj.weight" (shape [${mpShape}])`));

  const extra = editedCopy('extra', (t) => void t.set('decoder.blocks.999.norm1.weight', { dtype: 'F32', shape: [1], data: new Float32Array(1) }));
  await assert.rejects(loadCheckpoint(extra, registry), /unexpected tensors: decoder\.blocks\.999\.norm1\.weight/);

  assert.equal(tf.memory().numTensors, before, 'a failed load disposes the half-built model');
});

test('NaN weights load with a warning naming the tensor; a wrong inv_freq warns about the config', shared, async () => {
  const registry = await setup();
  const d = editedCopy('nan', (t) => {
    const w = t.get('decoder.norm.weight')!;
    (w.data as Float32Array)[3] = NaN;
    const inv = t.get('decoder.rotary_embd.inv_freq')!;
    (inv.data as Float32Array)[1] *= 2;
  });
  const warnings: string[] = [];
  const m = await loadCheckpoint(d, registry, { log: { ...silentLog, warn: (s: string) => warnings.push(s) } });
  m.dispose();
  assert.ok(warnings.some((w) => /"decoder\.norm\.weight" contains NaN/.test(w)), warnings.join('\n'));
  assert.ok(warnings.some((w) => /decoder\.rotary_embd\.inv_freq/.test(w)), warnings.join('\n'));
});

test('the sidecar names the plugins; backbone `from` entries are not re-downloaded; config.json gives the shapes', shared, async () => {
  const registry = await setup();
  const d = join(tmp, 'sidecar');
  cpSync(TINY, d, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(TINY, 'config.json'), 'utf8'));
  const section = {
    vision: { use: 'siglip-vit', from: 'google/does-not-exist', hidden_dim: cfg.vit_hidden_dim, patch_size: cfg.vit_patch_size, image_size: cfg.vit_img_size },
    projector: { use: 'pixel-shuffle', factor: cfg.mp_pixel_shuffle_factor },
    decoder: { use: 'llama', from: 'HuggingFaceTB/does-not-exist', hidden_dim: cfg.lm_hidden_dim, vocab_size: cfg.lm_vocab_size, max_length: cfg.lm_max_length },
  };
  writeFileSync(join(d, SIDECAR_FILE), JSON.stringify({ format_version: 1, model: section }));
  const m = await loadCheckpoint(d, registry, { log: silentLog });
  const ref = await loadCheckpoint(TINY, registry, { log: silentLog });
  assert.deepEqual(await logitsOf(m), await logitsOf(ref));
  assert.deepEqual(m.nanovlmConfig(), ref.nanovlmConfig());
  m.dispose();
  ref.dispose();
});

test('untied head: both tensors saved, no alias metadata, reload identical; a plain config.json round-trips', async () => {
  const registry = await setup();
  const section = {
    vision: { use: 'siglip-vit', hidden_dim: 16, inter_dim: 32, patch_size: 4, image_size: 16, n_heads: 2, n_blocks: 1, ln_eps: 1e-5 },
    projector: { use: 'pixel-shuffle', factor: 2 },
    decoder: { use: 'llama', hidden_dim: 24, inter_dim: 40, n_heads: 6, n_kv_heads: 3, n_blocks: 1, vocab_size: 30, max_length: 5, tie_weights: false, attn_scaling: 0.75, re_base: 5000 },
  };
  const { buildModel } = await import('../../../core/weights/model-folder.ts');
  const model = await buildModel(section, registry, { seed: 11, log: silentLog });
  assert.ok(model.params.has('decoder.head.weight'));
  const out = join(tmp, 'untied');
  await saveCheckpoint(model, out); // no sidecar: config.json alone must describe the model
  const header = readSafetensorsHeader(join(out, 'model.safetensors'));
  assert.ok(header.entries.has('decoder.head.weight') && header.entries.has('decoder.token_embedding.weight'));
  assert.equal(header.metadata, null);
  const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.equal(cfg.lm_tie_weights, false);
  assert.equal(cfg.lm_attn_scaling, 0.75);
  assert.equal(cfg.vit_ln_eps, 1e-5);
  assert.match(readFileSync(join(out, 'config.json'), 'utf8'), /"vit_ln_eps": 1e-05,/);

  const images = tf.randomUniform([1, 3, 16, 16], 0, 1, 'float32', 2) as tf.Tensor4D;
  const ids = tf.tensor2d([[0, 3, 4, 5, 6]], [1, 5], 'int32');
  const mask = tf.tensor2d([[0, 1, 1, 1, 1]], [1, 5], 'int32');
  const a = model.forward(ids, images, mask);
  const reloaded = await loadCheckpoint(out, registry, { log: silentLog });
  const b = reloaded.forward(ids, images, mask);
  assert.deepEqual(b.dataSync(), a.dataSync());
  assert.deepEqual(reloaded.nanovlmConfig(), model.nanovlmConfig());
  tf.dispose([images, ids, mask, a, b]);
  model.dispose();
  reloaded.dispose();
});

test('config.json: v0.1 and HEAD formats are told apart; v0.2 and unknown fields are refused, naming the fields (never ignored)', async () => {
  const { checkpointModelSection } = await import('../../../core/weights/model-folder.ts');
  const { VLM_CONFIG_DEFAULTS, HEAD_VLM_CONFIG_DEFAULTS } = await import('../../../core/model/config.ts');
  const folder = (name: string, cfg: Record<string, unknown>) => {
    const d = join(tmp, name);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'config.json'), JSON.stringify(cfg));
    return d;
  };
  const reg = await setup();
  // nanoVLM HEAD's VLMConfig as save_pretrained writes it: no lm_eos_token_id, the newer fields
  const head = checkpointModelSection(folder('head-config', { ...HEAD_VLM_CONFIG_DEFAULTS }), reg);
  assert.equal(head.format, 'head');
  assert.equal(head.section.projector.factor, 4);
  assert.equal(head.section.decoder.vocab_size, 49218);
  // a HEAD config missing fields takes HEAD's defaults (not v0.1's)
  assert.equal(checkpointModelSection(folder('head-partial', { mp_image_token_length: 64 }), reg).section.decoder.hidden_dim, 960);
  // v0.2 (731d8c6) keeps lm_eos_token_id beside the newer fields: neither format
  assert.throws(() => checkpointModelSection(folder('v02-config', { ...VLM_CONFIG_DEFAULTS, mp_image_token_length: 64, vlm_extra_tokens: { image_token: '<|image|>' } }), reg), /nanoVLM v0\.2 checkpoint/);
  // a misspelt field is not silently dropped, in either format
  assert.throws(() => checkpointModelSection(folder('typo-config', { ...VLM_CONFIG_DEFAULTS, lm_n_kv_head: 3 }), reg), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.match(e.message, /unknown field lm_n_kv_head \(did you mean lm_n_kv_heads\?\): not a field of nanoVLM v0\.1's VLMConfig/);
    return true;
  });
  assert.throws(() => checkpointModelSection(folder('head-typo', { ...HEAD_VLM_CONFIG_DEFAULTS, max_img_sise: 1024 }), reg), /unknown field max_img_sise \(did you mean max_img_size\?\): not a field of nanoVLM HEAD's VLMConfig/);
  // exactly v0.1's fields (or a subset: the dataclass has defaults) load as v0.1
  const v01 = checkpointModelSection(folder('v01-config', { ...VLM_CONFIG_DEFAULTS }), reg);
  assert.equal(v01.format, 'v0.1');
  assert.equal(v01.section.decoder.n_kv_heads, 3);
  assert.equal(checkpointModelSection(folder('v01-subset', { lm_hidden_dim: 64 }), reg).section.decoder.hidden_dim, 64);
});
