// Memory a user can act on (core/train/memory.ts): the estimate against measured tf.profile peaks,
// the 222M model's figures (why batch 1 aborted without the memory options, why batch 8 fits with
// them), the early refusal of the train stage with what to change, an abort of the wasm module
// reported as out of memory (never "internal error"), and `vlm memory`'s OOM rows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { REPO_ROOT } from '../../helpers/shared.ts';
import { useTestBackend } from '../../helpers/backend.ts';
import { cli, formatError } from '../../../core/cli.ts';
import builtins from '../../../plugins/index.ts';
import { Registry } from '../../../core/registry.ts';
import { resolveRecipe } from '../../../core/recipe/index.ts';
import { buildComponents } from '../../../core/build.ts';
import { installFastKernels } from '../../../core/kernels/index.ts';
import { benchBatch, timedStep } from '../../../core/benchmark.ts';
import { buildOptimizer } from '../../../core/build.ts';
import { VLM_CONFIG_DEFAULTS } from '../../../core/model/config.ts';
import { UserError } from '../../../core/errors.ts';
import { estimateTrainingMemory, guardWasmAbort, memoryAdvice, placeholderTiles, trainingMemory, WASM_HEAP_LIMIT, type ShapeConfig } from '../../../core/train/memory.ts';
import { runTrain, smallRecipe, tmpOut, writeRecipe } from '../../helpers/run.ts';
import { needsShared } from '../../helpers/shared.ts';
import { headFormatModel, headTinyPng } from '../../helpers/head-tiny.ts';
import { SplitProcessor } from '../../../plugins/image-processor/split.ts';
import { assistantPrefixLength, prepareChatSample } from '../../../core/data/chat.ts';
import { collateChat } from '../../../core/data/chat-collator.ts';

const quiet = { info() {}, warn() {}, debug() {} };
const GiB = 2 ** 30;

test('the estimate is within 25% of the measured tf.profile peak (bench small, batch 2, with and without checkpointing)', async () => {
  installFastKernels(await useTestBackend());
  const registry = new Registry(builtins);
  const r = await resolveRecipe(resolve(REPO_ROOT, 'recipes/bench/small.yaml'), { registry });
  const { model } = await buildComponents(r.data, registry, { recipe: r.data, recipeDir: r.dir, seed: 0, log: quiet });
  const host = benchBatch(model, 2, 0);
  const peaks: number[] = [];
  for (const checkpoint of [false, true]) {
    const { optimizer } = await buildOptimizer(r.data, registry, { recipe: r.data, recipeDir: r.dir, seed: 0, log: quiet }, model);
    await timedStep(model, optimizer, host, { maxGradNorm: 0, timeForward: false, checkpoint }); // creates the optimizer state
    const prof = await tf.profile(async () => void (await timedStep(model, optimizer, host, { maxGradNorm: 0, timeForward: false, checkpoint })));
    const { estimate } = trainingMemory(model, optimizer, { batchSize: 2, checkpoint, backend: 'wasm' });
    const ratio = prof.peakBytes / estimate.total;
    assert.ok(ratio > 0.75 && ratio < 1.25, `checkpoint ${checkpoint}: measured ${prof.peakBytes} vs estimated ${estimate.total} (ratio ${ratio.toFixed(2)})`);
    peaks.push(estimate.total);
    optimizer.dispose();
  }
  assert.ok(peaks[1] < peaks[0], 'checkpointing lowers the estimate');
  model.dispose();
});

test('222M on wasm: batch 1 does not fit without the memory options (the abort of issue 14), batch 8 fits with them', () => {
  const n = 222_081_600;
  const est = (batchSize: number, checkpoint: boolean, host: boolean) =>
    estimateTrainingMemory(VLM_CONFIG_DEFAULTS as unknown as ShapeConfig, {
      batchSize,
      totalParams: n,
      trainableParams: n,
      largestParam: 49152 * 576,
      checkpoint,
      optimizerState: host ? { backend: 0, host: 8 * n } : { backend: 8 * n, host: 0 },
    });
  assert.ok(est(1, false, false).total > WASM_HEAP_LIMIT, 'batch 1, no options: over the 4 GiB heap');
  assert.ok(est(8, true, true).total < WASM_HEAP_LIMIT * 0.9, `batch 8 with checkpointing + host state: ${est(8, true, true).total / GiB} GiB`);
  assert.ok(est(8, false, true).total > WASM_HEAP_LIMIT && est(8, true, false).total > WASM_HEAP_LIMIT, 'each option alone is not enough at batch 8');
  const advice = memoryAdvice(est(8, false, false), { batchSize: 8, checkpoint: false, backend: 'wasm', limit: WASM_HEAP_LIMIT }).join('\n');
  assert.match(advice, /activation_checkpointing: true/);
  assert.match(advice, /host_state: true/);
  assert.match(advice, /freeze|LoRA/);
  assert.match(advice, /runtime\.backend: tensorflow/);
});

