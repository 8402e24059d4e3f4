// The training stage: nanoVLM v0.1 train.py's loop, readable top to bottom.
//   https://github.com/huggingface/nanoVLM/blob/v0.1/train.py (train)
// Per optimizer step (core/train/step.ts trainStep, the one copy that vlm bench / vlm memory use too):
//   batch(es) -> forward -> loss -> backward (x grad_accum, token-weighted) -> clip -> lr -> step -> log
// plus, every N steps: eval (val loss + the recipe's evaluators), best checkpoint, periodic
// checkpoint; on Ctrl-C / SIGTERM: finish the step, checkpoint, say how to resume, stop.
//
// Differences from train.py, on purpose:
// - Gradient accumulation (nanoVLM v0.1 has none). nanoVLM's loss is the mean over every counted
//   token of the batch, so micro-batch k (mean loss L_k over n_k counted tokens) is weighted by
//   n_k / sum(n): the accumulated loss and gradients then EQUAL those of the one big batch (the
//   plain average of micro-batch means would not, when token counts differ).
// - Global grad-norm clipping (train.max_grad_norm, torch clip_grad_norm_) — null disables it.
// - All tensor work of a step runs in one tf.tidy. The one host read per step ([loss, grad norm])
//   happens after backward and before the optimizer update, so a non-finite step never reaches the
//   weights: the model in memory and the last checkpoint both stay good, and the diagnostics can
//   re-run the forward pass.
// - Validation loss is the token-weighted mean over the whole validation set (core/train/eval-loss.ts,
//   shared with the val-loss evaluator).
import * as tf from '@tensorflow/tfjs';
import { join, relative } from 'node:path';
import { writeFileSync } from 'node:fs';
import { definePlugin, type FromSchema, type RecipeProblem } from 'nanovlm-ts/plugin-api';
import { buildOptimizer } from '../../core/build.ts';
import { UserError } from 'nanovlm-ts/plugin-api';
import type { EvalResult, HostBatch, Optimizer, RunContext, Schedule, Stage } from 'nanovlm-ts/plugin-api';
import { BatchLoader, type LoaderPacking } from '../../core/data/loader.ts';
import type { ChatDataOptions } from '../../core/data/chat.ts';
import { toTensors } from '../../core/data/collator.ts';
import { runEvaluators } from './eval.ts';
import { toHost } from '../../core/host.ts';
import { stepTokens, trainStep } from '../../core/train/step.ts';
import { meanTokenLoss } from '../../core/train/eval-loss.ts';
import { saveCheckpoint, loadWeights, recordPlugins } from '../../core/weights/model-folder.ts';
import { loadAdapterWeights, saveAdapterFiles } from '../../core/model/adapters.ts';
import { writeSamples } from '../../core/train/samples.ts';
import type { VisionLanguageModel } from '../../core/model/vlm.ts';
import { isAllFinite, nonFiniteGrads } from '../../core/train/grads.ts';
import {
  listCheckpoints,
  loadOptimizerState,
  markBest,
  saveTrainCheckpoint,
  TRAINER_FORMAT_VERSION,
  type TrainerState,
} from '../../core/train/trainer-checkpoints.ts';
import { diffRecipes, recipeHash } from '../../core/train/recipe-diff.ts';
import { writeCurvePng, type Series } from '../../core/train/plot.ts';
import { describeEstimate, formatBytes, guardWasmAbort, outOfMemoryError, placeholderTiles, trainingMemory, wasmAbortError } from '../../core/train/memory.ts';

/** the recipe's `train:` section: the options of this stage (the schema at the end of the file), defaults filled in */
export type TrainOptions = FromSchema<typeof options>;

// ---- the loop ------------------------------------------------------------------------------------

