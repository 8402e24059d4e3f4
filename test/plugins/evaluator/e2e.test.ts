// End to end on real data: a tiny nanoVLM is trained briefly (a few AdamW steps in this test) to
// answer "A" to every MMStar-style question, then the multiple-choice evaluator runs on all 360
// questions of ../shared/data/digits/mmstar-style.parquet through the eval stage. The correct letter
// is A for exactly 90 of them, so the scores are known exactly: accuracy = accuracy_strict = 0.25,
// nothing unparseable. The trained model is then saved and used by `vlm generate` and `vlm eval`.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../../helpers/backend.ts';
import { installFastKernels } from '../../../core/kernels/index.ts';
import { DATA, needsShared } from '../../helpers/shared.ts';
import { createRegistry } from '../../../core/registry.ts';
import { buildModel, saveCheckpoint } from '../../../core/weights/model-folder.ts';
import { main as generateMain } from '../../../core/commands/generate.ts';
import { main as evalMain } from '../../../core/commands/eval.ts';
import type { CommandEnv } from '../../../core/cli.ts';
import type { Plugin } from '../../../core/plugin.ts';
import shapes from '../../../plugins/dataset/synthetic-shapes.ts';
import mmstar from '../../../plugins/dataset/mmstar.ts';
import { collate, encodeSample, toTensors } from '../../../core/data/collator.ts';
import { mmstarPrompt, vqaPrompt } from '../../../core/data/prompt.ts';
import type { VisionLanguageModel } from '../../../core/model/vlm.ts';
import type { Dataset, EvalResult, ImageProcessor, Optimizer, RunContext, Sample, Tokenizer } from '../../../core/types.ts';
import vision from '../../../plugins/vision/index.ts';
import projector from '../../../plugins/projector/index.ts';
import decoder from '../../../plugins/decoder/index.ts';
import tokenizers from '../../../plugins/tokenizer/index.ts';
import imageProcessors from '../../../plugins/image-processor/index.ts';
import optimizers from '../../../plugins/optimizer/index.ts';
import evaluators from '../../../plugins/evaluator/index.ts';
import evalStage from '../../../plugins/stage/eval.ts';
import loadStage from '../../../plugins/stage/load.ts';
import { lossAndGrads } from '../../../core/train/grads.ts';

// the pure-JS cpu backend takes ~70 s for one backward pass of this model: train only on wasm
const skip =
  process.env.VLM_TEST_BACKEND === 'cpu'
    ? { skip: 'trains a model: needs the wasm backend (the cpu backend takes ~70 s per training step)' }
    : needsShared('data', 'digits', 'mmstar-style.parquet');
const PLUGINS: Plugin[] = [...vision, ...projector, ...decoder, ...tokenizers, ...imageProcessors, ...optimizers, ...evaluators, loadStage, evalStage, shapes, mmstar];
const registry = createRegistry(PLUGINS);
const quiet = { info() {}, warn() {}, debug() {} };
const MODEL_SECTION = {
  vision: { use: 'siglip-vit', hidden_dim: 32, inter_dim: 64, patch_size: 8, image_size: 32, n_heads: 4, n_blocks: 2 },
  projector: { use: 'pixel-shuffle', factor: 2 },
  decoder: { use: 'llama', hidden_dim: 48, inter_dim: 96, n_heads: 6, n_kv_heads: 2, n_blocks: 2, vocab_size: 257, max_length: 112 },
  tokenizer: { use: 'bytes' },
  image_processor: { use: 'resize' },
};

const PARQUET = join(DATA, 'digits', 'mmstar-style.parquet');
let rows: Sample[];
let mmstarDs: Dataset;
let model: VisionLanguageModel;
let tokenizer: Tokenizer;
let imageProcessor: ImageProcessor;
let dir: string;

/** samples as a Dataset */
function listDataset(samples: Sample[]): Dataset {
  return {
    name: 'list',
    size: async () => samples.length,
    async *samples() {
      yield* samples;
    },
  };
}

