// The lmms-eval benchmark tasks (plugins/evaluator/tasks): each reads small Parquet files written
// in its Hub layout, formats lmms-eval's prompt rewritten as nanoVLM's wrapper does (checked
// character for character), and `vlm eval <model> --tasks ...` runs them end to end on a tiny
// random model: progress, lmms-eval's results layout, per-sample logs whose scores re-computed
// with core/eval give the reported figures, the Markdown table, the chart, and --compare.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../../helpers/backend.ts';
import { writeParquet, MMSTAR_FIELDS, type Field } from '../../helpers/parquet-writer.ts';
import builtins from '../../../plugins/index.ts';
import { createRegistry } from '../../../core/registry.ts';
import { buildModel, saveCheckpoint } from '../../../core/weights/model-folder.ts';
import { cli } from '../../../core/cli.ts';
import { formatContext } from '../../../plugins/evaluator/tasks/nanovlm-format.ts';
import { renderPrompt, splitFiles, pyCapitalize } from '../../../plugins/evaluator/tasks/task.ts';
import { aggregateMmstar, l2MacroMean } from '../../../plugins/evaluator/tasks/mmstar.ts';
import { mmeScores } from '../../../plugins/evaluator/tasks/mme.ts';
import { vqaAccuracy } from '../../../core/eval/vqa.ts';
import { mmeMatch } from '../../../core/eval/choice.ts';
import { relaxedCorrectness } from '../../../core/eval/relaxed.ts';
import { progressLine, progressReporter } from '../../../core/eval/progress.ts';
import type { Dataset, Evaluator, RunContext, Sample } from '../../../core/types.ts';
import { loadModel } from '../../../core/load-model.ts';
import type { TaskSpec } from '../../../plugins/evaluator/tasks/task.ts';
import { spec as mmstar } from '../../../plugins/evaluator/tasks/mmstar.ts';
import { spec as scienceqa } from '../../../plugins/evaluator/tasks/scienceqa.ts';
import { spec as ai2d } from '../../../plugins/evaluator/tasks/ai2d.ts';
import { spec as textvqa } from '../../../plugins/evaluator/tasks/textvqa.ts';
import { docvqaSpec, infovqaSpec } from '../../../plugins/evaluator/tasks/docvqa.ts';
import { spec as chartqa } from '../../../plugins/evaluator/tasks/chartqa.ts';
import { spec as ocrbench } from '../../../plugins/evaluator/tasks/ocrbench.ts';
import { spec as mme } from '../../../plugins/evaluator/tasks/mme.ts';
import { spec as mmmu } from '../../../plugins/evaluator/tasks/mmmu.ts';

const registry = createRegistry(builtins);
const quiet = { info() {}, warn() {}, debug() {} };
const dir = mkdtempSync(join(tmpdir(), 'vlm-tasks-'));
let png: Uint8Array;
const IMAGE: Field = { name: 'image', kind: 'struct', fields: [{ name: 'bytes', kind: 'binary' }, { name: 'path', kind: 'string' }] };

async function dataset(use: string, path: string): Promise<Sample[]> {
  const ds = (await registry.create('dataset', { use, path }, { recipe: {}, recipeDir: dir, yamlPath: 'data.eval[0]', seed: 0, log: quiet, role: 'eval' })) as Dataset;
  const out: Sample[] = [];
  for await (const s of ds.samples()) out.push(s);
  return out;
}
const SPECS: Record<string, TaskSpec> = { mmstar, scienceqa, ai2d, textvqa, docvqa: docvqaSpec, infovqa: infovqaSpec, chartqa, ocrbench, mme, mmmu };
/** the user text a task asks, as nanoVLM's wrapper formats it */
function asked(task: string, s: Sample): string {
  return formatContext(SPECS[task].context(s), SPECS[task].lmmsTask);
}

before(async () => {
  png = new Uint8Array(await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 200, g: 30, b: 30 } } }).png().toBuffer());
});