test('the train stage refuses before the first step when the estimate is over the limit, saying what to change', async () => {
  const out = tmpOut();
  process.env.VLM_MEMORY_LIMIT_MIB = '1';
  try {
    const run = await runTrain(writeRecipe(smallRecipe(out, { max_steps: 2 })));
    assert.ok(run.error instanceof UserError, `expected a UserError, got ${run.error}`);
    const text = formatError(run.error);
    assert.match(text, /not starting training: one training step at batch size 4 needs about [\d.]+ MiB on the wasm backend \(parameters .* = [\d.]+ MiB\), its limit is 1\.0 MiB \(VLM_MEMORY_LIMIT_MIB\)/);
    assert.match(text, /train\.activation_checkpointing: true/);
    assert.match(text, /train\.batch_size/);
    assert.equal(run.steps.length, 0, 'no step ran');
  } finally {
    delete process.env.VLM_MEMORY_LIMIT_MIB;
    rmSync(out, { recursive: true, force: true });
  }
});

test('an abort of the wasm module is reported as out of memory with what to change, never as a bug', () => {
  const abort = Object.assign(new Error('Aborted(). Build with -sASSERTIONS for more info.'), { name: 'RuntimeError' });
  const text = formatError(abort);
  assert.doesNotMatch(text, /internal error|a bug/);
  assert.match(text, /^error: the wasm backend ran out of memory during this command \(Aborted\(\)\. .*\): its heap is limited to 4\.0 GiB/);
  assert.match(text, /activation_checkpointing/);
  // in the training step: the estimate, the limit and the last checkpoint
  const estimate = estimateTrainingMemory(VLM_CONFIG_DEFAULTS as unknown as ShapeConfig, { batchSize: 1, totalParams: 222_081_600, trainableParams: 222_081_600, largestParam: 49152 * 576, checkpoint: false, optimizerState: { backend: 8 * 222_081_600, host: 0 } });
  assert.throws(
    () => guardWasmAbort(() => { throw abort; }, (e) => new UserError(`converted: ${e.message}`)),
    /converted: Aborted\(\)/,
  );
  assert.throws(() => guardWasmAbort(() => { throw new TypeError('x'); }, () => new UserError('no')), TypeError, 'other errors pass through');
  assert.ok(estimate.total > WASM_HEAP_LIMIT);
});