before(async () => {
  if (skip.skip) return;
  installFastKernels(await useTestBackend()); // the runtime does this; the wasm gather gradient needs it
  // the real file through the mmstar dataset plugin
  mmstarDs = await registry.create('dataset', { use: 'mmstar', path: PARQUET }, { recipe: {}, recipeDir: '/', yamlPath: 'data.eval[0]', seed: 0, log: quiet, role: 'eval' });
  rows = [];
  for await (const s of mmstarDs.samples()) rows.push(s);
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
    const { loss, grads } = lossAndGrads(model, t);
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
    datasets: { train: [], val: [listDataset(rows.slice(0, 40))], eval: [mmstarDs] },
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
  assert.equal(r.dataset, mmstarDs.name);
  assert.ok(readFileSync(join(dir, 'eval', 'results.md'), 'utf8').includes(`| multiple-choice | ${mmstarDs.name} | accuracy | 0.2500 |`));
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
  const r = await em.evaluate(ctx, listDataset(open.map(({ choices, ...s }) => s)));
  assert.equal(r.metrics.n, 16);
  assert.deepEqual(r.metrics, { exact_match: 4 / 16, empty: 0, n: 16 });
  // unusable samples are skipped and counted (a dataset's `problem`, an undecodable image)
  const bad = [{ ...rows[0], id: 'bad 1', problem: 'image file not found: x.png' }, { ...rows[1], id: 'bad 2', image: new Uint8Array([1, 2, 3]) }];
  const mc = await registry.create('evaluator', { use: 'multiple-choice' }, { recipe: {}, recipeDir: dir, yamlPath: 'e', seed: 0, log: quiet });
  const withBad = await mc.evaluate(ctx, listDataset([...rows.slice(0, 4), ...bad]));
  assert.equal(withBad.metrics.n, 4);
  assert.equal(withBad.metrics.skipped, 2);
  const vl = await (await ev({ batch_size: 8 })).evaluate(ctx, listDataset([...rows.slice(0, 4), ...bad]));
  assert.equal(vl.metrics.n, 4);
  assert.equal(vl.metrics.skipped, 2);
});

/** a CLI environment writing into strings */
function cliEnv(): { env: CommandEnv; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const stdout = { write: (x: string) => void (out += x) };
  const stderr = { write: (x: string) => void (err += x) };
  const env: CommandEnv = {
    registry: createRegistry(PLUGINS),
    builtins: PLUGINS,
    debug: false,
    stdout,
    stderr,
    log: { info: (m) => stderr.write(m + '\n'), warn: (m) => stderr.write(m + '\n'), debug() {} },
  };
  return { env, out: () => out, err: () => err };
}

