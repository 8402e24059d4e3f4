// nanoVLM HEAD (4e0c096) reference fixture, test/core/model/fixtures/head-tiny, made by
// bench/reference/nanovlm_head.py running HEAD's PyTorch code (README there):
//   - HEAD's config.json loads in placeholder mode (image tokens in the text) and saves back as is;
//   - `vlm compare` passes on every tensor; generate() gives HEAD's greedy tokens;
//   - HEAD's forward and backward built from the pieces directly: the vision encoder and projector
//     (unchanged since v0.1), the placeholder scatter (core/model/image-placeholders.ts) and the
//     decoder, against vision_out, mp_out, decoder_hidden and logits (valid positions), the loss and
//     every gradient, at the v0.1 tolerances (forward rel. L2 <= 1e-5, gradients <= 1e-4).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../../../core/errors.ts';
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { needsShared } from '../../helpers/shared.ts';
import { createRegistry } from '../../../core/registry.ts';
import { loadModel } from '../../../core/load-model.ts';
import { prepareChatPrompts } from '../../../core/chat-prompts.ts';
import { generateBatch } from '../../../core/generate.ts';
import vision from '../../../plugins/vision/index.ts';
import projector from '../../../plugins/projector/index.ts';
import decoder from '../../../plugins/decoder/index.ts';
import tokenizers from '../../../plugins/tokenizer/index.ts';
import imageProcessors from '../../../plugins/image-processor/index.ts';
import { tmpdir } from 'node:os';
import { buildModel, loadCheckpoint, loadWeights, saveCheckpoint } from '../../../core/weights/model-folder.ts';
import { readSafetensors, readSafetensorsHeader, type LoadedTensor } from '../../../core/weights/safetensors.ts';
import { compareFixture, formatTable } from '../../../core/commands/compare.ts';
import { generate } from '../../../core/generate.ts';
import { recipeModelFromVLMConfig, VLM_CONFIG_FIELDS } from '../../../core/model/config.ts';
import { placeholderIndex, replaceImageTokens } from '../../../core/model/image-placeholders.ts';
import { crossEntropyIgnore } from '../../../core/ops.ts';
import { errors } from '../../../core/commands/compare.ts';
import { setup, silentLog } from '../../helpers/model.ts';
import { headTinyPng, writeHeadTinyTokenizer } from '../../helpers/head-tiny.ts';

