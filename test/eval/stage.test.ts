// The eval stage and model-folder resolution, without training: evaluators registered here return
// known results; the stage must write eval/results.json + results.md, log the table and fill
// ctx.evalResults; a run directory resolves to model/, the latest checkpoint, or the newest step.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRegistry } from '../../core/registry.ts';
import { definePlugin } from '../../core/plugin.ts';
import { UserError } from '../../core/errors.ts';
import { resolveModelFolder, readLatestPointer } from '../../core/load-model.ts';
import evalStage, { resultsMarkdown, runEvaluators } from '../../plugins/stage/eval.ts';
import type { Dataset, EvalResult, RunContext } from '../../core/types.ts';
import { FIXTURES, needsShared } from '../helpers/shared.ts';

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
