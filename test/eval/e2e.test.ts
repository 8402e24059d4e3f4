// End to end on real data: a tiny nanoVLM is trained briefly (a few AdamW steps in this test) to
// answer "A" to every MMStar-style question, then the multiple-choice evaluator runs on all 360
// questions of ../shared/data/digits/mmstar-style.parquet through the eval stage. The correct letter
// is A for exactly 90 of them, so the scores are known exactly: accuracy = accuracy_strict = 0.25,
// nothing unparseable. The trained model is then saved and used by `vlm generate` and `vlm eval`.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { parquetReadObjects } from 'hyparquet';
import { useTestBackend } from '../helpers/backend.ts';
import { installFastKernels } from '../../core/kernels.ts';
import { DATA, needsShared } from '../helpers/shared.ts';
import { createRegistry } from '../../core/registry.ts';
import { buildModel } from '../../core/weights/checkpoint.ts';
import { collate, encodeSample, toTensors } from '../../core/data/collator.ts';
import { mmstarPrompt, vqaPrompt } from '../../core/data/prompt.ts';
import type { VisionLanguageModel } from '../../core/model/vlm.ts';
import type { Dataset, EvalResult, ImageProcessor, Optimizer, RunContext, Sample, Tokenizer } from '../../core/types.ts';
import vision from '../../plugins/vision/index.ts';
import projector from '../../plugins/projector/index.ts';
import decoder from '../../plugins/decoder/index.ts';
import tokenizers from '../../plugins/tokenizer/index.ts';
import imageProcessors from '../../plugins/image-processor/index.ts';
import optimizers from '../../plugins/optimizer/index.ts';
import evaluators from '../../plugins/evaluator/index.ts';
import evalStage from '../../plugins/stage/eval.ts';

const skip = needsShared('data', 'digits', 'mmstar-style.parquet');
const registry = createRegistry([...vision, ...projector, ...decoder, ...tokenizers, ...imageProcessors, ...optimizers, ...evaluators, evalStage]);
const quiet = { info() {}, warn() {}, debug() {} };
const MODEL_SECTION = {
  vision: { use: 'siglip-vit', hidden_dim: 32, inter_dim: 64, patch_size: 8, image_size: 32, n_heads: 4, n_blocks: 2 },
  projector: { use: 'pixel-shuffle', factor: 2 },
  decoder: { use: 'llama', hidden_dim: 48, inter_dim: 96, n_heads: 6, n_kv_heads: 2, n_blocks: 2, vocab_size: 257, max_length: 112 },
  tokenizer: { use: 'bytes' },
  image_processor: { use: 'resize' },
};

let rows: Sample[];
let model: VisionLanguageModel;
let tokenizer: Tokenizer;
let imageProcessor: ImageProcessor;
let dir: string;

/** the MMStar-layout parquet as a Dataset (read directly, so this test needs no dataset plugin) */
function mmstarStyle(samples: Sample[]): Dataset {
  return {
    name: 'mmstar-style',
    size: async () => samples.length,
    async *samples() {
      yield* samples;
    },
  };
}

before(async () => {
  if (skip.skip) return;
  installFastKernels(await useTestBackend()); // the runtime does this; the wasm gather gradient needs it
  const buf = readFileSync(join(DATA, 'digits', 'mmstar-style.parquet'));
  const objs = await parquetReadObjects({ file: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer, utf8: false });
  rows = objs.map((r: any) => ({ id: `mmstar-style.parquet row ${r.index}`, image: r.image.bytes, question: r.question, answer: r.answer, category: r.category, l2Category: r.l2_category }));
  dir = mkdtempSync(join(tmpdir(), 'vlm-e2e-'));

  const base = { recipe: { model: MODEL_SECTION }, recipeDir: dir, seed: 0, log: quiet };
  model = await buildModel(MODEL_SECTION as any, registry, base);
  const built = { vision: model.vision, projector: model.projector, decoder: model.decoder };
  tokenizer = await registry.create('tokenizer', MODEL_SECTION.tokenizer, { ...base, yamlPath: 'model.tokenizer', built });
  imageProcessor = await registry.create('image-processor', MODEL_SECTION.image_processor, { ...base, yamlPath: 'model.image_processor', built });
  const opt: Optimizer = await registry.create('optimizer', { use: 'adamw', lr: 3e-3, weight_decay: 0 }, { ...base, yamlPath: 'optimizer', built });

  // train: the first 64 rows, in the MMStar prompt and the VQA prompt (for exact-match), answer "A"
  // whatever the question (a constant the model learns in a few steps)
  const encoded = [];
  for (const [i, s] of rows.slice(0, 64).entries()) {
    const prompt = i % 2 ? vqaPrompt(s.question) : mmstarPrompt(s.question);
    encoded.push({ id: s.id, pixels: await imageProcessor.process(s.image, s.id), ...encodeSample(tokenizer, prompt, 'A') });
  }
  for (let step = 0; step < 40; step++) {
    const i = (step * 8) % encoded.length;
    const batch = collate(encoded.slice(i, i + 8), { maxLength: model.maxLength, padTokenId: tokenizer.padTokenId, imageSize: imageProcessor.size });
    const t = toTensors(batch);
    const { loss, grads } = model.lossAndGrads(t);
    opt.step(grads, opt.groups.map((g) => g.lr));
    tf.dispose([loss, ...grads.values(), ...Object.values(t)]);
  }
  opt.dispose();
});