const HEAD = join(import.meta.dirname, 'fixtures', 'head-tiny');
const cfg = JSON.parse(readFileSync(join(HEAD, 'config.json'), 'utf8'));
const tokenization = JSON.parse(readFileSync(join(HEAD, 'tokenization.json'), 'utf8'));
const IMAGE_TOKEN = tokenization.extra_token_ids['<|image|>'] as number;
const tmp = mkdtempSync(join(tmpdir(), 'head-test-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

test("HEAD's config.json loads in placeholder mode and saves back as HEAD's VLMConfig (same text)", async () => {
  const registry = await setup();
  const model = await loadCheckpoint(HEAD, registry, { log: silentLog });
  try {
    assert.equal(model.imageTokenId, IMAGE_TOKEN);
    assert.equal(model.imagePrefix, 0);
    assert.deepEqual(Object.keys(model.nanovlmConfig()), Object.keys(cfg));
    assert.deepEqual(model.nanovlmConfig(), cfg);
    const out = join(tmp, 'saved');
    await saveCheckpoint(model, out);
    assert.equal(readFileSync(join(out, 'config.json'), 'utf8').trim(), readFileSync(join(HEAD, 'config.json'), 'utf8').trim());
    const again = await loadCheckpoint(out, registry, { log: silentLog });
    assert.equal(again.imageTokenId, IMAGE_TOKEN);
    again.dispose();
  } finally {
    model.dispose();
  }
});

test('vlm compare on the HEAD fixture: every tensor (forward, loss, gradients, clipped AdamW step, greedy tokens with and without the KV cache, sampling) passes', async () => {
  const registry = await setup();
  const rows = await compareFixture({ model: HEAD, inputs: join(HEAD, 'inputs.safetensors'), expected: join(HEAD, 'expected.safetensors'), registry });
  const failed = rows.filter((r) => !r.pass);
  assert.equal(failed.length, 0, formatTable(failed));
  const names = new Set(rows.map((r) => r.name));
  for (const n of readSafetensorsHeader(join(HEAD, 'expected.safetensors')).entries.keys()) assert.ok(names.has(n), `${n} compared`);
  assert.ok(names.has('greedy_tokens (kv cache)'));
});

test('generate() in placeholder mode gives HEAD\'s greedy tokens, with and without the KV cache', async () => {
  const registry = await setup();
  const model = await loadCheckpoint(HEAD, registry, { log: silentLog });
  const inp = readSafetensors(join(HEAD, 'inputs.safetensors')).tensors;
  const want = readSafetensors(join(HEAD, 'expected.safetensors')).tensors.get('greedy_tokens')!;
  const i32 = (t: LoadedTensor) => tf.tensor2d(Int32Array.from(t.data as BigInt64Array, Number), t.shape as [number, number], 'int32');
  const inputIds = i32(inp.get('gen_input_ids')!);
  const attentionMask = i32(inp.get('gen_attention_mask')!);
  const images = tf.tensor4d(inp.get('images')!.data as Float32Array, inp.get('images')!.shape as [number, number, number, number]);
  const expected = Array.from({ length: want.shape[0] }, (_, b) => Array.from((want.data as BigInt64Array).subarray(b * want.shape[1], (b + 1) * want.shape[1]), Number));
  for (const useCache of [true, false]) {
    const got = await generate(model, { inputIds, attentionMask, images }, { greedy: true, maxNewTokens: want.shape[1], stopAtEos: false, useCache, padAfterEos: true, eosTokenId: tokenization.eos_token_id });
    assert.deepEqual(got, expected, `useCache ${useCache}`);
  }
  tf.dispose([inputIds, attentionMask, images]);
  model.dispose();
});

test('placeholderIndex: the k-th <|image|> of the flattened batch takes image row k; a count mismatch is a clear error', () => {
  assert.deepEqual([...placeholderIndex([5, 9, 9, 1, 9, 2], 9, 3)], [0, 6, 7, 3, 8, 5]);
  assert.throws(() => placeholderIndex([5, 9, 1], 9, 2), (e: unknown) => e instanceof UserError && /1 image placeholder tokens .* 2 embeddings/.test(e.message));
});

test('nanoVLM HEAD parity, pieces: vision, projector, placeholder scatter, decoder, logits, loss, every gradient', async () => {
  const registry = await setup();
  const before = tf.memory().numTensors;
  // the architecture of HEAD's modules is v0.1's: build it from the v0.1 fields of HEAD's config
  const v01 = Object.fromEntries(VLM_CONFIG_FIELDS.filter((f) => f in cfg).map((f) => [f, cfg[f]]));
  const model = await buildModel(recipeModelFromVLMConfig(v01, registry), registry, { log: silentLog });
  loadWeights(model, HEAD, silentLog);
  const inp = readSafetensors(join(HEAD, 'inputs.safetensors')).tensors;
  const exp = readSafetensors(join(HEAD, 'expected.safetensors')).tensors;
  const f32 = (t: LoadedTensor) => tf.tensor(t.data as Float32Array, t.shape as number[], 'float32');
  const i32 = (t: LoadedTensor) => tf.tensor(Int32Array.from(t.data as BigInt64Array, Number), t.shape as number[], 'int32');
  const images = f32(inp.get('images')!) as tf.Tensor4D;
  const ids = i32(inp.get('input_ids')!) as tf.Tensor2D;
  const mask = i32(inp.get('attention_mask')!) as tf.Tensor2D;
  const targets = i32(inp.get('targets')!) as tf.Tensor2D;
  const [B, T] = ids.shape;
  const maskHost = mask.dataSync();

  const run = () => {
    const visionOut = model.vision.forward(images); // [N, P, D]
    const mpOut = model.projector.forward(visionOut); // [N, L, C]
    const embd = replaceImageTokens(model.decoder.embed(ids), ids, mpOut, IMAGE_TOKEN); // [B, T, C]
    const hidden = model.decoder.forward(embd, { mask: mask.toFloat() as tf.Tensor2D }); // [B, T, C]
    const logits = model.decoder.head(hidden); // [B, T, V]
    return { visionOut, mpOut, hidden, logits, loss: crossEntropyIgnore(logits, targets) };
  };
  const got = tf.tidy(() => {
    const r = run();
    return { visionOut: r.visionOut.dataSync(), mpOut: r.mpOut.dataSync(), hidden: r.hidden.dataSync(), logits: r.logits.dataSync(), loss: r.loss.dataSync()[0] };
  });
  const check = (name: string, a: ArrayLike<number>, perPosition = 0) => {
    const e = exp.get(name)!;
    const keep = perPosition ? (i: number) => maskHost[Math.floor(i / perPosition)] === 1 : undefined; // valid text positions only
    const { relL2 } = errors(a, e.data as Float32Array, keep);
    assert.equal(a.length, e.data.length, `${name} size`);
    assert.ok(relL2 <= 1e-5, `${name}: relative L2 ${relL2}`);
  };
  check('vision_out', got.visionOut);
  check('mp_out', got.mpOut);
  check('decoder_hidden', got.hidden, cfg.lm_hidden_dim);
  check('logits', got.logits, cfg.lm_vocab_size);
  assert.ok(Math.abs(got.loss - (exp.get('loss')!.data as Float32Array)[0]) <= 1e-5, `loss ${got.loss}`);
  assert.equal(B * T, maskHost.length);

  const names = [...model.params.keys()];
  const { value, grads } = tf.variableGrads(() => run().loss, names.map((n) => model.params.get(n)!));
  let compared = 0;
  for (const n of names) {
    const g = grads[model.params.get(n)!.name].dataSync();
    const e = exp.get(`grad.${n}`)!;
    const ref = e.data as Float32Array;
    // ViT qkv bias: the key slice has a mathematically zero gradient (round-off only): absolute check there
    const keySlice = /^vision_encoder\..*attn\.qkv_proj\.bias$/.test(n) ? (i: number) => i < ref.length / 3 || i >= (2 * ref.length) / 3 : undefined;
    const { relL2, maxAbs } = errors(g, ref, keySlice);
    assert.ok(relL2 <= 1e-4, `grad.${n}: relative L2 ${relL2}`);
    assert.ok(errors(g, ref).maxAbs <= 5e-5 && maxAbs <= 5e-5, `grad.${n}: max abs`);
    compared++;
  }
  assert.equal(compared, [...exp.keys()].filter((k) => k.startsWith('grad.')).length, 'every gradient of the fixture compared');
  tf.dispose([value, ...Object.values(grads), images, ids, mask, targets]);
  model.dispose();
  assert.equal(tf.memory().numTensors, before);
});

/** A HEAD model folder as a user has it: the fixture's config.json and weights + its tokenizer (test/helpers/head-tiny.ts). */
function headFolder(): string {
  const d = join(tmp, 'head-folder');
  if (existsSync(join(d, 'config.json'))) return d;
  writeHeadTinyTokenizer(d);
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(HEAD, f), join(d, f));
  return d;
}

const png = headTinyPng;

const withTokenizer = needsShared('data', 'tokenizers', 'smollm2', 'tokenizer.json');

test("a HEAD folder end to end: images + questions -> HEAD's prompts, tiles and greedy tokens (loadModel, prepareChatPrompts, generateBatch)", withTokenizer, async () => {
  await setup();
  const registry = createRegistry([...vision, ...projector, ...decoder, ...tokenizers, ...imageProcessors]);
  const { model, tokenizer, imageProcessor } = await loadModel(headFolder(), { registry, log: silentLog });
  try {
    assert.equal(model.imageTokenId, IMAGE_TOKEN);
    assert.equal(tokenizer.eosTokenId, tokenization.eos_token_id);
    const inp = readSafetensors(join(HEAD, 'inputs.safetensors')).tensors;
    const batch = await prepareChatPrompts(
      tokenizer,
      imageProcessor,
      [
        { prompt: tokenization.samples[0].messages[0].content.split('<|image|>').pop(), images: [await png(0), await png(1)] },
        { prompt: tokenization.samples[1].messages[0].content.split('<|image|>').pop(), images: [await png(2)] },
      ],
      { imageTokenLength: cfg.mp_image_token_length },
    );
    assert.deepEqual(Array.from(batch.inputIds), Array.from(inp.get('gen_input_ids')!.data as BigInt64Array, Number));
    assert.deepEqual(Array.from(batch.attentionMask), Array.from(inp.get('gen_attention_mask')!.data as BigInt64Array, Number));
    assert.equal(batch.imageCount, inp.get('images')!.shape[0]);
    assert.ok(errors(batch.images, inp.get('images')!.data as Float32Array).maxAbs <= 1e-6);
    const want = readSafetensors(join(HEAD, 'expected.safetensors')).tensors.get('greedy_tokens')!;
    const got = await generateBatch(model, batch, { greedy: true, maxNewTokens: want.shape[1], stopAtEos: false, padAfterEos: true });
    assert.deepEqual(got.flat(), Array.from(want.data as BigInt64Array, Number));
  } finally {
    model.dispose();
  }
});

test('vlm generate on a HEAD folder: chat prompt, split image, the greedy answer HEAD gives', withTokenizer, async () => {
  const { main } = await import('../../../core/commands/generate.ts');
  const registry = createRegistry([...vision, ...projector, ...decoder, ...tokenizers, ...imageProcessors]);
  const image = join(tmp, 'wide.png');
  writeFileSync(image, await png(2));
  let text = '';
  const code = await main(
    ['--model', headFolder(), '--image', image, '--prompt', 'Describe the wide image.', '--max-new-tokens', '8', '--no-stop', '--backend', tf.getBackend()],
    { registry, stdout: { write: (s: string) => (text += s) }, log: silentLog } as never,
  );
  assert.equal(code, 0);
  // row 1 of HEAD's batch has no padding, so alone it generates the same tokens
  const want = readSafetensors(join(HEAD, 'expected.safetensors')).tensors.get('greedy_tokens')!;
  const row1 = Array.from((want.data as BigInt64Array).subarray(want.shape[1]), Number);
  const { tokenizer } = await loadModel(headFolder(), { registry, log: silentLog }).then((m) => (m.model.dispose(), m));
  assert.ok(text.includes(`>> Generation 1: ${tokenizer.decode(row1, { skipSpecialTokens: true }).replace(/\n/g, ' ')}`), text);
});

test("the 450M model: HEAD's default VLMConfig mapped onto our modules has HEAD's parameter count (460,113,984)", async () => {
  const { parameterReport } = await import('../../../core/commands/inspect.ts');
  const { HEAD_VLM_CONFIG_DEFAULTS } = await import('../../../core/model/config.ts');
  const registry = await setup();
  const r = parameterReport({ model: recipeModelFromVLMConfig(HEAD_VLM_CONFIG_DEFAULTS, registry) }, registry);
  // sum(p.numel()) per module of VisionLanguageModel(VLMConfig(), load_backbone=False) at HEAD 4e0c096
  // (SigLIP2-B/16-512 + SmolLM2-360M with 66 extra tokens, pixel shuffle 4)
  const counts = Object.fromEntries(r.modules.map((m) => [m.module, m.params]));
  assert.deepEqual(counts, { vision_encoder: 86_433_024, MP: 11_796_480, decoder: 361_884_480 });
  assert.equal(r.total, 460_113_984);
});