export async function train(ctx: RunContext, report: (line: string) => void, opt: TrainOptions = ctx.recipe.train): Promise<void> {
  const model = ctx.model;
  if (!model || !ctx.tokenizer || !ctx.imageProcessor)
    throw new UserError('the train stage has no model', { hint: 'run the load stage first: stages: [load, train, ...]' });
  if (!ctx.datasets.train.length)
    throw new UserError('no training data', { where: { yamlPath: 'data.train' }, hint: 'list at least one dataset under data.train' });

  // Optimizer (parameter groups, frozen modules) and learning-rate schedule, by name from the recipe.
  const { optimizer, schedule } = await buildOptimizer(ctx.recipe, ctx.registry, ctx, model, ctx.tokenizer);

  // Data: seeded, mixed, prefetched; an epoch yields micro-batches of batch_size. A model with image
  // tokens as placeholders trains on nanoVLM HEAD's chat samples, packed with train.packing.
  const loader = new BatchLoader({
    ...dataFormat(model, opt),
    datasets: ctx.datasets.train,
    tokenizer: ctx.tokenizer,
    imageProcessor: ctx.imageProcessor,
    batchSize: opt.batch_size,
    maxLength: model.maxLength,
    seed: ctx.seed,
    shuffle: true,
    dropLast: true,
    prefetch: opt.prefetch,
    badSampleRatio: opt.bad_sample_ratio,
    log: ctx.log,
  });
  const microPerEpoch = await loader.batchesPerEpoch(); // null with packing: known only by packing (train.max_steps is required)
  const stepsPerEpoch = microPerEpoch === null ? null : Math.floor(microPerEpoch / opt.grad_accum);
  if (stepsPerEpoch !== null && stepsPerEpoch < 1)
    throw new UserError(`the training data makes no full step: ${microPerEpoch} batches of ${opt.batch_size} per epoch, grad_accum ${opt.grad_accum}`, {
      where: { yamlPath: 'train.batch_size' },
      hint: 'use more data or a smaller batch_size / grad_accum',
    });
  if (stepsPerEpoch === null && !opt.max_steps)
    throw new UserError('train.packing needs train.max_steps (the number of packed batches of an epoch is known only by packing)', { where: { yamlPath: 'train.max_steps' }, hint: 'set train.max_steps (nanoVLM HEAD trains by steps too)' });
  const totalSteps = opt.max_steps ?? stepsPerEpoch! * opt.epochs;
  // with max_steps, epochs repeat until that many steps are done; else exactly `epochs` epochs
  const epochs = opt.max_steps ? Infinity : opt.epochs;

  // Fresh state, or the state of the latest checkpoint with --resume.
  let st: TrainerState = {
    format_version: TRAINER_FORMAT_VERSION,
    step: 0,
    total_steps: totalSteps,
    epoch: 0,
    batch_in_epoch: 0,
    rng: { seed: ctx.seed, epoch: 0, batch_in_epoch: 0 },
    loss_tail: [],
    recipe_hash: recipeHash(ctx.recipe),
    recipe: ctx.recipe,
    tokens: 0,
    train_seconds: 0,
  };
  let resumedFrom: string | undefined;
  if (ctx.flags.resume) ({ state: st, folder: resumedFrom } = resume(ctx, model, optimizer, st));
  const losses: { step: number; value: number }[] = st.loss_tail.map((l) => ({ step: l.step, value: l.loss }));
  const evals: { step: number; metrics: Record<string, number> }[] = [];

  const save = async (): Promise<string> => {
    const folder = await saveTrainCheckpoint(ctx.runDir, {
      step: st.step,
      optimizer,
      trainer: { ...st, rng: { seed: ctx.seed, epoch: st.epoch, batch_in_epoch: st.batch_in_epoch }, loss_tail: losses.slice(-200).map((l) => ({ step: l.step, loss: l.value })) },
      keep: opt.keep_checkpoints,
      writeModel: async (dir) => {
        await saveCheckpoint(model, dir, { model: ctx.recipe.model, plugins: recordPlugins(ctx.recipe.model, ctx.registry, dir) });
        if (model.adapters.length) await saveAdapterFiles(model, dir, ctx.recipe.model?.from ?? null); // what --resume loads
        for (const [name, contents] of Object.entries(ctx.tokenizer!.files())) writeFileSync(join(dir, name), contents);
      },
    });
    ctx.artifacts.checkpoint = relative(ctx.runDir, folder);
    lastCheckpoint = folder;
    await writeSamples(ctx, model, st.step, opt.samples); // for the dashboard (vlm serve)
    return folder;
  };

  ctx.log.info(
    `training ${totalSteps} steps (${stepsPerEpoch ?? 'packed, unknown'} steps per epoch; batch ${opt.batch_size} x accumulation ${opt.grad_accum}), ` +
      `groups ${optimizer.groups.map((g) => `${g.name}: ${g.params.length} params @ lr ${g.lr}`).join(', ')}` +
      (st.step ? `; resuming at step ${st.step}` : ''),
  );
  // Memory: estimated before the first step; a step that cannot fit the backend stops here, with
  // what to change (core/train/memory.ts); an abort of the wasm module later is reported the same way.
  // (image tokens as placeholders: every tile of a row through the vision encoder, placeholderTiles)
  const tilesPerRow =
    model.imageTokenId === null
      ? undefined
      : placeholderTiles({
          imagesPerRow: !opt.packing ? opt.max_images_per_example : opt.packing.max_images_per_knapsack === undefined ? 18 : (opt.packing.max_images_per_knapsack ?? Infinity), // packed: a row holds several samples
          maxTiles: ctx.imageProcessor?.maxTiles ?? 1,
          imageTokens: model.numImageTokens,
          maxLength: model.maxLength,
        });
  const memory = { ...trainingMemory(model, optimizer, { batchSize: opt.batch_size, checkpoint: opt.activation_checkpointing, backend: tf.getBackend(), clipping: !!opt.max_grad_norm, tilesPerRow }), batchSize: opt.batch_size, checkpoint: opt.activation_checkpointing };
  ctx.log.info(`memory of one step, estimated: ${describeEstimate(memory.estimate)}${memory.limit ? ` (limit ${formatBytes(memory.limit)})` : ''}`);
  if (!memory.fits) throw outOfMemoryError('not starting training', memory.estimate, { ...memory, backend: tf.getBackend(), limit: memory.limit! });
  const imageTokens = model.imagePrefix; // image tokens outside the attention mask (v0.1's prefix; HEAD's are in the text)
  let stepMsAvg = 0;
  let lastReport = 0;
  let lastSaved = st.step;
  let lastCheckpoint = resumedFrom;
  const t0 = Date.now() - st.train_seconds * 1000;

  training: for (let epoch = st.epoch; epoch < epochs && st.step < totalSteps; epoch++) {
    const stepAtEpochStart = st.step;
    const skip = epoch === st.epoch ? st.batch_in_epoch : 0;
    st.epoch = epoch;
    st.batch_in_epoch = skip;
    let micro: HostBatch[] = [];
    let waitMs = 0;
    let stepStart = Date.now();
    for await (const next of loader.epoch(epoch, { skip })) {
      micro.push(next.batch);
      waitMs += next.waitMs;
      st.batch_in_epoch++;
      if (micro.length < opt.grad_accum) continue;

      // ---- one optimizer step over grad_accum micro-batches (core/train/step.ts) ----
      // forward -> loss -> backward (token-weighted accumulation) -> clip -> lr -> optimizer.step
      const result = await guardWasmAbort(() => trainStep(model, optimizer, micro, {
        maxGradNorm: opt.max_grad_norm,
        schedule,
        step: st.step,
        totalSteps,
        checkpoint: opt.activation_checkpointing,
        onNonFinite: async ({ loss, gradNorm, grads }) => {
          throw new UserError(`training diverged at step ${st.step + 1} (epoch ${epoch}): ${await diagnoseNonFinite(model, micro, grads, loss, gradNorm)}`, {
            hint:
              (lastCheckpoint ? `the last good checkpoint is ${lastCheckpoint} (resume with --resume ${ctx.runDir}); ` : 'no checkpoint was written yet; ') +
              'lower the learning rate, set train.max_grad_norm, or check the data of this batch: ' +
              micro.flatMap((b) => b.sampleIds).slice(0, 4).join(', '),
          });
        },
      }), (e) => wasmAbortError(`training step ${st.step + 1}`, e, memory, lastCheckpoint ? `; the last checkpoint ${lastCheckpoint} is complete (resume with --resume ${ctx.runDir} after the change)` : '; no checkpoint was written'));
      if (!result) {
        ctx.log.warn(`step ${st.step + 1}: no target token in the batch (every sample longer than max_length?); skipped`);
        micro = [];
        continue;
      }
      const { loss, gradNorm, lrs } = result;

      // ---- log ----
      st.step++;
      const stepMs = Date.now() - stepStart;
      stepMsAvg = stepMsAvg ? 0.9 * stepMsAvg + 0.1 * stepMs : stepMs;
      const tokens = stepTokens(micro, imageTokens);
      st.tokens += tokens;
      st.train_seconds = (Date.now() - t0) / 1000;
      losses.push({ step: st.step, value: loss });
      const record = { type: 'train', step: st.step, epoch, loss, grad_norm: gradNorm, lr: Object.fromEntries(optimizer.groups.map((g, i) => [g.name, lrs[i]])), tokens, tokens_per_s: (tokens / stepMs) * 1000, padding: paddingFraction(micro), data_wait_ms: waitMs, step_ms: stepMs };
      ctx.metrics(record);
      const line = `step ${st.step}/${totalSteps} · loss ${loss.toFixed(4)} · lr ${lrs[0].toExponential(2)} · ${Math.round(record.tokens_per_s)} tok/s · data wait ${Math.round(waitMs)} ms · ETA ${eta(((totalSteps - st.step) * stepMsAvg) / 1000)}`;
      if (Date.now() - lastReport >= 1000 || st.step >= totalSteps) {
        report(line); // the live line, at most once a second
        lastReport = Date.now();
      }
      if (st.step % opt.log_every === 0 || st.step === 1) ctx.log.info(line);
      micro = [];
      waitMs = 0;

      // ---- eval, best, periodic checkpoint, interruption ----
      const last = st.step >= totalSteps;
      if ((opt.eval_every && st.step % opt.eval_every === 0) || last) {
        const { metrics, results, complete } = await evaluate(ctx, model, opt, report);
        // the eval stage's own evaluation of the final weights would repeat this one (unless an
        // evaluator was left to it: one that measures the validation loss computed here)
        const entries = (ctx.recipe.eval?.evaluators ?? []) as { use: string }[];
        ctx.finalTrainEval = last && entries.length && complete ? results : undefined;
        evals.push({ step: st.step, metrics });
        ctx.metrics({ type: 'eval', step: st.step, ...metrics });
        ctx.log.info(`eval at step ${st.step}: ${Object.entries(metrics).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}`);
        const value = pickMetric(metrics, opt.best_metric);
        if (value !== undefined && isBetter(opt.best_metric, value, st.best?.value)) {
          st.best = { metric: opt.best_metric, value, step: st.step };
          const folder = await save();
          lastSaved = st.step;
          await markBest(ctx.runDir, folder);
          ctx.artifacts.best = 'checkpoints/best';
        }
      }
      if (lastSaved !== st.step && ((opt.checkpoint_every && st.step % opt.checkpoint_every === 0) || last)) {
        await save();
        lastSaved = st.step;
      }
      if (ctx.signal.aborted) {
        if (lastSaved !== st.step) await save();
        const why = ctx.signal.reason instanceof Error ? ctx.signal.reason.message : String(ctx.signal.reason ?? 'interrupted');
        const cmd = `vlm run --resume ${ctx.runDir}`; // the run dir holds its recipe.yaml
        report(`interrupted at step ${st.step}: checkpoint saved; resume with: ${cmd}`);
        throw new UserError(`training interrupted (${why}) at step ${st.step}/${totalSteps}; checkpoint ${ctx.artifacts.checkpoint} saved`, {
          hint: `resume with: ${cmd}`,
        });
      }
      if (last) break training;
      stepStart = Date.now();
    }
    st.batch_in_epoch = 0;
    if (st.step === stepAtEpochStart)
      throw new UserError(`epoch ${epoch} made no training step: no batch had a target token`, {
        where: { yamlPath: 'model.decoder.max_length' },
        hint: `every sample seems longer than max_length ${model.maxLength} tokens (such rows are ignored, as in nanoVLM); raise max_length`,
      });
  }
  optimizer.dispose();

  // ---- the end: curve, facts ----
  const series: Series[] = [{ name: 'train loss', axis: 'left', color: '#1f77b4', points: losses }];
  const valPoints = evals.filter((e) => e.metrics.val_loss !== undefined).map((e) => ({ step: e.step, value: e.metrics.val_loss }));
  if (valPoints.length) series.push({ name: 'val loss', axis: 'left', color: '#ff7f0e', dots: true, points: valPoints });
  const colors = ['#2ca02c', '#d62728', '#9467bd', '#8c564b'];
  const fractionKeys = [...new Set(evals.flatMap((e) => Object.keys(e.metrics)))].filter((k) => /accuracy/.test(k));
  fractionKeys.slice(0, colors.length).forEach((k, i) => series.push({ name: k, axis: 'right', color: colors[i], dots: true, points: evals.filter((e) => e.metrics[k] !== undefined).map((e) => ({ step: e.step, value: e.metrics[k] })) }));
  await writeCurvePng(join(ctx.runDir, 'loss.png'), `${ctx.recipe.name ?? 'training'}: loss`, series);
  ctx.artifacts.loss_curve = 'loss.png';
  Object.assign(ctx.facts, {
    train_steps: st.step,
    train_tokens: st.tokens,
    train_seconds: Math.round(st.train_seconds),
    final_train_loss: losses.at(-1)?.value,
    best: st.best,
    batch_size: opt.batch_size * opt.grad_accum,
  });
}

