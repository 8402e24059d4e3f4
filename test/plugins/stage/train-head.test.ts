// Training a model in nanoVLM HEAD's format from a recipe (model.image_tokens: placeholders, the split
// image processor, HEAD's tokenizer with its extra tokens and chat template) on the digits data in
// the_cauldron layout, end to end and offline: the loss decreases, without packing, with HEAD's
// packing and with the block-diagonal option; the checkpoint is a HEAD config.json that loads back
// as a placeholder model and generates through the chat template. Then the block-diagonal promise
// itself: a packed row gives each of its samples the logits it gets alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { runTrain, writeRecipe } from '../../helpers/run.ts';
import { DATA, needsShared } from '../../helpers/shared.ts';
import { headDigitsRecipe, headTinySamples } from '../../helpers/head-tiny.ts';
import { findLatestCheckpoint } from '../../../core/train/trainer-checkpoints.ts';
import { loadModel } from '../../../core/load-model.ts';
import { createRegistry } from '../../../core/registry.ts';
import builtins from '../../../plugins/index.ts';
import { prepareChatSample, assistantPrefixLength } from '../../../core/data/chat.ts';
import { collateChat, type ChatSample } from '../../../core/data/chat-collator.ts';
import { packSamples } from '../../../core/data/packing.ts';
import { toTensors } from '../../../core/data/collator.ts';
import { buildComponents } from '../../../core/build.ts';
import type { HostBatch } from '../../../core/types.ts';
import { prepareChatPrompts } from '../../../core/chat-prompts.ts';

const skip = needsShared('data', 'digits', 'train.parquet');
const quiet = { info() {}, warn() {}, debug() {} };

const headRecipe = (train: Record<string, unknown> = {}) => headDigitsRecipe('head-train-test', 96, 12, { max_steps: 8, checkpoint_every: 8, ...train });