test('TextVQA: Hub layout, capitalized question, nanoVLM TextVQA instructions, answers kept for the metric', async () => {
  const f = join(dir, 'textvqa', 'data', 'validation-00000-of-00001.parquet');
  mkdirSync(join(dir, 'textvqa', 'data'), { recursive: true });
  writeParquet(f, [{ name: 'question_id', kind: 'int64' }, { name: 'question', kind: 'string' }, IMAGE, { name: 'answers', kind: 'list', element: 'string' }], [
    { question_id: 34602, question: 'what is the BRAND of this camera?', image: { bytes: png, path: null }, answers: ['dakota', 'dakota digital', ...Array(8).fill('dakota')] },
  ]);
  const [s] = await dataset('textvqa', join(dir, 'textvqa'));
  assert.deepEqual(s.fields?.answers, ['dakota', 'dakota digital', ...Array(8).fill('dakota')]);
  assert.match(s.id, /question_id 34602/);
  assert.equal(
    asked('textvqa', s),
    'Answer the following question about the image using as few words as possible. Follow these additional instructions:\n' +
      '-Always answer a binary question with Yes or No.\n-When asked what time it is, reply with the time seen in the image.\n' +
      '-Do not put any full stops at the end of the answer.\n-Do not put quotation marks around the answer.\n' +
      '-An answer with one or two words is favorable.\n-Do not apply common sense knowledge. The answer can be found in the image.\n' +
      'Question: What is the brand of this camera?\nAnswer the question using a single word or phrase.',
  );
  assert.equal(pyCapitalize('éCOLE'), 'École');
});

test('MMStar: options rewritten to "Choices:", the letter instruction shortened, assistant prefix "Answer:"', async () => {
  const f = join(dir, 'mmstar.parquet');
  writeParquet(f, MMSTAR_FIELDS, [
    { index: 7, question: 'Which animal is shown?\nOptions: A: cat, B: dog, C: fox, D: owl', image: { bytes: png, path: null }, answer: 'B', category: 'coarse perception', l2_category: 'image scene and topic' },
  ]);
  const [s] = await dataset('mmstar', f);
  const text = asked('mmstar', s);
  assert.equal(text, 'Which animal is shown?\nChoices: A: cat, B: dog, C: fox, D: owl\nAnswer with the letter directly');
  assert.equal(renderPrompt('nanovlm', text, 'Answer:'), `Question: ${text} Answer:`);
  assert.equal(renderPrompt('raw', text, 'Answer:'), `${text}Answer:`);
  const chat = { applyChatTemplate: (m: { content: string }[]) => `<|im_start|>user\n${m[0].content}<|im_end|>\n<|im_start|>assistant\n` };
  assert.equal(renderPrompt('chat', 'Q', 'Answer:', chat as never), '<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nAnswer:');
  assert.throws(() => renderPrompt('chat', 'Q', '', { } as never), /chat template/);
});

test('MMStar aggregation: categories and the average are means of L2-category means', () => {
  const row = (category: string, l2: string, accuracy: number) => ({ sample: { category, l2Category: l2 } as Sample, output: '', scores: { accuracy } });
  // one L2 with 3 questions (2 right), another with 1 (right): accuracy 3/4 but score (2/3 + 1) / 2
  const rows = [row('math', 'geometry', 1), row('math', 'geometry', 1), row('math', 'geometry', 0), row('math', 'statistical reasoning', 1)];
  const { metrics, lmms, breakdown } = aggregateMmstar(rows);
  assert.equal(metrics.accuracy, 0.75);
  assert.ok(Math.abs(lmms.average - (2 / 3 + 1) / 2) < 1e-12);
  assert.ok(Math.abs(lmms.math - (2 / 3 + 1) / 2) < 1e-12);
  assert.deepEqual(breakdown!['math / statistical reasoning'], { accuracy: 1, n: 1 });
  assert.equal(l2MacroMean([]), 0);
});

test('ScienceQA-IMG and AI2D: lettered options; the wrapper rewrites AI2D but not scienceqa_img', async () => {
  mkdirSync(join(dir, 'sqa', 'ScienceQA-IMG'), { recursive: true });
  writeParquet(join(dir, 'sqa', 'ScienceQA-IMG', 'test-00000-of-00001.parquet'), [IMAGE, { name: 'question', kind: 'string' }, { name: 'choices', kind: 'list', element: 'string' }, { name: 'answer', kind: 'int64' }, { name: 'hint', kind: 'string' }], [
    { image: { bytes: png, path: null }, question: 'Which is a mammal?', choices: ['frog', 'whale'], answer: 1, hint: 'Look at the picture.' },
    { image: { bytes: png, path: null }, question: 'Which is hot?', choices: ['ice', 'fire', 'snow'], answer: 1, hint: '' },
  ]);
  const sqa = await dataset('scienceqa', join(dir, 'sqa'));
  assert.equal(sqa[0].answer, 'B');
  assert.equal(asked('scienceqa', sqa[0]), "Context: Look at the picture.\nWhich is a mammal?\nA. frog\nB. whale\nAnswer with the option's letter from the given choices directly.");
  assert.equal(asked('scienceqa', sqa[1]), "Which is hot?\nA. ice\nB. fire\nC. snow\nAnswer with the option's letter from the given choices directly.");
  mkdirSync(join(dir, 'ai2d', 'data'), { recursive: true });
  writeParquet(join(dir, 'ai2d', 'data', 'test-00000-of-00001.parquet'), [{ name: 'question', kind: 'string' }, { name: 'options', kind: 'list', element: 'string' }, { name: 'answer', kind: 'string' }, IMAGE], [
    { question: 'What eats grass?', options: ['lion', 'cow', 'hawk', 'snake'], answer: '1', image: { bytes: png, path: null } },
  ]);
  const [a] = await dataset('ai2d', join(dir, 'ai2d'));
  assert.equal(a.answer, 'B');
  assert.equal(asked('ai2d', a), 'What eats grass?\nChoices:\nA. lion\nB. cow\nC. hawk\nD. snake\nAnswer with the letter directly.');
});

