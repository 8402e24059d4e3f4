// The evaluators on a model in nanoVLM HEAD's format (image tokens as placeholders, the split image
// processor, HEAD's tokenizer with its chat template), trained for a few steps on the digits data
// from a recipe: each prompts as HEAD does (the one prompt builder, plugins/evaluator/common.ts
// promptRow = core/chat-prompts.ts, as `vlm generate`), runs and gives a score; val-loss gives the
// train stage's validation loss on the same data; likelihood scores match an independent path.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { runTrain, writeRecipe, type TrainRun } from '../../helpers/run.ts';
import { needsShared } from '../../helpers/shared.ts';
import { headDigitsRecipe } from '../../helpers/head-tiny.ts';
import { createRegistry } from '../../../core/registry.ts';
import builtins from '../../../plugins/index.ts';
import { prepareChatPrompts } from '../../../core/chat-prompts.ts';
import { assistantPrefixLength, prepareChatSample } from '../../../core/data/chat.ts';
import { collateChat } from '../../../core/data/chat-collator.ts';
import { countTargets, toTensors } from '../../../core/data/collator.ts';
import { promptRow, scoreOptionsAll } from '../../../plugins/evaluator/common.ts';
import { mmstarPrompt } from '../../../core/data/prompt.ts';
import type { Dataset, Evaluator, RunContext, Sample } from '../../../core/types.ts';

const skip = needsShared('data', 'digits', 'train.parquet');
const quiet = { info() {}, warn() {}, debug() {} };
const registry = createRegistry(builtins);
const list = (xs: Sample[]): Dataset => ({ name: 'list', size: async () => xs.length, async *samples() { yield* xs; } });

const headRecipe = () => headDigitsRecipe('head-eval-test', 32, 10, { max_steps: 3, checkpoint_every: 3 });

let run: TrainRun | undefined;
let val: Sample[] = [];
const ctx = () => ({ ...run!.ctx, log: quiet }) as RunContext;
const evaluator = async (options: { use: string; [k: string]: unknown }) =>
  (await registry.create('evaluator', options, { recipe: {}, recipeDir: '/', yamlPath: 'eval.evaluators[0]', seed: 0, log: quiet })) as Evaluator;

before(async () => {
  if (skip.skip) return;
  run = await runTrain(writeRecipe(headRecipe()));
  assert.equal(run.error, undefined, String((run.error as Error)?.stack ?? run.error));
  for await (const s of run.ctx.datasets.val[0].samples({ epoch: 0 })) val.push(s);
});
after(() => run?.ctx.model?.dispose());

/** the val rows as two-option multiple-choice questions (MMStar's inline options), the right digit name A or B alternately */
function choiceRows(): Sample[] {
  return val.map((s, i) => {
    const right = s.answer.trim();
    const wrong = right === 'three' ? 'seven' : 'three';
    const choices = i % 2 ? [wrong, right] : [right, wrong];
    return { ...s, turns: undefined, question: `Which digit is this?\nOptions: A: ${choices[0]}, B: ${choices[1]}`, answer: i % 2 ? 'B' : 'A', choices };
  });
}