test('vlm generate on the saved run: nanoVLM-style output, streaming, reproducible sampling', skip, async () => {
  const runDir = join(dir, 'run');
  await saveCheckpoint(model, join(runDir, 'checkpoints', 'step-40'), { format_version: 1, model: MODEL_SECTION });
  writeFileSync(join(runDir, 'checkpoints', 'latest'), 'step-40\n');
  const image = join(DATA, 'images', 'chelsea.png');
  const backend = tf.getBackend();
  const greedy = cliEnv();
  const code = await generateMain(['--model', runDir, '--image', image, '--prompt', 'What is this?', '--num', '2', '--max-new-tokens', '4', '--greedy', '--backend', backend], greedy.env);
  assert.equal(code, 0);
  // the model was trained to answer "A" (then eos) to "Question: ... Answer:"
  assert.equal(
    greedy.out(),
    `Loading weights from: ${join(runDir, 'checkpoints', 'step-40')}\n\nInput:\n  What is this?\n\nOutputs:\n  >> Generation 1: A\n  >> Generation 2: A\n`,
  );
  const sample = async (seed: string) => {
    const c = cliEnv();
    assert.equal(await generateMain(['--model', runDir, '--image', image, '--num', '3', '--max-new-tokens', '6', '--temperature', '3', '--top-k', '50', '--seed', seed, '--backend', backend], c.env), 0);
    return c.out().split('Outputs:')[1];
  };
  const a = await sample('7');
  assert.equal(await sample('7'), a);
  assert.equal(a.trim().split('\n').length, 3);
  // user mistakes are UserErrors
  await assert.rejects(generateMain(['--model', runDir], cliEnv().env), /--image is required/);
  await assert.rejects(generateMain(['--model', runDir, '--image', image, '--greedy', '--top-p', '0.5'], cliEnv().env), /cannot be combined/);
  await assert.rejects(generateMain(['--model', runDir, '--image', image, '--top-p', '2'], cliEnv().env), /--top-p 2/);
  // nanoVLM HEAD's sampling order with its defaults: runs, reproducible; misuse is a UserError
  const head = async () => {
    const c = cliEnv();
    assert.equal(await generateMain(['--model', runDir, '--image', image, '--num', '2', '--max-new-tokens', '4', '--sampling', 'nanovlm-head', '--seed', '3', '--backend', backend], c.env), 0);
    return c.out();
  };
  assert.equal(await head(), await head());
  await assert.rejects(generateMain(['--model', runDir, '--image', image, '--sampling', 'top'], cliEnv().env), /--sampling top: expected hf or nanovlm-head/);
  await assert.rejects(generateMain(['--model', runDir, '--image', image, '--greedy', '--sampling', 'nanovlm-head'], cliEnv().env), /cannot be combined/);
});

test('vlm eval --model <run dir> <recipe>: load + eval stages, results in a new run directory', skip, async () => {
  const runDir = join(dir, 'run'); // saved by the previous test
  assert.ok(existsSync(join(runDir, 'checkpoints', 'latest')));
  const recipe = join(dir, 'eval-recipe.yaml');
  writeFileSync(
    recipe,
    [
      'name: e2e-eval',
      `runtime: { backend: ${tf.getBackend()}, seed: 0, out_dir: ${JSON.stringify(join(dir, 'runs'))} }`,
      // no model/optimizer/schedule/stages: --model supplies the model and only eval runs
      'data:',
      '  eval: [ { use: synthetic-shapes, split: test, count: 24, format: multiple-choice, image_size: 32 } ]',
      'eval: { evaluators: [ { use: multiple-choice, batch_size: 12 } ] }',
    ].join('\n') + '\n',
  );
  const out = join(dir, 'eval-out');
  mkdirSync(out, { recursive: true });
  const c = cliEnv();
  const code = await evalMain(['--model', runDir, recipe, 'eval.evaluators[0].max_samples=20', '--out', out], c.env).catch((e) => {
    throw new Error(e.message); // UserErrors: show the messages
  });
  assert.equal(code, 0, c.err());
  const { results } = JSON.parse(readFileSync(join(out, 'eval', 'results.json'), 'utf8')) as { results: EvalResult[] };
  assert.equal(results.length, 1);
  assert.equal(results[0].evaluator, 'multiple-choice');
  assert.equal(results[0].metrics.n, 20); // the override reached the evaluator
  // the model answers "A": its accuracy is the share of questions whose answer is A
  const ds = await registry.create('dataset', { use: 'synthetic-shapes', split: 'test', count: 24, format: 'multiple-choice', image_size: 32 }, { recipe: {}, recipeDir: dir, yamlPath: 'd', seed: 0, log: quiet, role: 'eval' });
  const answers: string[] = [];
  for await (const s of ds.samples()) if (answers.length < 20) answers.push(s.answer);
  assert.equal(results[0].metrics.accuracy, answers.filter((a) => a === 'A').length / 20);
  assert.equal(results[0].metrics.unparseable, 0);
  assert.ok(existsSync(join(out, 'eval', 'results.md')));
  assert.match(c.err(), /\| multiple-choice \| [^|]+ \| accuracy \|/); // the table is printed
});