test('DocVQA / InfoVQA / ChartQA / OCRBench / MME / MMMU prompts', async () => {
  const doc = { question: 'What is the date?', fields: {} } as Sample;
  assert.equal(
    asked('docvqa', doc),
    'Give a short and terse answer to the following question. Do not paraphrase or reformat the text you see in the image. Do not include any full stops. Just give the answer without additional explanation. Question: What is the date?\nAnswer the question using a single word or phrase.',
  );
  assert.equal(asked('infovqa', doc), 'What is the date?\nAnswer the question using a single word or phrase.\nGive a very brief answer.');
  assert.equal(asked('chartqa', doc), 'What is the date?\nAnswer the question with a single word.'); // "chartvqa" in the wrapper: no rewrite
  assert.equal(asked('ocrbench', { question: ' what is written in the image? ' } as Sample), 'what is written in the image?\nGive a very brief answer.');
  assert.equal(
    asked('mme', { question: 'Is there a dog in the image? Please answer yes or no.' } as Sample),
    'Is there a dog in the image?\nAnswer the question using a single word or phrase.\nGive a very brief answer.',
  );
  const mc = { question: 'Question: <image 1> Which city is this?', choices: ['Paris', 'Rome'], fields: { question_type: 'multiple-choice' } } as unknown as Sample;
  assert.equal(asked('mmmu', mc), ' <image 1> Which city is this?\nChoices:\nA. Paris\nB. Rome\n\nAnswer with the letter directly.');
  const open = { question: 'How many?', choices: [], fields: { question_type: 'open' } } as unknown as Sample;
  assert.equal(asked('mmmu', open), 'How many?\n\nAnswer the question using a single word or phrase.');
});

test('MME scores: acc + acc+ per image, summed over categories', () => {
  // two images of one category: both right (100 + 100), one right (50 + 0) -> mean 125
  const s = mmeScores([
    { category: 'count', questionId: 'a.jpg', score: 1 },
    { category: 'count', questionId: 'a.jpg', score: 1 },
    { category: 'count', questionId: 'b.jpg', score: 1 },
    { category: 'count', questionId: 'b.jpg', score: 0 },
    { category: 'color', questionId: 'c.jpg', score: 0 },
    { category: 'color', questionId: 'c.jpg', score: 0 },
  ]);
  assert.deepEqual(s.perCategory, { count: 125, color: 0 });
  assert.equal(s.total, 125);
  assert.equal(s.incomplete, 0);
});

test('a task split in its Hub repo: <config>/<split>-*.parquet, data/<split>-*.parquet', () => {
  const doc = splitFiles({ repo: 'lmms-lab/DocVQA', config: 'DocVQA', split: 'validation' });
  assert.equal(doc('DocVQA/validation-00000-of-00006.parquet'), true);
  assert.equal(doc('DocVQA/test-00000-of-00006.parquet'), false);
  assert.equal(doc('InfographicVQA/validation-00000-of-00003.parquet'), false);
  const tv = splitFiles({ repo: 'lmms-lab/textvqa', split: 'validation' });
  assert.equal(tv('data/validation-00000-of-00003.parquet'), true);
  assert.equal(tv('data/train-00000-of-00020.parquet'), false);
  assert.equal(tv('README.md'), false);
});