// ---- pieces the loop calls --------------------------------------------------------------------

/** --resume: load the latest complete checkpoint, refusing a changed recipe unless --force */
function resume(ctx: RunContext, model: VisionLanguageModel, optimizer: Optimizer, fresh: TrainerState): { state: TrainerState; folder: string } {
  const from = ctx.flags.resume!;
  const candidates = listCheckpoints(from);
  if (!candidates.length)
    throw new UserError(`nothing to resume in ${from}: no complete checkpoint under ${join(from, 'checkpoints')}`, {
      hint: 'pass the run directory of an earlier run (runs/<name>-<date>), or start a new run without --resume',
    });
  const diff = diffRecipes(candidates[0].trainer.recipe, ctx.recipe);
  if (diff.length && !ctx.flags.force)
    throw new UserError(`the recipe differs from the one ${from} was trained with:\n    ${diff.join('\n    ')}`, {
      hint: 'resume with the same recipe, or pass --force to continue with the changed one',
    });
  if (diff.length) ctx.log.warn(`--force: resuming with a changed recipe:\n    ${diff.join('\n    ')}`);
  // the newest checkpoint whose files load; a damaged one (e.g. a disk error after it was written)
  // is named and skipped, never modified. Each attempt loads every weight and the whole optimizer
  // state, so nothing of a failed attempt survives a successful one.
  const damaged: string[] = [];
  for (const found of candidates) {
    try {
      // with model.adapters the checkpoint's model.safetensors holds the merged weights; the base
      // weights are frozen (the recipe's model.from gave them again) and the adapters come from
      // their own file (core/model/adapters.ts)
      if (model.adapters.length) loadAdapterWeights(model, found.folder);
      else loadWeights(model, found.folder);
      loadOptimizerState(found.folder, optimizer);
    } catch (e) {
      damaged.push(`${found.folder}: ${(e as Error).message}`);
      ctx.log.warn(`cannot resume from ${found.folder} (${(e as Error).message}); trying the checkpoint before it`);
      continue;
    }
    ctx.log.info(`resumed from ${found.folder} (step ${found.trainer.step}, epoch ${found.trainer.epoch}, batch ${found.trainer.batch_in_epoch})`);
    return { state: { ...found.trainer, total_steps: fresh.total_steps, recipe: ctx.recipe, recipe_hash: fresh.recipe_hash }, folder: found.folder };
  }
  throw new UserError(`nothing to resume in ${from}: every checkpoint is damaged:\n    ${damaged.join('\n    ')}`, {
    hint: 'start a new run without --resume (the damaged folders were left as they are)',
  });
}