test('val-loss on a HEAD-format model is the train stage\'s validation loss on the same data (HEAD chat samples)', skip, async () => {
  const evals = readFileSync(join(run!.ctx.runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.type === 'eval');
  const trainVal = evals.at(-1).val_loss as number;
  assert.ok(Number.isFinite(trainVal));
  const r = await (await evaluator({ use: 'val-loss', batch_size: 4 })).evaluate(ctx(), run!.ctx.datasets.val[0]);
  assert.equal(r.metrics.n, 10);
  assert.equal(r.metrics.skipped, undefined);
  assert.ok(Math.abs(r.metrics.loss - trainVal) <= 1e-6 * trainVal, `val-loss ${r.metrics.loss} vs the train stage's ${trainVal}`);
});

test('exact-match and multiple-choice on a HEAD-format model prompt as HEAD (image string + chat template + generation prompt) and give a score', skip, async () => {
  const { model, tokenizer, imageProcessor } = run!.ctx;
  // the prompt: exactly `vlm generate`'s for the same question (core/chat-prompts.ts)
  const row = await promptRow(ctx(), 'test', val[0], { format: () => 'unused' });
  const gen = await prepareChatPrompts(tokenizer!, imageProcessor!, [{ prompt: val[0].question, images: [val[0].image] }], { imageTokenLength: model!.numImageTokens });
  assert.deepEqual(row.ids, Array.from(gen.inputIds));
  assert.deepEqual(row.tiles, gen.images);
  assert.equal(row.count, 5); // 8 x 8 digit -> 64 x 64: global view + 2 x 2 tiles
  // several images: get_image_string once per image, as HEAD's lmms-eval wrapper (no `<image: k>` tags, which training puts)
  const two = await promptRow(ctx(), 'test', { ...val[0], images: [val[0].image, val[1].image] }, { format: () => 'unused' });
  const twoText = tokenizer!.decode(two.ids);
  assert.equal(two.count, 10);
  assert.equal(twoText.split('<|global_image|>').length - 1, 2);
  assert.ok(!twoText.includes('<image:'), twoText);
  // multiple-choice: lmms-eval's mmstar context with the wrapper's rewrites, then "Answer:" after the generation prompt
  const mc = choiceRows()[0];
  const mcRow = await promptRow(ctx(), 'test', mc, {
    format: mmstarPrompt,
    content: (q) => (q + "\nAnswer with the option's letter from the given choices directly").replace('\nOptions:', '\nChoices:').replace("Answer with the option's letter from the given choices directly", 'Answer with the letter directly'),
    assistantPrefix: 'Answer:',
  });
  const text = tokenizer!.decode(mcRow.ids);
  assert.ok(text.startsWith('<|im_start|>user\n<|global_image|><|image|>'), text);
  assert.ok(text.endsWith(`${'<|image|>'.repeat(4)}Which digit is this?\nChoices: A: ${mc.choices![0]}, B: ${mc.choices![1]}\nAnswer with the letter directly<|im_end|>\n<|im_start|>assistant\nAnswer:`), text);
  assert.equal(text.split('<|image|>').length - 1, 5 * model!.numImageTokens);

  const em = await (await evaluator({ use: 'exact-match', batch_size: 4, max_new_tokens: 4 })).evaluate(ctx(), list(val));
  assert.equal(em.metrics.n, 10);
  assert.equal(em.metrics.skipped, undefined);
  assert.ok(em.metrics.exact_match >= 0 && em.metrics.exact_match <= 1);
  const choice = await (await evaluator({ use: 'multiple-choice', batch_size: 4 })).evaluate(ctx(), list(choiceRows()));
  assert.equal(choice.evaluator, 'multiple-choice');
  assert.equal(choice.metrics.n, 10);
  assert.equal(choice.metrics.skipped, undefined);
  assert.ok(choice.metrics.accuracy >= 0 && choice.metrics.accuracy <= 1);
  // an lmms-eval task (mmstar) takes HEAD's wrapper prompt by default
  const task = await (await evaluator({ use: 'mmstar', batch_size: 4, max_new_tokens: 3, log_samples: true })).evaluate(ctx(), list(choiceRows().map((s) => ({ ...s, category: 'digits', l2Category: 'digits' }))));
  assert.equal(task.metrics.n, 10);
  assert.equal(task.task!.config.prompt_style, 'chat');
  assert.ok(task.task!.metrics.average >= 0 && task.task!.metrics.average <= 1);
  await assert.rejects((await evaluator({ use: 'mmstar', prompt: 'nanovlm' })).evaluate(ctx(), list(choiceRows())), /prompt: nanovlm cannot carry the images.*placeholders/);
});

test('multiple-choice scoring: likelihood on a HEAD-format model: each option\'s score is -loss x tokens of it as the assistant\'s answer of a chat sample', skip, async () => {
  const { model, tokenizer, imageProcessor } = run!.ctx;
  const rows = choiceRows().slice(0, 3);
  const { scored, skipped } = await scoreOptionsAll(ctx(), 'test', list(rows), { format: () => 'unused', batchSize: 2 });
  assert.deepEqual(skipped, []);
  assert.equal(scored.length, 3);
  const prefixLen = assistantPrefixLength(tokenizer!);
  for (const [i, s] of rows.entries()) {
    for (const [j, option] of s.choices!.entries()) {
      // independent path: the option alone, through model.loss (mean over its counted tokens)
      const p = await prepareChatSample({ ...s, question: 'Which digit is this?', target: option, turns: undefined }, tokenizer!, imageProcessor!, { imageTokenLength: model!.numImageTokens, maxImagesPerExample: 4, prefixLen });
      const host = collateChat([p], { maxLength: model!.maxLength, padTokenId: tokenizer!.padTokenId, imageSize: imageProcessor!.size });
      const k = countTargets(host.targets);
      const counted = Array.from(host.targets).filter((t) => t !== -100);
      assert.equal(k, counted.length);
      assert.equal(tokenizer!.decode(counted), `${option}<|im_end|>\n`, 'the option, <|im_end|> and "\\n" are counted');
      const loss = tf.tidy(() => {
        const t = toTensors(host);
        return model!.loss(model!.forward(t.inputIds, t.images, t.attentionMask), t.targets).dataSync()[0];
      });
      const want = -loss * k;
      assert.ok(Math.abs(scored[i].logLiks[j] - want) <= 1e-4 * Math.abs(want), `row ${i} option ${j}: ${scored[i].logLiks[j]} vs ${want}`);
    }
  }
  const r = await (await evaluator({ use: 'multiple-choice', scoring: 'likelihood', batch_size: 4 })).evaluate(ctx(), list(choiceRows()));
  assert.equal(r.evaluator, 'multiple-choice-likelihood');
  assert.equal(r.metrics.n, 10);
  assert.ok(r.metrics.accuracy >= 0 && r.metrics.accuracy <= 1);
});
