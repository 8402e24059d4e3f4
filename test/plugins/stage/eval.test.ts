// The eval stage and model-folder resolution, without training: evaluators registered here return
// known results; the stage must write eval/results.json + results.md, log the table and fill
// ctx.evalResults; a run directory resolves to model/, the latest checkpoint, or the newest step;
// loadModel builds the tokenizer and image processor from the folder's sidecar / files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRegistry } from '../../../core/registry.ts';
import { definePlugin } from '../../../core/plugin.ts';
import { UserError } from '../../../core/errors.ts';
import { componentEntries, loadModel, resolveModelFolder, readLatestPointer } from '../../../core/load-model.ts';
import { useTestBackend } from '../../helpers/backend.ts';
import vision from '../../../plugins/vision/index.ts';
import projector from '../../../plugins/projector/index.ts';
import decoder from '../../../plugins/decoder/index.ts';
import tokenizers from '../../../plugins/tokenizer/index.ts';
import imageProcessors from '../../../plugins/image-processor/index.ts';
import evalStage, { resultsMarkdown, runEvaluators } from '../../../plugins/stage/eval.ts';
import type { Dataset, EvalResult, RunContext } from '../../../core/types.ts';
import { DATA, FIXTURES, needsShared } from '../../helpers/shared.ts';

const fixed = definePlugin({
  kind: 'evaluator',
  name: 'fixed',
  description: 'test evaluator: accuracy = option value',
  options: { type: 'object', additionalProperties: false, properties: { value: { type: 'number' }, data: { type: 'string', enum: ['val', 'eval'], default: 'eval' } } } as const,
  create(o) {
    return {
      name: 'fixed',
      data: o.data,
      async evaluate(_ctx: RunContext, ds: Dataset): Promise<EvalResult> {
        return { evaluator: 'fixed', dataset: ds.name, metrics: { accuracy: o.value ?? 0, n: 10 }, breakdown: { math: { accuracy: 0.5, n: 4 }, science: { accuracy: 1, n: 6 } } };
      },
    };
  },
});

function ds(name: string): Dataset {
  return { name, size: async () => 0, async *samples() {} };
}

function context(runDir: string, evaluators: unknown[], lines: string[]): RunContext {
  const metrics: Record<string, unknown>[] = [];
  return {
    recipe: { eval: { evaluators } },
    recipePath: join(runDir, 'recipe.yaml'),
    recipeDir: runDir,
    runDir,
    backend: 'cpu',
    registry: createRegistry([fixed]),
    log: { info: (m) => lines.push(m), warn: (m) => lines.push('warning: ' + m), debug() {} },
    signal: new AbortController().signal,
    seed: 0,
    datasets: { train: [], val: [ds('val-set')], eval: [ds('test-a'), ds('test-b')] },
    metrics: (r) => void metrics.push(r),
    evalResults: [],
    artifacts: {},
    facts: {},
    flags: {},
  };
}

test('eval stage: results.json, results.md, printed table, ctx.evalResults', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vlm-eval-'));
  try {
    const lines: string[] = [];
    const ctx = context(dir, [{ use: 'fixed', value: 0.75 }, { use: 'fixed', value: 0.125, data: 'val' }], lines);
    const registry = createRegistry([fixed, evalStage]);
    ctx.registry = registry;
    const stage = await registry.create('stage', { use: 'eval' }, { recipe: ctx.recipe, recipeDir: dir, yamlPath: 'stages[0]', seed: 0, log: ctx.log });
    await stage.run(ctx, () => {});
    const json = JSON.parse(readFileSync(join(dir, 'eval', 'results.json'), 'utf8'));
    assert.deepEqual(
      json.results.map((r: EvalResult) => [r.dataset, r.metrics.accuracy]),
      [['test-a', 0.75], ['test-b', 0.75], ['val-set', 0.125]],
    );
    assert.equal(ctx.evalResults.length, 3);
    const md = readFileSync(join(dir, 'eval', 'results.md'), 'utf8');
    assert.ok(md.includes('| fixed | test-a | accuracy | 0.7500 |'), md);
    assert.ok(md.includes('| fixed | val-set | accuracy | 0.1250 |'));
    assert.ok(md.includes('| fixed | val-set | n | 10 |'));
    assert.ok(md.includes('| math | 0.5000 | 4 |'));
    assert.ok(lines.some((l) => l === '| fixed | test-b | accuracy | 0.7500 |'), 'the table is printed');
    assert.equal(ctx.artifacts.eval, 'eval/results.md');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an evaluator on an empty data list is a user error naming the YAML path', async () => {
  const ctx = context('/nonexistent', [{ use: 'fixed', value: 1 }], []);
  ctx.datasets.eval = [];
  await assert.rejects(runEvaluators(ctx), (e: unknown) => e instanceof UserError && e.where.yamlPath === 'eval.evaluators[0]' && /data\.eval/.test(e.message));
});