/**
 * validation loss (token-weighted over data.val) + every recipe evaluator, as flat metrics; an
 * evaluator that measures the validation loss itself (Evaluator.measuresValLoss) is skipped: then
 * the results are not `complete`
 */
async function evaluate(ctx: RunContext, model: VisionLanguageModel, opt: TrainOptions, report: (l: string) => void): Promise<{ metrics: Record<string, number>; results: EvalResult[]; complete: boolean }> {
  const metrics: Record<string, number> = {};
  if (ctx.datasets.val.length) {
    report('eval: validation loss');
    const loader = new BatchLoader({
      ...dataFormat(model, opt),
      datasets: ctx.datasets.val,
      tokenizer: ctx.tokenizer!,
      imageProcessor: ctx.imageProcessor!,
      batchSize: opt.batch_size,
      maxLength: model.maxLength,
      seed: ctx.seed,
      shuffle: false,
      dropLast: false,
      prefetch: opt.prefetch,
      badSampleRatio: opt.bad_sample_ratio,
      log: ctx.log,
    });
    async function* hostBatches() {
      for await (const { batch } of loader.epoch(0, { skip: 0 })) yield batch;
    }
    const { loss, tokens } = await meanTokenLoss(model, hostBatches()); // core/train/eval-loss.ts, as the val-loss evaluator
    if (tokens) metrics.val_loss = loss;
  }
  // the recipe's evaluators, as the eval stage runs them (plugins/stage/eval.ts)
  let complete = true;
  const results = await runEvaluators(ctx, {
    report: (line) => report(`eval: ${line}`),
    skip: (evaluator) => {
      if (!evaluator.measuresValLoss) return false;
      complete = false; // its number is val_loss, computed above
      return true;
    },
  });
  for (const r of results) for (const [k, v] of Object.entries(r.metrics)) metrics[`${r.evaluator}/${r.dataset}/${k}`] = v;
  return { metrics, results, complete };
}