/** the first digit image of train.parquet (8 x 8 PNG) */
async function digitPng(): Promise<Uint8Array> {
  const registry = createRegistry(builtins);
  const ds = await registry.create('dataset', { use: 'cauldron', path: join(DATA, 'digits', 'train.parquet'), shuffle: false, limit: 1 }, { recipe: {}, recipeDir: '/', yamlPath: 'data.train[0]', seed: 0, log: quiet, role: 'train' });
  for await (const s of ds.samples({ epoch: 0 })) return s.image;
  throw new Error('no sample');
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

for (const [label, packing] of [
  ['one sample per row', null],
  ["HEAD's packing", { attention: 'nanovlm' }],
  ['packing with the block-diagonal mask', { attention: 'block-diagonal' }],
] as const) {
  test(`a HEAD-format recipe trains on the digits (the_cauldron layout), ${label}: the loss decreases`, skip, async () => {
    const run = await runTrain(writeRecipe(headRecipe({ packing, ...(packing ? { batch_size: 2 } : {}) })));
    assert.equal(run.error, undefined, String((run.error as Error)?.stack ?? run.error));
    const model = run.ctx.model!;
    try {
      assert.ok(model.imageTokenId !== null && model.imagePrefix === 0, 'placeholder model');
      const losses = run.steps.map((r) => r.loss as number);
      assert.equal(losses.length, 8);
      assert.ok(losses.every(Number.isFinite));
      assert.ok(mean(losses.slice(-2)) < mean(losses.slice(0, 2)) - 0.3, `loss ${losses.map((l) => l.toFixed(3)).join(' ')}`);
      // the validation loss at the end: chat samples too (packed as training when packing)
      const evals = readFileSync(join(run.ctx.runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.type === 'eval');
      assert.equal(evals.length, 1);
      assert.ok(Number.isFinite(evals[0].val_loss) && evals[0].val_loss < losses[0], `val loss ${evals[0].val_loss}`);
      const pad = run.steps.map((r) => r.padding as number);
      if (packing) assert.ok(mean(pad) < 0.5, `packed rows are mostly full (padding ${mean(pad).toFixed(2)})`);
      else assert.ok(mean(pad) > 0.5, `one short sample per 160-token row is mostly padding (${mean(pad).toFixed(2)})`);
      if (packing) return;
      // the checkpoint: HEAD's config.json, loads back as a placeholder model, generates through the chat template
      const folder = findLatestCheckpoint(run.ctx.runDir)!.folder;
      const config = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8'));
      assert.equal(config.lm_base_vocab_size, 512);
      assert.equal(config.extra_token_amount, 66);
      assert.equal(config.mp_image_token_length, 4);
      assert.ok(!('lm_eos_token_id' in config));
      const loaded = await loadModel(folder, { registry: createRegistry(builtins), log: quiet });
      try {
        assert.equal(loaded.model.imageTokenId, model.imageTokenId);
        assert.equal(loaded.tokenizer.tokenToId!('<|image|>'), 512);
        // vlm generate prompts it as HEAD's generate.py: image string + question through the chat template, generation prompt
        const batch = await prepareChatPrompts(loaded.tokenizer, loaded.imageProcessor, [{ prompt: 'Which digit is this?', images: [await digitPng()] }], { imageTokenLength: 4 });
        const text = loaded.tokenizer.decode(Array.from(batch.inputIds));
        assert.ok(text.startsWith('<|im_start|>user\n<|global_image|>') && text.endsWith('Which digit is this?<|im_end|>\n<|im_start|>assistant\n'), text);
        assert.equal(batch.imageCount, 5); // 8x8 -> 64x64: global view + 2 x 2 tiles
        let out = '';
        const { main } = await import('../../../core/commands/generate.ts');
        const image = join(mkdtempSync(join(tmpdir(), 'vlm-head-gen-')), 'digit.png');
        writeFileSync(image, await digitPng());
        const code = await main(['--model', folder, '--image', image, '--prompt', 'Which digit is this?', '--max-new-tokens', '4', '--backend', tf.getBackend()], { registry: createRegistry(builtins), stdout: { write: (s: string) => (out += s) }, log: quiet } as never);
        assert.equal(code, 0, out);
        assert.match(out, />> Generation 1: /);
      } finally {
        loaded.model.dispose();
      }
    } finally {
      model.dispose();
    }
  });
}

test('packing with the block-diagonal mask changes no sample: each gets, per token, the logits it gets alone (HEAD packing does not)', needsShared('data', 'tokenizers', 'smollm2', 'tokenizer.json'), async () => {
  const recipe = headRecipe();
  const registry = createRegistry(builtins);
  const { model, tokenizer, imageProcessor } = await buildComponents(recipe, registry, { recipe, recipeDir: '/', seed: 0, log: quiet });
  try {
    const samples = await headTinySamples();
    const prefixLen = assistantPrefixLength(tokenizer);
    const prepared = await Promise.all(
      [...samples, { turns: [{ user: 'Say hi.', assistant: 'Hi.' }], images: [] }].map((s, i) =>
        prepareChatSample({ id: `s${i}`, image: new Uint8Array(0), question: '', answer: '', ...s }, tokenizer, imageProcessor, { imageTokenLength: model.numImageTokens, maxImagesPerExample: 4, prefixLen }),
      ),
    );
    const S = imageProcessor.size;
    const total = prepared.reduce((n, p) => n + p.inputIds.length + 1, 0);
    // all three in one row (no extra bins: delta 0), in the knapsack's order
    const { packed, segments } = packSamples(prepared.map((p) => ({ id: p.id, inputIds: p.inputIds, labels: p.labels, attentionMask: p.inputIds.map(() => 1), images: p.perImage })), { seqLength: total, padTokenId: tokenizer.padTokenId, delta: 0 });
    assert.equal(packed.length, 1);
    const row: ChatSample = { id: packed[0].id!, inputIds: packed[0].inputIds, labels: packed[0].labels, attentionMask: packed[0].attentionMask, tiles: concat(packed[0].images as Float32Array[]), tileCount: 0, imageCount: packed[0].images.length, segments: segments[0] };
    row.tileCount = row.tiles.length / (3 * S * S);
    const T = total + 5; // some left padding too
    const logits = (b: HostBatch) => tf.tidy(() => {
      const t = toTensors(b);
      return model.forward(t.inputIds, t.images, t.attentionMask, { segments: t.segmentIds }).arraySync() as number[][][];
    });
    const diag = logits(collateChat([row], { maxLength: T, padTokenId: tokenizer.padTokenId, imageSize: S, blockDiagonal: true }))[0];
    const head = logits(collateChat([row], { maxLength: T, padTokenId: tokenizer.padTokenId, imageSize: S }))[0];
    let at = T - total;
    let headDiffers = 0;
    for (const id of row.id.split('+')) {
      const p = prepared.find((q) => q.id === id)!;
      const n = p.inputIds.length;
      const alone = logits(collateChat([p], { maxLength: n, padTokenId: tokenizer.padTokenId, imageSize: S }))[0]; // no padding: positions 0..n-1
      for (let t = 0; t < n; t++) {
        const a = alone[t];
        const d = diag[at + t];
        const err = Math.sqrt(a.reduce((s, x, v) => s + (x - d[v]) ** 2, 0) / a.reduce((s, x) => s + x * x, 0));
        assert.ok(err <= 1e-5, `${id} token ${t}: relative L2 ${err}`);
        headDiffers = Math.max(headDiffers, Math.sqrt(a.reduce((s, x, v) => s + (x - head[at + t][v]) ** 2, 0) / a.reduce((s, x) => s + x * x, 0)));
      }
      at += n + 1;
    }
    assert.ok(headDiffers > 1e-3, `HEAD's packing (attending across samples, positions running on) changes the later samples (${headDiffers})`);
  } finally {
    model.dispose();
  }
});

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, (at += p.length) - p.length);
  return out;
}