test('results markdown with no breakdown and no results', () => {
  assert.equal(resultsMarkdown([]), '| evaluator | dataset | metric | value |\n|---|---|---|---|\n');
  const md = resultsMarkdown([{ evaluator: 'val-loss', dataset: 'v', metrics: { loss: 1.23456, tokens: 100 } }]);
  assert.equal(md, '| evaluator | dataset | metric | value |\n|---|---|---|---|\n| val-loss | v | loss | 1.2346 |\n| val-loss | v | tokens | 100 |\n');
  // rates keep their decimals even when whole; counts are integers
  const mc = resultsMarkdown([{ evaluator: 'multiple-choice', dataset: 'd', metrics: { accuracy: 1, unparseable: 0, n: 3 } }]);
  assert.ok(mc.includes('| accuracy | 1.0000 |') && mc.includes('| unparseable | 0 |') && mc.includes('| n | 3 |'), mc);
});

test('--model resolution: model folder, run dir (model/, checkpoints/latest, newest step), errors', needsShared('fixtures', 'nanovlm', 'tiny'), async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vlm-run-'));
  const put = (folder: string) => {
    mkdirSync(folder, { recursive: true });
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(FIXTURES, 'tiny', f), join(folder, f));
  };
  try {
    await assert.rejects(resolveModelFolder(dir), (e: unknown) => e instanceof UserError && /no model found/.test(e.message));
    put(join(dir, 'checkpoints', 'step-5'));
    put(join(dir, 'checkpoints', 'step-20'));
    // no pointer: the newest step
    assert.equal(await resolveModelFolder(dir), join(dir, 'checkpoints', 'step-20'));
    writeFileSync(join(dir, 'checkpoints', 'latest'), 'step-5\n');
    assert.equal(readLatestPointer(dir), join(dir, 'checkpoints', 'step-5'));
    assert.equal(await resolveModelFolder(dir), join(dir, 'checkpoints', 'step-5'));
    put(join(dir, 'model'));
    assert.equal(await resolveModelFolder(dir), join(dir, 'model'));
    assert.equal(await resolveModelFolder(join(dir, 'checkpoints', 'step-20')), join(dir, 'checkpoints', 'step-20'));
    await assert.rejects(resolveModelFolder(join(dir, 'nope')), UserError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('loadModel: sidecar tokenizer/image processor; a folder tokenizer.json replaces the hf source; plain nanoVLM folder', needsShared('fixtures', 'nanovlm', 'tiny'), async () => {
  await useTestBackend();
  const registry = createRegistry([...vision, ...projector, ...decoder, ...tokenizers, ...imageProcessors]);
  const dir = mkdtempSync(join(tmpdir(), 'vlm-load-'));
  const section = JSON.parse(readFileSync(join(FIXTURES, 'tiny', 'config.json'), 'utf8'));
  try {
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(FIXTURES, 'tiny', f), join(dir, f));
    // 1. sidecar with the bytes tokenizer
    const model = {
      vision: { use: 'siglip-vit', hidden_dim: 32, inter_dim: 64, patch_size: 8, image_size: 32, n_heads: 4, n_blocks: 2 },
      projector: { use: 'pixel-shuffle', factor: 2 },
      decoder: { use: 'llama', hidden_dim: 48, inter_dim: 96, n_heads: 6, n_kv_heads: 2, n_blocks: 2, vocab_size: 300, max_length: 12 },
      tokenizer: { use: 'bytes' },
      image_processor: { use: 'resize' },
    };
    writeFileSync(join(dir, 'nanovlm-ts.json'), JSON.stringify({ format_version: 1, model }));
    const a = await loadModel(dir, { registry });
    assert.equal(a.folder, dir);
    assert.equal(a.tokenizer.vocabSize, 257);
    assert.equal(a.imageProcessor.size, 32); // from the vision encoder
    assert.equal(a.model.decoder.vocabSize, section.lm_vocab_size);
    a.model.dispose();
    // 2. sidecar naming a Hub tokenizer, but the folder has tokenizer.json: read from the folder (no network)
    const smol = join(DATA, 'tokenizers', 'smollm2');
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) copyFileSync(join(smol, f), join(dir, f));
    writeFileSync(join(dir, 'nanovlm-ts.json'), JSON.stringify({ format_version: 1, model: { ...model, tokenizer: { use: 'hf', from: 'HuggingFaceTB/cosmo2-tokenizer' } } }));
    assert.deepEqual(componentEntries(dir, registry).tokenizer, { use: 'hf', from: dir });
    const b = await loadModel(dir, { registry });
    assert.equal(b.tokenizer.vocabSize, 49152);
    b.model.dispose();
    // 3. a plain nanoVLM folder (no sidecar): hf from the folder, resize at vit_img_size
    rmSync(join(dir, 'nanovlm-ts.json'));
    assert.deepEqual(componentEntries(dir, registry), { tokenizer: { use: 'hf', from: dir }, imageProcessor: { use: 'resize', size: 32 } });
    const c = await loadModel(dir, { registry });
    assert.equal(c.imageProcessor.size, 32);
    c.model.dispose();
    // 4. broken sidecar JSON: a UserError naming the file
    writeFileSync(join(dir, 'nanovlm-ts.json'), '{ nope');
    await assert.rejects(loadModel(dir, { registry }), (e: unknown) => e instanceof UserError && e.message.includes('nanovlm-ts.json'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('library API (core/index.ts): createRegistry + loadModel + generateText on a model folder', needsShared('fixtures', 'nanovlm', 'tiny'), async () => {
  await useTestBackend();
  const lib = await import('../../../core/index.ts');
  const builtins = (await import('../../../plugins/index.ts')).default;
  const dir = mkdtempSync(join(tmpdir(), 'vlm-lib-'));
  try {
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(FIXTURES, 'tiny', f), join(dir, f));
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(
      join(dir, 'nanovlm-ts.json'),
      JSON.stringify({
        format_version: 1,
        model: {
          vision: { use: 'siglip-vit', hidden_dim: 32, inter_dim: 64, patch_size: 8, image_size: 32, n_heads: 4, n_blocks: 2 },
          projector: { use: 'pixel-shuffle', factor: cfg.mp_pixel_shuffle_factor },
          decoder: { use: 'llama', hidden_dim: 48, inter_dim: 96, n_heads: 6, n_kv_heads: 2, n_blocks: 2, vocab_size: cfg.lm_vocab_size, max_length: 12 },
          tokenizer: { use: 'bytes' },
          image_processor: { use: 'resize' },
        },
      }),
    );
    const { model, tokenizer, imageProcessor } = await lib.loadModel(dir, { registry: lib.createRegistry(builtins) });
    try {
      const png = new Uint8Array(readFileSync(join(DATA, 'images', 'chelsea.png')));
      const items = [
        { prompt: 'Question: What is this? Answer:', image: png },
        { prompt: 'Question: Is it a cat? Answer:', image: png },
      ];
      const texts = await lib.generateText(model, tokenizer, imageProcessor, items, { maxNewTokens: 5, stopAtEos: false });
      // the same as token-level generation on the prepared batch, decoded
      const batch = await lib.preparePrompts(tokenizer, imageProcessor, items);
      const tokens = await lib.generateBatch(model, batch, { maxNewTokens: 5, stopAtEos: false });
      assert.deepEqual(texts, tokens.map((t) => tokenizer.decode(t, { skipSpecialTokens: true })));
      assert.equal(tokens[0].length, 5);
    } finally {
      model.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('eval.max_samples limits every evaluator whose own max_samples is null; an evaluator\'s own limit wins', async () => {
  const limited = definePlugin({
    kind: 'evaluator',
    name: 'limited',
    description: 'test evaluator: reports the max_samples it was built with',
    options: { type: 'object', additionalProperties: false, properties: { max_samples: { type: ['integer', 'null'], default: null } } } as const,
    create(o) {
      return {
        name: 'limited',
        async evaluate(_ctx: RunContext, d: Dataset): Promise<EvalResult> {
          return { evaluator: 'limited', dataset: d.name, metrics: { limit: o.max_samples ?? -1 } };
        },
      };
    },
  });
  const dir = mkdtempSync(join(tmpdir(), 'vlm-eval-max-'));
  try {
    const ctx = context(dir, [{ use: 'limited', max_samples: null }, { use: 'limited', max_samples: 7 }], []);
    ctx.registry = createRegistry([limited]);
    ctx.datasets!.eval = [ds('test-a')];
    (ctx.recipe as { eval: Record<string, unknown> }).eval.max_samples = 3;
    const withStageLimit = await runEvaluators(ctx);
    assert.deepEqual(withStageLimit.map((r) => r.metrics.limit), [3, 7]);
    (ctx.recipe as { eval: Record<string, unknown> }).eval.max_samples = null;
    const without = await runEvaluators(ctx);
    assert.deepEqual(without.map((r) => r.metrics.limit), [-1, 7]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