/**
 * The loader's data format for `model`: v0.1's samples, or (image tokens as placeholders) nanoVLM
 * HEAD's chat samples, packed with train.packing (HEAD's ConstantLengthDataset; block-diagonal needs
 * a decoder that takes segments).
 */
function dataFormat(model: VisionLanguageModel, opt: TrainOptions): { chat: ChatDataOptions | null; packing: LoaderPacking | null } {
  if (model.imageTokenId === null) {
    if (opt.packing) throw new UserError('train.packing packs chat samples, which need a model with image tokens as placeholders', { where: { yamlPath: 'train.packing' }, hint: 'set model.image_tokens: placeholders (nanoVLM HEAD), or train.packing: null' });
    return { chat: null, packing: null };
  }
  const chat = { imageTokenLength: model.numImageTokens, maxImagesPerExample: opt.max_images_per_example };
  const p = opt.packing;
  if (!p) return { chat, packing: null };
  const attention = p.attention ?? 'nanovlm';
  if (attention === 'block-diagonal' && !model.decoder.segmentMasks)
    throw new UserError('train.packing.attention: block-diagonal needs a decoder that takes per-sample segments (Decoder.segmentMasks)', { where: { yamlPath: 'train.packing.attention' }, hint: 'use attention: nanovlm, or a decoder plugin with segment masks (llama)' });
  return {
    chat,
    packing: { attention, maxSampleLength: p.max_sample_length ?? 4096, maxImagesPerKnapsack: p.max_images_per_knapsack === undefined ? 18 : p.max_images_per_knapsack, bufferSequences: p.buffer_sequences ?? 4 * opt.batch_size },
  };
}

