// The multiple-choice evaluator and rows without `choices` (issue 20, item 9): they are skipped and
// counted (`no_choices`), never scored as unparseable; a dataset with none is refused. A folder row
// may give its answer as the option's text.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { Registry } from '../../../core/registry.ts';
import type { Dataset, RunContext } from '../../../core/types.ts';
import { buildModel } from '../../../core/weights/model-folder.ts';
import type { VisionLanguageModel } from '../../../core/model/vlm.ts';
import builtins from '../../../plugins/index.ts';
import { useTestBackend } from '../../helpers/backend.ts';
import { TINY_MODEL, writeFolderDataset } from '../../helpers/tiny-run.ts';

const registry = new Registry(builtins);
const quiet = { info() {}, warn() {}, debug() {} };
const root = mkdtempSync(join(tmpdir(), 'vlm-mc-rows-'));
let model: VisionLanguageModel;
let ctx: RunContext;
const lines: string[] = [];

before(async () => {
  await useTestBackend();
  const base = { recipe: { model: TINY_MODEL }, recipeDir: root, seed: 0, log: quiet };
  model = await buildModel(TINY_MODEL as any, registry, base);
  const built = { vision: model.vision, projector: model.projector, decoder: model.decoder };
  const tokenizer = await registry.create('tokenizer', TINY_MODEL.tokenizer, { ...base, yamlPath: 'model.tokenizer', built });
  const imageProcessor = await registry.create('image-processor', TINY_MODEL.image_processor, { ...base, yamlPath: 'model.image_processor', built });
  ctx = {
    recipe: {}, recipePath: '', recipeDir: root, runDir: root, backend: tf.getBackend(), registry,
    log: { info: (m) => lines.push(m), warn: (m) => lines.push(m), debug() {} },
    signal: new AbortController().signal, seed: 0, model, tokenizer, imageProcessor,
    datasets: { train: [], val: [], eval: [] }, metrics() {}, evalResults: [], artifacts: {}, facts: {}, flags: {},
  };
  await writeFolderDataset(join(root, 'mixed')); // 4 rows with choices
  // + 3 open rows without choices, and one whose answer is the option's text
  const open = [0, 1, 2].map((i) => JSON.stringify({ image: `${i}.png`, question: 'What colour?', answer: 'red' }));
  const text = JSON.stringify({ image: '1.png', question: 'What colour?\nOptions: A: red, B: green', choices: ['red', 'green'], answer: 'green' });
  writeFileSync(join(root, 'mixed', 'data.jsonl'), [...(await import('node:fs')).readFileSync(join(root, 'mixed', 'data.jsonl'), 'utf8').trim().split('\n'), ...open, text].join('\n') + '\n');
  await writeFolderDataset(join(root, 'open'));
  writeFileSync(join(root, 'open', 'data.jsonl'), open.join('\n') + '\n');
});

after(() => {
  model?.dispose();
  rmSync(root, { recursive: true, force: true });
});

const dataset = (path: string): Promise<Dataset> => registry.create('dataset', { use: 'folder', path }, { recipe: {}, recipeDir: root, yamlPath: 'data.eval[0]', seed: 0, log: quiet, role: 'eval' });

test('rows without choices are skipped and counted, not unparseable; an option-text answer becomes its letter', async () => {
  const ds = await dataset('mixed');
  const texts: string[] = [];
  for await (const s of ds.samples()) if (s.choices?.length === 2) texts.push(s.answer);
  assert.deepEqual(texts, ['B']);
  const ev = await registry.create('evaluator', { use: 'multiple-choice', batch_size: 4, max_new_tokens: 2 }, { recipe: {}, recipeDir: root, yamlPath: 'eval.evaluators[0]', seed: 0, log: quiet });
  const r = await ev.evaluate(ctx, ds);
  assert.equal(r.metrics.n, 5); // the 4 + 1 rows with choices
  assert.equal(r.metrics.no_choices, 3);
  assert.ok(r.metrics.unparseable <= 5);
  assert.ok(lines.some((l) => /3 samples without choices were skipped/.test(l)));
});

test('a dataset with no multiple-choice row is refused', async () => {
  const ev = await registry.create('evaluator', { use: 'multiple-choice', batch_size: 4, max_new_tokens: 2 }, { recipe: {}, recipeDir: root, yamlPath: 'eval.evaluators[0]', seed: 0, log: quiet });
  await assert.rejects(ev.evaluate(ctx, await dataset('open')), /dataset open has no multiple-choice rows: none of the 3 samples read has `choices`/);
});