test('vlm memory: a batch size far over the limit is an OOM row with the estimate (not a failure)', async (t) => {
  const backend = await useTestBackend();
  const dir = mkdtempSync(join(tmpdir(), 'vlm-memory-oom-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const json = join(dir, 'm.json');
  let out = '';
  process.env.VLM_MEMORY_LIMIT_MIB = '1';
  try {
    const code = await cli(['memory', join(REPO_ROOT, 'recipes', 'bench', 'tiny.yaml'), '--batch-sizes', '1,2', '--backend', backend, '--png', join(dir, 'm.png'), '--json', json], {
      builtins,
      stdout: { write: (s: string) => ((out += s), true) },
      stderr: { write: () => true },
    });
    assert.equal(code, 0);
  } finally {
    delete process.env.VLM_MEMORY_LIMIT_MIB;
  }
  const { rows } = JSON.parse(readFileSync(json, 'utf8'));
  assert.equal(rows.length, 1, 'the sweep stops at the first OOM');
  assert.equal(rows[0].status, 'oom');
  assert.ok(rows[0].estimate_bytes > 2 ** 20, 'the row has the estimate');
  assert.match(rows[0].message, /out of memory \(estimated, not run\)/);
  assert.match(out, /no batch size fits/);
});

test('image tokens as placeholders: the estimate counts every tile of a row through the vision encoder (placeholderTiles) and is within 25% of the measured peak of a HEAD batch', needsShared('data', 'tokenizers', 'smollm2', 'tokenizer.json'), async () => {
  // nanovlm-450m: 2048 px / 512 px tiles = a 4 x 4 grid + the global view = 17 tiles an image; 4 images a
  // sample = 68, but a 4096-token row holds at most 64 tiles of 64 tokens; packed (18 images a row) also 64
  assert.equal(new SplitProcessor({ tile: 512, maxSize: 2048, resizeToMaxSide: true, globalAntialias: false }).maxTiles, 17);
  assert.equal(new SplitProcessor({ tile: 512, maxSize: 512, resizeToMaxSide: true, globalAntialias: false }).maxTiles, 1);
  assert.equal(placeholderTiles({ imagesPerRow: 4, maxTiles: 17, imageTokens: 64, maxLength: 4096 }), 64);
  assert.equal(placeholderTiles({ imagesPerRow: 2, maxTiles: 17, imageTokens: 64, maxLength: 4096 }), 34);
  assert.equal(placeholderTiles({ imagesPerRow: Infinity, maxTiles: 5, imageTokens: 4, maxLength: 160 }), 40);
  // the vision encoder's share grows with the tiles, linearly; the text no longer carries the image prefix
  const n = 222_081_600;
  const base = { batchSize: 2, totalParams: n, trainableParams: n, largestParam: 49152 * 576, checkpoint: false, optimizerState: { backend: 8 * n, host: 0 } };
  const act = (tilesPerRow?: number) => estimateTrainingMemory(VLM_CONFIG_DEFAULTS as unknown as ShapeConfig, { ...base, tilesPerRow }).activations;
  assert.ok(act(1) < act(), 'one tile, its tokens inside lm_max_length: less than the v0.1 prefix');
  assert.ok(Math.abs(act(17) - act(1) - 16 * (act(2) - act(1))) < 1e-6 * act(17), 'linear in the tiles');
  assert.ok(act(17) > 3 * act(1), `17 tiles a row: ${act(17)} vs ${act(1)}`);

  // measured: a tiny HEAD-format model, rows of 4 split images (5 tiles each = 20 tiles a row)
  installFastKernels(await useTestBackend());
  const recipe = {
    model: headFormatModel({ hidden_dim: 128, inter_dim: 512, patch_size: 4, n_blocks: 2, max_length: 400 }),
    optimizer: { use: 'adamw', lr: 1e-3 },
  };
  const registry = new Registry(builtins);
  const bctx = { recipe, recipeDir: '/', seed: 0, log: quiet };
  const { model, tokenizer, imageProcessor } = await buildComponents(recipe, registry, bctx);
  const { optimizer } = await buildOptimizer(recipe, registry, bctx, model);
  const images = await Promise.all([0, 1, 2].map((k) => headTinyPng(k)));
  const prefixLen = assistantPrefixLength(tokenizer);
  const rows = await Promise.all(
    [0, 1].map((i) =>
      prepareChatSample({ id: `s${i}`, image: images[0], question: '', answer: '', turns: [{ user: 'What are these?', assistant: 'Four pictures.' }], images: [images[0], images[1], images[2], images[i]] }, tokenizer, imageProcessor, { imageTokenLength: model.numImageTokens, maxImagesPerExample: 4, prefixLen }),
    ),
  );
  const tilesPerRow = placeholderTiles({ imagesPerRow: 4, maxTiles: imageProcessor.maxTiles!, imageTokens: model.numImageTokens, maxLength: model.maxLength });
  assert.equal(imageProcessor.maxTiles, 5);
  assert.deepEqual(rows.map((r) => r.tileCount), [tilesPerRow, tilesPerRow], 'each row has the most tiles the estimate assumes');
  const host = collateChat(rows, { maxLength: model.maxLength, padTokenId: tokenizer.padTokenId, imageSize: imageProcessor.size });
  assert.equal(host.batchSize, 2, `rows of ${rows.map((r) => r.inputIds.length)} tokens fit max_length ${model.maxLength}`);
  for (const checkpoint of [false, true]) {
    await timedStep(model, optimizer, host, { maxGradNorm: 0, timeForward: false, checkpoint });
    const prof = await tf.profile(async () => void (await timedStep(model, optimizer, host, { maxGradNorm: 0, timeForward: false, checkpoint })));
    const { estimate } = trainingMemory(model, optimizer, { batchSize: 2, checkpoint, backend: 'wasm', tilesPerRow });
    const oneImage = trainingMemory(model, optimizer, { batchSize: 2, checkpoint, backend: 'wasm' }).estimate;
    const ratio = prof.peakBytes / estimate.total;
    assert.ok(ratio > 0.75 && ratio < 1.25, `checkpoint ${checkpoint}: measured ${prof.peakBytes} vs estimated ${estimate.total} (ratio ${ratio.toFixed(2)}; one image a row: ${oneImage.total})`);
    assert.ok(prof.peakBytes / oneImage.total > 1.4, `one image a row (the estimate before) underestimates this batch: ${prof.peakBytes} vs ${oneImage.total}`);
  }
  optimizer.dispose();
  model.dispose();
});