/** share of the step's [B, T] positions that are padding (attention mask 0) */
export function paddingFraction(micro: HostBatch[]): number {
  let pad = 0;
  let all = 0;
  for (const b of micro) {
    all += b.attentionMask.length;
    for (const m of b.attentionMask) if (m === 0) pad++;
  }
  return all ? pad / all : 0;
}

/** best_metric: "val_loss", a full key "multiple-choice/shapes-test/accuracy", or a unique suffix "accuracy" */
export function pickMetric(metrics: Record<string, number>, name: string): number | undefined {
  if (name in metrics) return metrics[name];
  const hits = Object.keys(metrics).filter((k) => k.endsWith(`/${name}`));
  return hits.length ? metrics[hits[0]] : undefined;
}
/** losses go down, everything else (accuracy, ...) up */
export const isBetter = (metric: string, value: number, best: number | undefined) =>
  best === undefined || (/loss|perplexity|error/.test(metric) ? value < best : value > best);

/** which module first produced a non-finite value, in forward order (failure path only) */
async function diagnoseNonFinite(model: VisionLanguageModel, micro: HostBatch[], grads: Map<string, tf.Tensor>, loss: number, norm: number): Promise<string> {
  const parts = [`loss ${loss}, gradient norm ${norm}`];
  let firstOutput = '';
  for (const b of micro) {
    // one module at a time, each output read (asynchronously: GPU backends) before the next runs
    const t = toTensors(b);
    const live: tf.Tensor[] = [t.images, t.inputIds, t.targets, ...(t.attentionMask ? [t.attentionMask] : [])];
    const check = async (name: string, out: tf.Tensor) => {
      live.push(out);
      return (await isAllFinite(out)) ? '' : name;
    };
    try {
      await toHost(t.targets, t.attentionMask);
      const v = tf.tidy(() => model.vision.forward(t.images, { training: true }));
      firstOutput = await check('vision_encoder', v);
      if (!firstOutput) firstOutput = await check('MP', tf.tidy(() => model.projector.forward(v)));
      if (!firstOutput) {
        const logits = tf.tidy(() => model.forward(t.inputIds, t.images, t.attentionMask, { training: true }));
        firstOutput = (await check('decoder', logits)) || (await check('loss', tf.tidy(() => model.loss(logits, t.targets))));
      }
    } finally {
      tf.dispose(live);
    }
    if (firstOutput) break;
  }
  if (firstOutput) parts.push(`first non-finite output: ${firstOutput === 'loss' ? 'the loss (logits are finite)' : firstOutput}`);
  const badParams: string[] = [];
  for (const [n, p] of model.params) if (!(await isAllFinite(p))) badParams.push(n);
  if (badParams.length) parts.push(`non-finite weights: ${badParams.slice(0, 5).join(', ')}${badParams.length > 5 ? ` (+${badParams.length - 5})` : ''}`);
  const badGrads = await nonFiniteGrads(grads);
  if (badGrads.length)
    parts.push(`non-finite gradients in ${badGrads[0].split('.')[0]} first: ${badGrads.slice(0, 5).join(', ')}${badGrads.length > 5 ? ` (+${badGrads.length - 5})` : ''}`);
  return parts.join('; ');
}