test('progress line: bar, rate and ETA; the reporter throttles', () => {
  assert.equal(progressLine('textvqa', 0, 500, 0), 'textvqa  [--------------------]  0/500  0%  ETA ?');
  assert.equal(progressLine('textvqa', 200, 500, 100_000), 'textvqa  [########------------]  200/500  40%  2.00 samples/s  ETA 2m30s');
  assert.equal(progressLine('textvqa', 500, 500, 250_000), 'textvqa  [####################]  500/500  100%  2.00 samples/s  done in 4m10s');
  let t = 0;
  const lines: string[] = [];
  const r = progressReporter('x', (l) => lines.push(l), { everyMs: 1000, now: () => t });
  r(0, 10);
  t = 100;
  r(1, 10); // throttled
  t = 1200;
  r(2, 10);
  t = 1300;
  r(10, 10); // the last always shows
  assert.equal(lines.length, 3);
});

test('vlm eval <model> --tasks ...: results in lmms-eval layout, logs, table, chart; --compare', async () => {
  const backend = await useTestBackend();
  const MODEL = {
    vision: { use: 'siglip-vit', hidden_dim: 32, inter_dim: 64, patch_size: 8, image_size: 32, n_heads: 4, n_blocks: 2 },
    projector: { use: 'pixel-shuffle', factor: 2 },
    decoder: { use: 'llama', hidden_dim: 48, inter_dim: 96, n_heads: 6, n_kv_heads: 2, n_blocks: 2, vocab_size: 257, max_length: 1024 },
    tokenizer: { use: 'bytes' },
    image_processor: { use: 'resize' },
  };
  const model = await buildModel(MODEL as never, registry, { seed: 3 });
  const folder = join(dir, 'model');
  await saveCheckpoint(model, folder, { model: MODEL });
  model.dispose();
  // MME: 2 images x 2 questions; ChartQA: a human and an augmented question
  mkdirSync(join(dir, 'mme', 'data'), { recursive: true });
  writeParquet(join(dir, 'mme', 'data', 'test-00000-of-00001.parquet'), [{ name: 'question_id', kind: 'string' }, IMAGE, { name: 'question', kind: 'string' }, { name: 'answer', kind: 'string' }, { name: 'category', kind: 'string' }], [
    { question_id: 'count/1.jpg', image: { bytes: png, path: null }, question: 'Are there two dogs? Please answer yes or no.', answer: 'Yes', category: 'count' },
    { question_id: 'count/1.jpg', image: { bytes: png, path: null }, question: 'Are there three dogs? Please answer yes or no.', answer: 'No', category: 'count' },
    { question_id: 'code_reasoning/2.png', image: { bytes: png, path: null }, question: 'Does it print 3? Please answer yes or no.', answer: 'Yes', category: 'code_reasoning' },
    { question_id: 'code_reasoning/2.png', image: { bytes: png, path: null }, question: 'Does it print 4? Please answer yes or no.', answer: 'No', category: 'code_reasoning' },
  ]);
  const chart = join(dir, 'chartqa.parquet');
  writeParquet(chart, [{ name: 'type', kind: 'string' }, { name: 'question', kind: 'string' }, { name: 'answer', kind: 'string' }, IMAGE], [
    { type: 'human_test', question: 'What is the peak?', answer: '12', image: { bytes: png, path: null } },
    { type: 'augmented_test', question: 'Which bar is red?', answer: 'Asia', image: { bytes: png, path: null } },
    { type: 'augmented_test', question: 'Not read (limit 2)', answer: 'x', image: { bytes: png, path: null } },
  ]);
  const out = join(dir, 'run');
  let stderr = '';
  let stdout = '';
  const io = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) } };
  const args = ['eval', folder, '--tasks', 'textvqa,mme,chartqa', '--task-data', `textvqa=${join(dir, 'textvqa')}`, '--task-data', `mme=${join(dir, 'mme')}`, '--task-data', `chartqa=${chart}`];
  const code = await cli([...args, '--limit', '2', '--batch-size', '2', '--log-samples', '--output', out, `runtime.backend=${backend}`, 'eval.evaluators[1].max_new_tokens=4'], { builtins, ...io });
  assert.equal(code, 0, stderr);
  const tasksDir = join(out, 'eval', 'tasks');
  const res = JSON.parse(readFileSync(join(tasksDir, 'results.json'), 'utf8'));
  assert.deepEqual(Object.keys(res.results).sort(), ['chartqa', 'mme', 'textvqa_val']);
  assert.deepEqual(res['n-samples'].textvqa_val, { original: 1, effective: 1 });
  assert.deepEqual(res['n-samples'].chartqa, { original: 3, effective: 2 });
  assert.deepEqual(res['n-samples'].mme, { original: 4, effective: 2 });
  assert.equal(res.versions.mme, 0);
  assert.equal(res.configs.chartqa.generation_kwargs.max_new_tokens, 16);
  assert.equal(res.configs.mme.generation_kwargs.max_new_tokens, 4); // the override reached the task
  assert.equal(res.results.textvqa_val.alias, 'textvqa_val');
  assert.equal(res.results.textvqa_val['exact_match_stderr,none'], 'N/A');
  // the per-sample logs re-scored with the metrics give the reported figures
  const logs = (t: string) => readFileSync(join(tasksDir, `samples_${t}.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const tv = logs('textvqa_val');
  assert.equal(tv.length, 1);
  assert.equal(res.results.textvqa_val['exact_match,none'], vqaAccuracy(tv[0].resps[0][0], tv[0].target));
  assert.match(tv[0].arguments.prompt, /^Question: Answer the following question about the image .*Question: What is the brand of this camera\?\nAnswer the question using a single word or phrase\. Answer:$/s);
  const ch = logs('chartqa');
  assert.deepEqual(ch.map((r) => r.target), ['12', 'Asia']);
  const right = ch.map((r) => +relaxedCorrectness(r.resps[0][0], r.target));
  assert.equal(res.results.chartqa['relaxed_overall,none'], (right[0] + right[1]) / 2);
  assert.equal(res.results.chartqa['relaxed_human_split,none'], right[0]);
  assert.equal(res.results.chartqa['relaxed_augmented_split,none'], right[1]);
  const mm = logs('mme');
  const both = mm.map((r) => mmeMatch(r.resps[0][0], r.target));
  assert.equal(res.results.mme['mme_perception_score,none'], ((both[0] + both[1]) / 2) * 100 + (both[0] + both[1] === 2 ? 100 : 0));
  assert.equal(res.results.mme['mme_cognition_score,none'], undefined); // the first 2 rows are perception only
  // table, chart, progress lines, the eval/results.json of the stage
  const md = readFileSync(join(tasksDir, 'results.md'), 'utf8');
  assert.match(md, /^\| task \| metric \| model \|/);
  assert.match(md, /\| textvqa_val \| exact_match \| \d\.\d{4} \|/);
  const meta = await sharp(readFileSync(join(tasksDir, 'results.png'))).metadata();
  assert.equal(meta.format, 'png');
  assert.ok(meta.width! >= 480);
  // the progress callback a bar is drawn from: (0, total) first, then after each batch
  const loaded = await loadModel(folder, { registry, log: quiet, seed: 0 });
  const ev = (await registry.create('evaluator', { use: 'chartqa', path: chart, max_samples: 2, batch_size: 1, max_new_tokens: 2 }, { recipe: {}, recipeDir: dir, yamlPath: 'eval.evaluators[0]', seed: 0, log: quiet })) as Evaluator;
  const ctx = { ...loaded, registry, log: quiet, recipe: {}, recipeDir: dir, seed: 0, signal: new AbortController().signal } as unknown as RunContext;
  const ticks: [number, number | null][] = [];
  const r = await ev.evaluate(ctx, await ev.dataset!(ctx), (done, total) => ticks.push([done, total]));
  loaded.model.dispose();
  assert.deepEqual(ticks, [[0, 2], [1, 2], [2, 2]]);
  assert.equal(r.task?.name, 'chartqa');
  assert.equal(r.metrics.n, 2);
  assert.ok(existsSync(join(out, 'eval', 'results.json')));

  // greedy decoding is deterministic: the same question again, now with the model's own answer
  // as 2 of the 10 human answers -> VQA accuracy 0.6 (2 x 1/3 + 8 x 2/3) / 10, end to end
  const said = tv[0].resps[0][0] as string;
  assert.ok(said.length > 0, 'the tiny model answered something');
  mkdirSync(join(dir, 'textvqa2', 'data'), { recursive: true });
  writeParquet(join(dir, 'textvqa2', 'data', 'validation-00000-of-00001.parquet'), [{ name: 'question_id', kind: 'int64' }, { name: 'question', kind: 'string' }, IMAGE, { name: 'answers', kind: 'list', element: 'string' }], [
    { question_id: 1, question: 'what is the BRAND of this camera?', image: { bytes: png, path: null }, answers: [said, said, ...Array(8).fill('zzzz')] },
  ]);
  const out2 = join(dir, 'run2');
  assert.equal(await cli(['eval', folder, '--tasks', 'textvqa', '--task-data', `textvqa=${join(dir, 'textvqa2')}`, '--output', out2, `runtime.backend=${backend}`], { builtins, ...io }), 0, stderr);
  const res2 = JSON.parse(readFileSync(join(out2, 'eval', 'tasks', 'results.json'), 'utf8'));
  assert.ok(Math.abs(res2.results.textvqa_val['exact_match,none'] - 0.6) < 1e-12, String(res2.results.textvqa_val['exact_match,none']));

  // --compare: this run and an lmms-eval results file, side by side
  const lmms = join(dir, 'lmms-results.json');
  writeFileSync(lmms, JSON.stringify({ results: { textvqa_val: { alias: 'textvqa_val', 'exact_match,none': 0.5, 'exact_match_stderr,none': 0.01 }, mmstar: { alias: 'mmstar', 'average,none': 0.3 } }, config: { model: 'nanovlm' } }));
  stdout = '';
  const cmp = join(dir, 'cmp');
  assert.equal(await cli(['eval', '--compare', out, lmms, '--output', cmp], { builtins, ...io }), 0, stderr);
  assert.match(stdout, /^\| task \| metric \| run \| nanovlm \|/);
  assert.match(stdout, /\| textvqa_val \| exact_match \| \d\.\d{4} \| 0\.5000 \|/);
  assert.match(stdout, /\| mmstar \| average \| – \| 0\.3000 \|/);
  assert.equal((await sharp(readFileSync(join(cmp, 'compare.png'))).metadata()).format, 'png');
  assert.equal(readFileSync(join(cmp, 'compare.md'), 'utf8'), stdout);
  void tf;
});

test('vlm eval --tasks: mistakes are reported clearly', async () => {
  let stderr = '';
  const io = { stdout: { write: () => 0 }, stderr: { write: (s: string) => (stderr += s) } };
  const run = async (...a: string[]) => {
    stderr = '';
    return cli(['eval', join(dir, 'model'), ...a], { builtins, ...io });
  };
  assert.equal(await run('--tasks', 'textvq'), 1);
  assert.match(stderr, /unknown task "textvq" \(did you mean "textvqa"\?\)/);
  assert.equal(await run('--tasks', 'mme', '--task-data', 'ocrbench=x.parquet'), 1);
  assert.match(stderr, /names task "ocrbench", which is not in --tasks/);
  assert.equal(await run('--tasks', 'mme', '--limit', '0'), 1);
  assert.match(stderr, /--limit 0: expected a positive integer/);
  assert.equal(await run('--limit', '3'), 1);
  assert.match(stderr, /--limit goes with --tasks/);
  assert.equal(await cli(['eval', '--compare', join(dir, 'nothing')], { builtins, ...io }), 1);
  assert.match(stderr, /does not exist/);
  assert.doesNotMatch(stderr, /internal error/);
});

test('a recipe lists tasks in its eval stage like any evaluator', async () => {
  const recipe = join(dir, 'bench.yaml');
  writeFileSync(
    recipe,
    [
      'name: bench',
      'model:',
      '  vision: { use: siglip-vit, hidden_dim: 32, inter_dim: 64, patch_size: 8, image_size: 32, n_heads: 4, n_blocks: 2 }',
      '  projector: { use: pixel-shuffle, factor: 2 }',
      '  decoder: { use: llama, hidden_dim: 48, inter_dim: 96, n_heads: 6, n_kv_heads: 2, n_blocks: 2, vocab_size: 257, max_length: 256 }',
      '  tokenizer: { use: bytes }',
      '  image_processor: { use: resize }',
      'data: { train: [ { use: synthetic-shapes, split: train, count: 8 } ] }',
      'eval:',
      '  evaluators:',
      '    - { use: mmstar, max_samples: 300 }',
      '    - { use: textvqa, path: textvqa, prompt: chat, log_samples: true }',
      '    - { use: mmmu, max_new_tokens: 64 }',
      'stages: [ load, eval ]',
    ].join('\n') + '\n',
  );
  let err = '';
  const io = { stdout: { write: () => 0 }, stderr: { write: (s: string) => (err += s) } };
  assert.equal(await cli(['validate', recipe], { builtins, ...io }), 0, err);
  writeFileSync(recipe, readFileSync(recipe, 'utf8').replace('prompt: chat', 'prompt: chatml'));
  assert.equal(await cli(['validate', recipe], { builtins, ...io }), 1);
  assert.match(err, /eval\.evaluators\[1\]\.prompt/);
});