after(() => {
  model?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function runContext(runDir: string, evaluatorEntries: unknown[], lines: string[] = []): RunContext {
  return {
    recipe: { eval: { evaluators: evaluatorEntries } },
    recipePath: join(runDir, 'recipe.yaml'),
    recipeDir: runDir,
    runDir,
    backend: tf.getBackend(),
    registry,
    log: { info: (m) => lines.push(m), warn: (m) => lines.push(m), debug() {} },
    signal: new AbortController().signal,
    seed: 0,
    model,
    tokenizer,
    imageProcessor,
    datasets: { train: [], val: [mmstarStyle(rows.slice(0, 40))], eval: [mmstarStyle(rows)] },
    metrics() {},
    evalResults: [],
    artifacts: {},
    facts: {},
    flags: {},
  };
}

test('multiple-choice on all 360 digits questions through the eval stage: known scores', skip, async () => {
  const lines: string[] = [];
  const ctx = runContext(dir, [{ use: 'multiple-choice', batch_size: 32 }], lines);
  const stage = await registry.create('stage', { use: 'eval' }, { recipe: ctx.recipe, recipeDir: dir, yamlPath: 'stages[0]', seed: 0, log: quiet });
  await stage.run(ctx, () => {});
  const [r] = ctx.evalResults;
  const nA = rows.filter((s) => s.answer === 'A').length;
  assert.equal(nA, 90);
  assert.deepEqual(r.metrics, { accuracy: nA / 360, accuracy_strict: nA / 360, unparseable: 0, ambiguous: 0, n: 360 });
  assert.deepEqual(r.breakdown, { 'fine-grained perception': { accuracy: 0.25, accuracy_strict: 0.25, unparseable: 0, n: 360 } });
  const json = JSON.parse(readFileSync(join(dir, 'eval', 'results.json'), 'utf8')) as { results: EvalResult[] };
  assert.deepEqual(json.results, ctx.evalResults);
  assert.match(readFileSync(join(dir, 'eval', 'results.md'), 'utf8'), /\| multiple-choice \| mmstar-style \| accuracy \| 0\.2500 \|/);
});

test('val-loss: token-weighted, so independent of the batch size; exact-match on open answers', skip, async () => {
  const ctx = runContext(dir, []);
  const ev = (entry: Record<string, unknown>) =>
    registry.create('evaluator', { use: 'val-loss', data: 'val', ...entry }, { recipe: {}, recipeDir: dir, yamlPath: 'e', seed: 0, log: quiet });
  const a = await (await ev({ batch_size: 40 })).evaluate(ctx, ctx.datasets.val[0]);
  const b = await (await ev({ batch_size: 7 })).evaluate(ctx, ctx.datasets.val[0]);
  assert.equal(a.metrics.n, 40);
  assert.ok(a.metrics.tokens > 40, `tokens ${a.metrics.tokens}`); // answer letter + eos per sample at least
  assert.ok(Math.abs(a.metrics.loss - b.metrics.loss) < 1e-5, `${a.metrics.loss} vs ${b.metrics.loss}`);
  // max_samples
  const c = await (await ev({ batch_size: 8, max_samples: 10 })).evaluate(ctx, ctx.datasets.val[0]);
  assert.equal(c.metrics.n, 10);
  // exact-match: the model answers "A" whatever the question; reference "A" matches, "B" does not
  const em = await registry.create('evaluator', { use: 'exact-match', max_new_tokens: 4 }, { recipe: {}, recipeDir: dir, yamlPath: 'e', seed: 0, log: quiet });
  const open = rows.slice(0, 16).map((s, i) => ({ ...s, question: s.question, answer: i < 4 ? 'A' : 'B' }));
  const r = await em.evaluate(ctx, mmstarStyle(open));
  assert.equal(r.metrics.n, 16);
  assert.deepEqual(r.metrics, { exact_match: 4 / 16, empty: 0, n: 16 });
});
