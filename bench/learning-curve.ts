// A learning curve per question type, for tuning a recipe: trains the recipe in-process with the
// train stage's step (core/train/step.ts trainStep: the recipe's optimizer, schedule and clipping;
// BatchLoader; no grad accumulation, no checkpoints) and every K steps prints one JSON
// line: {step, s, loss (smoothed), acc, <category>: acc, ...}, where acc is the share of the first
// --n questions of data.eval[0] whose highest-logit token at the answer position is the gold
// letter/token (one forward pass per batch: much cheaper than the generating evaluator, and equal to
// its first generated token). Used to find the default recipe's learning rate (docs/training.md).
// Usage: npx tsx bench/learning-curve.ts [recipe.yaml] [--every 200] [--n 400] [key.path=value ...]
import * as tf from '@tensorflow/tfjs';
import { resolve } from 'node:path';
import { createRegistry } from '../core/registry.ts';
import builtins from '../plugins/index.ts';
import { resolveRecipe } from '../core/recipe/index.ts';
import { describeRuntime, initRuntime } from '../core/runtime.ts';
import { buildComponents, buildDatasets, buildOptimizer } from '../core/build.ts';
import { BatchLoader } from '../core/data/loader.ts';
import { toTensors } from '../core/data/collator.ts';
import { trainStep } from '../core/train/step.ts';

const args = process.argv.slice(2);
const get = (f: string, d: number) => { const i = args.indexOf(f); if (i < 0) return d; const v = Number(args[i + 1]); args.splice(i, 2); return v; };
const every = get('--every', 200);
const nEval = get('--n', 400);
const recipePath = args.find((a) => !a.includes('=')) ?? 'recipes/shapes-tiny.yaml';
const overrides = args.filter((a) => a.includes('='));
const registry = createRegistry(builtins);
const r = await resolveRecipe(resolve(recipePath), { registry, overrides });
const recipe = r.data;
if (recipe.data.eval[0].use === 'synthetic-shapes') recipe.data.eval[0].count = nEval; // other datasets: all of data.eval[0]
const rt = await initRuntime(recipe.runtime?.backend ?? 'auto', { threads: recipe.runtime?.threads ?? null });
console.error(describeRuntime(rt));
const log = { info: () => {}, warn: (m: string) => console.error('WARN', m), debug: () => {}, error: (m: string) => console.error(m) } as any;
const seed = recipe.runtime?.seed ?? 0;
const { model, tokenizer, imageProcessor } = await buildComponents(recipe, registry, { recipe, recipeDir: r.dir, seed, log });
const ds = await buildDatasets(recipe, registry, { recipe, recipeDir: r.dir, seed, log });
const { optimizer, schedule } = await buildOptimizer(recipe, registry, { recipe, recipeDir: r.dir, seed, log }, model, tokenizer);
const opt = recipe.train;
const loader = new BatchLoader({ datasets: ds.train, tokenizer, imageProcessor, batchSize: opt.batch_size, maxLength: model.maxLength, seed, shuffle: true, dropLast: true, log });
const evalLoader = new BatchLoader({ datasets: ds.eval, tokenizer, imageProcessor, batchSize: 50, maxLength: model.maxLength, seed, shuffle: false, dropLast: false, log });
// eval samples' categories
const cats: string[] = [];
for await (const s of ds.eval[0].samples({})) cats.push(s.category ?? '?');
async function evaluate() {
  const per: Record<string, [number, number]> = {};
  let k = 0;
  for await (const { batch } of evalLoader.epoch(0)) {
    const T = batch.seqLen;
    const pos: number[] = [];
    const gold: number[] = [];
    for (let b = 0; b < batch.batchSize; b++) {
      let t = 0;
      while (batch.targets[b * T + t] === -100) t++;
      pos.push(t); gold.push(batch.targets[b * T + t]);
    }
    // the logits of the answer position of each row only
    const logits = tf.tidy(() => { const t = toTensors(batch); return model.logitsAt(t.inputIds, t.images, t.attentionMask, pos.map((p, b) => b * T + p)); });
    const L = logits.arraySync() as number[][];
    logits.dispose();
    for (let b = 0; b < batch.batchSize; b++) {
      const row = L[b];
      let best = -1, bv = -Infinity;
      for (let j = 0; j < row.length; j++) if (row[j] > bv) { bv = row[j]; best = j; }
      const c = cats[k++];
      per[c] ??= [0, 0];
      per[c][1]++;
      if (best === gold[b]) per[c][0]++;
    }
  }
  const tot = Object.values(per).reduce((a, b) => [a[0] + b[0], a[1] + b[1]], [0, 0]);
  return { acc: +(tot[0] / tot[1]).toFixed(3), ...Object.fromEntries(Object.entries(per).map(([c, [a, n]]) => [c, +(a / n).toFixed(2)])) };
}
const total = opt.max_steps ?? Math.floor((await loader.batchesPerEpoch())! * (opt.epochs ?? 1)); // no packing here: a known number
let step = 0;
const t0 = Date.now();
let lossAvg = 0;
outer: for (let epoch = 0; ; epoch++) {
  for await (const { batch } of loader.epoch(epoch)) {
    const result = await trainStep(model, optimizer, [batch], { maxGradNorm: opt.max_grad_norm, schedule, step, totalSteps: total });
    if (!result) continue; // no counted target in the batch
    const loss = result.loss;
    step++;
    lossAvg = step === 1 ? loss : 0.98 * lossAvg + 0.02 * loss;
    if (step % every === 0 || step === total) {
      const e = await evaluate();
      console.log(JSON.stringify({ step, s: Math.round((Date.now() - t0) / 1000), loss: +lossAvg.toFixed(3), ...e }));
    }
    if (step >= total) break outer;
  }
}
process.exit(0);