test('a packed run interrupted and resumed has the loss curve of the uninterrupted one (the epoch is packed again up to the resume point)', skip, async () => {
  const recipe = writeRecipe(headRecipe({ packing: { attention: 'nanovlm', buffer_sequences: 3 }, batch_size: 2, max_steps: 6, checkpoint_every: 3 }));
  const full = await runTrain(recipe);
  assert.equal(full.error, undefined, String(full.error));
  full.ctx.model!.dispose();
  const first = await runTrain(recipe, { onStep: (rec, _ctx, abort) => rec.step === 3 && abort() });
  first.ctx.model!.dispose();
  const second = await runTrain(recipe, { resume: first.ctx.runDir });
  assert.equal(second.error, undefined, String(second.error));
  second.ctx.model!.dispose();
  assert.deepEqual([...first.steps, ...second.steps].map((r) => r.loss), full.steps.map((r) => r.loss));
});

test('a batch of samples without images skips the vision encoder (HEAD: N = 0 tiles) and still trains the text', needsShared('data', 'tokenizers', 'smollm2', 'tokenizer.json'), async () => {
  const recipe = headRecipe();
  const registry = createRegistry(builtins);
  const { model, tokenizer, imageProcessor } = await buildComponents(recipe, registry, { recipe, recipeDir: '/', seed: 0, log: quiet });
  try {
    const prefixLen = assistantPrefixLength(tokenizer);
    const samples = await Promise.all(
      ['Say hi.', 'Count to 3.'].map((q, i) =>
        prepareChatSample({ id: `t${i}`, image: new Uint8Array(0), question: q, answer: i ? '1 2 3' : 'Hi.' }, tokenizer, imageProcessor, { imageTokenLength: model.numImageTokens, maxImagesPerExample: 4, prefixLen }),
      ),
    );
    const host = collateChat(samples, { maxLength: 64, padTokenId: tokenizer.padTokenId, imageSize: imageProcessor.size });
    assert.equal(host.imageCount, 0);
    let visionCalls = 0;
    const forward = model.vision.forward.bind(model.vision);
    model.vision.forward = (...a: Parameters<typeof forward>) => (visionCalls++, forward(...a));
    const loss = tf.tidy(() => {
      const t = toTensors(host);
      return model.trainingLoss(t).dataSync()[0];
    });
    assert.equal(visionCalls, 0);
    assert.ok(Number.isFinite(loss) && loss > 0, String(loss));
  } finally {
    model.dispose();
  }
});

test('vlm validate: train.packing without train.max_steps is refused at train.packing', needsShared('data', 'tokenizers', 'smollm2', 'tokenizer.json'), async () => {
  const { resolveRecipe } = await import('../../../core/recipe/index.ts');
  const file = writeRecipe(headRecipe({ packing: { attention: 'nanovlm' }, max_steps: null }));
  await assert.rejects(resolveRecipe(file, { registry: createRegistry(builtins) }), (e: unknown) => {
    const text = String((e as Error).message) + JSON.stringify(e);
    assert.match(text, /train\.packing needs train\.max_steps/);
    assert.match(text, /train\.packing/);
    return true;
  });
});