function eta(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

// ---- the plugin: its options are the recipe's `train:` section ----------------------------------

const options = {
  type: 'object',
  additionalProperties: false,
  properties: {
    batch_size: { type: 'integer', minimum: 1, default: 8, description: 'Samples per micro-batch.' },
    grad_accum: { type: 'integer', minimum: 1, default: 1, description: 'Micro-batches accumulated per optimiser step (effective batch = batch_size x grad_accum).' },
    epochs: { type: 'integer', minimum: 1, default: 1, description: 'Passes over the training data.' },
    max_steps: { type: ['integer', 'null'], minimum: 1, default: null, description: 'Stop after this many optimiser steps (null = run all epochs).' },
    max_grad_norm: { type: ['number', 'null'], exclusiveMinimum: 0, default: 1.0, description: 'Clip the global gradient norm to this value (null = no clipping).' },
    activation_checkpointing: { type: 'boolean', default: false, description: "Keep only each transformer block's input during the forward pass and recompute the block in the backward pass (torch.utils.checkpoint): the same gradients, much less activation memory, about one more forward pass of time. Needs dropout 0." },
    eval_every: { type: ['integer', 'null'], minimum: 1, default: null, description: 'Evaluate (val loss + evaluators) every N optimiser steps (null = only at the end).' },
    checkpoint_every: { type: ['integer', 'null'], minimum: 1, default: null, description: 'Write a checkpoint every N optimiser steps (null = only at the end).' },
    keep_checkpoints: { type: 'integer', minimum: 1, default: 3, description: 'Newest `checkpoints/step-N/` folders kept (older ones are deleted; `checkpoints/best/` is kept separately).' },
    samples: { type: 'integer', minimum: 0, maximum: 32, default: 0, description: 'Held-out samples (data.val, else data.eval) answered greedily (at most 16 tokens) at each checkpoint, written to `samples/step-N.json` for the dashboard of `vlm serve`; 0 = none. Costs the decoder\'s generation weights (one more copy of its weights) from the first checkpoint on.' },
    best_metric: { type: 'string', default: 'val_loss', description: 'Metric that selects `checkpoints/best/` (`val_loss` is minimised, any evaluator metric such as `accuracy` is maximised).' },
    log_every: { type: 'integer', minimum: 1, default: 10, description: 'Print a progress line every N optimiser steps (metrics.jsonl gets every step).' },
    bad_sample_ratio: { type: 'number', minimum: 0, maximum: 1, default: 0.01, description: 'Undecodable / invalid samples are skipped and counted; above this fraction the run stops with an error.' },
    prefetch: { type: 'integer', minimum: 0, default: 2, description: 'Batches prepared ahead (image decoding, tokenisation) while the model computes.' },
    max_images_per_example: { type: 'integer', minimum: 1, default: 4, description: 'Chat samples (model.image_tokens: placeholders): samples with more images are left out (nanoVLM HEAD TrainConfig.max_images_per_example).' },
    packing: {
      type: ['object', 'null'],
      default: null,
      additionalProperties: false,
      description: "Pack several chat samples into each row of max_length tokens (nanoVLM HEAD's ConstantLengthDataset: a buffer of samples, balanced greedy knapsack, rows batched batch_size at a time); needs model.image_tokens: placeholders and train.max_steps. null = one sample per row.",
      properties: {
        attention: { type: 'string', enum: ['nanovlm', 'block-diagonal'], default: 'nanovlm', description: 'nanovlm: packed samples attend to the samples before them in the row and positions run on (nanoVLM HEAD); block-diagonal (not in nanoVLM): each sample attends only to itself and its positions start at 0, so packing changes no sample\'s result.' },
        max_sample_length: { type: 'integer', minimum: 1, default: 4096, description: 'Samples of this many tokens or more are left out (HEAD max_sample_length).' },
        max_images_per_knapsack: { type: ['integer', 'null'], minimum: 1, default: 18, description: 'At most this many images in one packed row (HEAD max_images_per_knapsack); null = no limit.' },
        buffer_sequences: { type: ['integer', 'null'], minimum: 1, default: null, description: "Samples are packed in buffers of about this many rows' tokens (HEAD num_of_sequences); null = 4 x batch_size, as HEAD's train.py." },
      },
    },
  },
} as const;

export default definePlugin({
  kind: 'stage',
  name: 'train',
  description: 'Train the model (options: the recipe\'s train: section): batch -> forward -> loss -> backward -> clip -> lr -> step -> log, with eval, checkpoints and --resume.',
  options,
  // an optimizer, a schedule and training data
  checkRecipe(recipe) {
    const problems: RecipeProblem[] = [];
    for (const k of ['optimizer', 'schedule']) {
      if (recipe[k] === undefined) problems.push({ path: [], message: `the train stage needs \`${k}\``, hint: `add ${k}: {use: <plugin>}` });
    }
    if (recipe.train?.packing && !recipe.train?.max_steps) {
      problems.push({ path: ['train', 'packing'], message: 'train.packing needs train.max_steps (the number of packed batches of an epoch is known only by packing)', hint: 'set train.max_steps (nanoVLM HEAD trains by steps too)' });
    }
    if (Array.isArray(recipe.data?.train) && recipe.data.train.length === 0) {
      problems.push({ path: ['data'], atKey: true, message: 'the train stage needs at least one dataset under data.train' });
    }
    return problems;
  },
  create(opts): Stage {
    return { title: 'train', run: (ctx, report) => train(ctx, report, opts) };
  },
});
