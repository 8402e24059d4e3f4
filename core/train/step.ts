// One optimizer step of training: the only copy. The train stage (plugins/stage/train.ts), `vlm
// bench`, `vlm memory`, bench/*.ts and the leak test all call `trainStep`, so what is measured and
// tested is what users run. nanoVLM v0.1 train.py's inner loop body:
//   https://github.com/huggingface/nanoVLM/blob/v0.1/train.py (train: loss.backward(); optimizer.step())
//
//   micro-batches (host) -> tensors -> forward -> loss -> backward   (x grad_accum, token-weighted)
//                        -> clip (global norm) -> one host read [loss, grad norm]
//                        -> lr per group from the schedule -> optimizer.step
//
// Signature (extend it through TrainStepOptions; keep the order of the phases):
//   trainStep(model, optimizer, micro, opts) -> Promise<StepResult | null> (async: reads wait for a GPU backend)
//     model      the VisionLanguageModel being trained
//     optimizer  the recipe's optimizer plugin; its groups name the trainable parameters
//     micro      the grad_accum host batches of this step (one for no accumulation)
//     opts       maxGradNorm, schedule + step + totalSteps, checkpoint, onNonFinite, mark (see below)
//   null: no micro-batch has a counted target (every sample longer than max_length); nothing changed.
//
// Gradient accumulation: nanoVLM's loss is the mean over every counted token of the batch, so
// micro-batch k (mean loss L_k over n_k counted tokens) is weighted by n_k / sum(n); the loss and
// the gradients then EQUAL those of the one concatenated batch (accumulatedLossAndGrads).
// Tensor work runs in tf.tidy scopes; the one host read (asynchronous: GPU backends) happens after
// backward and clipping and before the update, so a non-finite step never reaches the weights
// (opts.onNonFinite throws).
import * as tf from '@tensorflow/tfjs';
import type { HostBatch, Optimizer, Schedule } from '../types.ts';
import type { VisionLanguageModel } from '../model/vlm.ts';
import { countTargets, toTensors } from '../data/collator.ts';
import { accumulatedLossAndGrads, clipCoefficient, clipGradNorm, globalNorm } from './grads.ts';
import { toHost } from '../host.ts';

/** phase boundaries, in order, for benchmarks (`mark` is called after each) */
export type StepPhase = 'tensors' | 'backward' | 'clip' | 'update';

export interface TrainStepOptions {
  /** train.max_grad_norm: clip the global gradient norm to it (torch clip_grad_norm_); null or 0: no clipping */
  maxGradNorm: number | null;
  /** the learning-rate schedule; absent: every group trains at its base lr */
  schedule?: Schedule;
  /** index of this optimizer step (0-based), for the schedule */
  step?: number;
  /** the run's number of optimizer steps, for the schedule */
  totalSteps?: number;
  /** train.activation_checkpointing: recompute each block's activations in the backward pass (same gradients, less memory) */
  checkpoint?: boolean;
  /**
   * Called inside the step when the loss or the gradient norm is not finite, before the optimizer
   * runs (the weights are untouched); it should throw an error a user can act on. `grads` are the
   * unclipped gradients (alive only during the call). Default: throw a plain Error.
   */
  onNonFinite?: (info: { loss: number; gradNorm: number; grads: Map<string, tf.Tensor> }) => never | Promise<never>;
  /** called after each phase (benchmarks time them; wasm and cpu run kernels synchronously) */
  mark?: (phase: StepPhase) => void;
}

export interface StepResult {
  /** the step's loss: mean cross-entropy over every counted target token of the micro-batches */
  loss: number;
  /** global L2 norm of the gradients before clipping */
  gradNorm: number;
  /** the learning rate each optimizer group stepped with */
  lrs: number[];
  /** counted target tokens (targets != -100) of the step */
  counted: number;
}

/** The learning rate of each optimizer group at `step` (base lr without a schedule). */
export function groupLrs(optimizer: Optimizer, schedule: Schedule | undefined, step: number, totalSteps: number): number[] {
  return optimizer.groups.map((g) => (schedule ? schedule.lr(step, g.lr, totalSteps) : g.lr));
}

/** One optimizer step over the micro-batches `micro` (see the header). */
export async function trainStep(model: VisionLanguageModel, optimizer: Optimizer, micro: HostBatch[], opts: TrainStepOptions): Promise<StepResult | null> {
  const counts = micro.map((b) => countTargets(b.targets));
  const counted = counts.reduce((a, b) => a + b, 0);
  if (counted === 0) return null;
  const trainable = optimizer.groups.flatMap((g) => g.params);
  const mark = opts.mark ?? (() => {});
  // the step's tensors live inside the tidies below (or are disposed in `finally`); what leaves are numbers
  const batches = micro.map((b) => toTensors(b));
  await toHost(...batches.flatMap((b) => [b.targets, b.attentionMask])); // what the loss reads on the host (GPU backends: core/host.ts)
  mark('tensors');
  let names: string[] = [];
  const foldClip = !!opts.maxGradNorm && optimizer.takesGradScale === true;
  const kept = tf.tidy(() => {
    const { loss, grads } = accumulatedLossAndGrads(model, batches, counts, trainable, { checkpoint: opts.checkpoint }); // forward -> loss -> backward
    mark('backward');
    // clip: the optimizer multiplies by the coefficient itself when it can (one pass less over all gradients)
    const clipped = opts.maxGradNorm && !foldClip ? clipGradNorm(grads, opts.maxGradNorm) : { grads, norm: globalNorm(grads) };
    names = [...grads.keys()];
    return { stats: tf.stack([loss, clipped.norm]), raw: names.map((n) => grads.get(n)!), clipped: names.map((n) => clipped.grads.get(n)!) };
  });
  try {
    const [lossValue, gradNorm] = await kept.stats.data(); // the one host read of the step (async: a GPU backend cannot read synchronously)
    mark('clip');
    if (!Number.isFinite(lossValue) || !Number.isFinite(gradNorm)) {
      if (opts.onNonFinite) await opts.onNonFinite({ loss: lossValue, gradNorm, grads: new Map(names.map((n, i) => [n, kept.raw[i]])) });
      throw new Error(`training diverged: loss ${lossValue}, gradient norm ${gradNorm}`);
    }
    const lrs = groupLrs(optimizer, opts.schedule, opts.step ?? 0, opts.totalSteps ?? 1); // lr
    const grads = new Map(names.map((n, i) => [n, kept.clipped[i]]));
    tf.tidy(() => (foldClip ? optimizer.step(grads, lrs, clipCoefficient(gradNorm, opts.maxGradNorm!)) : optimizer.step(grads, lrs))); // step
    mark('update');
    return { loss: lossValue, gradNorm, lrs, counted };
  } finally {
    tf.dispose([kept.stats, ...new Set([...kept.raw, ...kept.clipped]), ...batches.flatMap((b) => [b.images, b.inputIds, b.targets, ...(b.attentionMask ? [b.attentionMask] : [])])]);
  }
}

/** Tokens a step processes, as the train stage reports them: real text tokens + image tokens per row. */
export function stepTokens(micro: HostBatch[], imageTokens: number): number {
  return micro.reduce((a, b) => a + b.attentionMask.reduce((s, x) => s + x, 0) + b.batchSize * imageTokens, 0);
}
