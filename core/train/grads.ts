// Gradient helpers of the training step: global-norm clipping exactly as torch 1.13
// `torch.nn.utils.clip_grad_norm_` (norm_type 2), gradient accumulation weighted by counted
// tokens, and the non-finite diagnostics used when a step goes NaN/Inf.
//   https://github.com/pytorch/pytorch/blob/v1.13.0/torch/nn/utils/clip_grad.py
import * as tf from '@tensorflow/tfjs';
import type { TrainBatch } from '../model/vlm.ts';
import { gradientScope } from './activation-checkpointing.ts';
import { sumSquaresNative } from '../kernels/native-direct.ts';

/** total L2 norm over all gradients: sqrt(sum_i ||g_i||^2) (a scalar tensor; no host read) */
export function globalNorm(grads: Map<string, tf.Tensor>): tf.Scalar {
  // native addon (wasm): one pass per gradient, float64 sums; each gradient's norm rounded to
  // float32 as torch's per-tensor norm is, the total in float64 then float32
  const sums = sumSquaresNative([...grads.values()]);
  if (sums) return tf.scalar(Math.sqrt(Array.from(sums, (s) => Math.fround(Math.sqrt(s)) ** 2).reduce((a, b) => a + b, 0)));
  return tf.tidy(() => {
    // torch: norm(stack([norm(g) for g in grads])) — the same value as sqrt(sum of squares)
    const norms = [...grads.values()].map((g) => tf.norm(g));
    return tf.norm(tf.stack(norms)) as tf.Scalar;
  });
}

/**
 * clip_grad_norm_: clip_coef = max_norm / (total_norm + 1e-6), clamped to at most 1, and every
 * gradient multiplied by it (torch 1.13 always multiplies, by 1 when nothing is clipped).
 * Returns new gradient tensors (the inputs are not disposed) and the norm before clipping.
 */
/**
 * clipGradNorm's coefficient from the norm's float32 value, on the host: min(max_norm /
 * (norm + 1e-6), 1) with each operation rounded to float32 as the tfjs chain rounds it, so the
 * same value (for an optimizer that folds it into its update: Optimizer.takesGradScale).
 */
export function clipCoefficient(norm: number, maxNorm: number): number {
  const f = Math.fround;
  return Math.min(f(f(maxNorm) / f(f(norm) + f(1e-6))), 1);
}

export function clipGradNorm(grads: Map<string, tf.Tensor>, maxNorm: number): { grads: Map<string, tf.Tensor>; norm: tf.Scalar } {
  const norm = globalNorm(grads);
  const coef = tf.tidy(() => tf.minimum(tf.div(maxNorm, tf.add(norm, 1e-6)), 1));
  const out = new Map<string, tf.Tensor>();
  for (const [k, g] of grads) out.set(k, tf.mul(g, coef));
  coef.dispose();
  return { grads: out, norm };
}

/**
 * Adds `w * grads` into the accumulator `acc` (created on first use), disposing the replaced
 * accumulator tensors. With w_k = tokens_k / total_tokens over the micro-batches of one step, the
 * sum of w_k * (mean loss_k, its grads) equals the loss and grads of the whole batch, because
 * nanoVLM's loss is a mean over all counted tokens of the batch.
 */
export function accumulate(acc: Map<string, tf.Tensor>, grads: Map<string, tf.Tensor>, w: number): void {
  for (const [k, g] of grads) {
    const prev = acc.get(k);
    // w = 1 (one micro-batch: every step without accumulation): g * 1 is g, so a clone (on wasm a
    // shared buffer) rather than a pass over every gradient (issue 16: 6.3M elements a `small` step)
    const next = tf.tidy(() => (prev ? tf.add(prev, tf.mul(g, w)) : w === 1 ? tf.clone(g) : tf.mul(g, w)));
    prev?.dispose();
    acc.set(k, next);
  }
}

/** true when every element is finite (reads the tensor: use on the failure path only; async: GPU backends) */
export async function isAllFinite(t: tf.Tensor): Promise<boolean> {
  const d = await t.data();
  for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) return false;
  return true;
}

/** forward order of the VLM's modules: the image goes through the vision encoder, the projector, then the decoder */
export const FORWARD_ORDER = ['vision_encoder', 'MP', 'decoder'];

/** parameter names with a non-finite gradient, in forward order (module order above, then declaration order) */
export async function nonFiniteGrads(grads: Map<string, tf.Tensor>): Promise<string[]> {
  const bad: string[] = [];
  for (const [k, g] of grads) if (!(await isAllFinite(g))) bad.push(k);
  const rank = (n: string) => {
    const i = FORWARD_ORDER.indexOf(n.split('.')[0]);
    return i < 0 ? FORWARD_ORDER.length : i;
  };
  return bad
    .map((n, i) => ({ n, i }))
    .sort((a, b) => rank(a.n) - rank(b.n) || a.i - b.i)
    .map((x) => x.n);
}

/** What lossAndGrads needs (structural: core/model/vlm.ts VisionLanguageModel fits). */
export interface GradModel {
  readonly params: Map<string, tf.Variable>;
  /** the training loss of a batch (a scalar), computed with training on; `checkpoint`: activation checkpointing per block */
  trainingLoss(batch: TrainBatch, checkpoint?: boolean): tf.Scalar;
}

/**
 * Loss and d loss / d parameter for the named trainable parameters (default: all). Frozen
 * parameters are simply not in `trainable`. The caller disposes the returned tensors.
 * `checkpoint`: activation checkpointing per block (train.activation_checkpointing; same gradients).
 */
export function lossAndGrads(model: GradModel, batch: TrainBatch, trainable?: string[], opts: { checkpoint?: boolean } = {}): { loss: tf.Scalar; grads: Map<string, tf.Tensor> } {
  const names = trainable ?? [...model.params.keys()];
  const vars = names.map((n) => {
    const v = model.params.get(n);
    if (!v) throw new Error(`lossAndGrads: no parameter named ${n}`);
    return v;
  });
  const { value, grads } = variableGradsLean(() => model.trainingLoss(batch, opts.checkpoint), vars); // = tf.variableGrads, freeing as it goes
  const out = new Map<string, tf.Tensor>();
  names.forEach((n, i) => {
    const g = grads[vars[i].name];
    if (g) out.set(n, g);
  });
  return { loss: value, grads: out };
}

/**
 * forward -> loss -> backward over the micro-batches of one optimizer step. Micro-batch k, whose
 * targets count n_k tokens, is weighted by n_k / sum(n): the result is exactly the loss and the
 * gradients of the concatenated batch (nanoVLM's loss is a mean over the batch's counted tokens).
 * Returns kept tensors; the caller disposes them. `counts[k]` = countTargets(targets of batch k) (core/data/collator.ts).
 */
export function accumulatedLossAndGrads(
  model: GradModel,
  batches: TrainBatch[],
  counts: number[],
  trainable?: string[],
  opts: { checkpoint?: boolean } = {},
): { loss: tf.Scalar; grads: Map<string, tf.Tensor> } {
  const total = counts.reduce((a, b) => a + b, 0);
  const grads = new Map<string, tf.Tensor>();
  let loss = tf.scalar(0);
  batches.forEach((batch, k) => {
    if (counts[k] === 0) return; // nothing to learn from (and its mean loss would be 0/0)
    const w = counts[k] / total;
    const r = lossAndGrads(model, batch, trainable, opts);
    accumulate(grads, r.grads, w);
    const prev = loss;
    loss = tf.tidy(() => tf.add(prev, tf.mul(r.loss, w)));
    tf.dispose([prev, r.loss, ...r.grads.values()]);
  });
  return { loss, grads };
}

// ---- gradients that free as they go ---------------------------------------------------------------
//
// tf.variableGrads (tfjs-core engine.gradients + tape.backpropagateGradients) keeps, until the
// whole backward pass is done, the gradient of EVERY intermediate tensor (the map entry of a node's
// output is never released after the node is processed) and every node's saved tensors. On the
// `small` benchmark that doubled the step's tensor memory (the wasm heap peaked at ~570 MiB of
// live tensors for 72 MiB of parameters and optimiser state). `variableGradsLean` walks the same
// tape in the same order with the same gradient functions, so the numbers are identical, but
// releases a node's output gradients and saved tensors as soon as the node is processed (its
// outputs' gradients are complete then: the tape is in topological order).

type TapeNode = {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  saved?: tf.Tensor[];
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
};
type EngineInternals = {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  tidy<T extends tf.TensorContainer>(name: string, f: () => T): T;
};

/** tfjs-core tape.ts getFilteredNodesXToY: the nodes on a path from xs to y, inputs pruned to those from xs. */
function filterTape(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set<number>(xs.map((x) => x.id));
  const nodesFromX = new Set<number>();
  for (const node of tape) {
    for (const name in node.inputs) {
      if (fromX.has(node.inputs[name].id)) {
        for (const o of node.outputs) fromX.add(o.id);
        nodesFromX.add(node.id);
        break;
      }
    }
  }
  const toY = new Set<number>([y.id]);
  const nodesToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (node.outputs.some((o) => toY.has(o.id))) {
      for (const name in node.inputs) toY.add(node.inputs[name].id);
      nodesToY.add(node.id);
    }
  }
  const out: TapeNode[] = [];
  for (const node of tape) {
    if (!nodesFromX.has(node.id) || !nodesToY.has(node.id)) continue;
    const inputs: Record<string, tf.Tensor> = {};
    for (const name in node.inputs) if (fromX.has(node.inputs[name].id)) inputs[name] = node.inputs[name];
    out.push({ ...node, inputs });
  }
  return out;
}

/**
 * tf.variableGrads(f, vars) with the backward pass releasing memory as it goes (see above):
 * `{value, grads}` with grads keyed by variable name, like tf.variableGrads. f must return a scalar.
 */
export function variableGradsLean(f: () => tf.Scalar, vars: tf.Variable[]): { value: tf.Scalar; grads: Record<string, tf.Tensor> } {
  // activation checkpointing: what the recomputation needs lives until the end of the backward pass
  return gradientScope(new Set(vars.map((v) => v.id)), () => variableGradsLeanInner(f, vars));
}

function variableGradsLeanInner(f: () => tf.Scalar, vars: tf.Variable[]): { value: tf.Scalar; grads: Record<string, tf.Tensor> } {
  const engine = tf.engine() as unknown as EngineInternals;
  if (engine.state.gradientDepth > 0) return tf.variableGrads(f, vars) as { value: tf.Scalar; grads: Record<string, tf.Tensor> }; // nested: keep tfjs' own
  const y = engine.scopedRun(
    () => engine.startTape(),
    () => engine.endTape(),
    () => engine.tidy('forward', f),
  );
  if (!(y instanceof tf.Tensor) || y.rank !== 0) throw new Error('variableGradsLean: f must return a scalar tensor');
  const tape = engine.state.activeTape ?? [];
  const filtered = filterTape(tape, vars, y);
  const keepIds = new Set(vars.map((v) => v.id));
  const { value, grads } = engine.tidy('backward', () => {
    const acc = new Map<number, tf.Tensor>(); // tensor id -> its accumulated gradient
    const refs = new Map<tf.Tensor, number>(); // gradient object -> number of acc entries holding it
    const hold = (t: tf.Tensor) => refs.set(t, (refs.get(t) ?? 0) + 1);
    const release = (t: tf.Tensor) => {
      const n = (refs.get(t) ?? 1) - 1;
      if (n > 0) refs.set(t, n);
      else {
        refs.delete(t);
        t.dispose();
      }
    };
    const ones = tf.onesLike(y);
    acc.set(y.id, ones);
    hold(ones);
    for (let i = filtered.length - 1; i >= 0; i--) {
      const node = filtered[i];
      if (!node.gradient) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
      const dys = node.outputs.map((o) => acc.get(o.id) ?? null);
      const inputGradients = node.gradient(dys);
      for (const name in node.inputs) {
        if (!(name in inputGradients)) throw new Error(`Cannot backprop through input ${name} of ${node.kernelName}.`);
        const dx = tf.tidy(() => inputGradients[name]());
        const x = node.inputs[name];
        if (dx.dtype !== 'float32') throw new Error(`Error in gradient for op ${node.kernelName}: the gradient of input ${name} has dtype ${dx.dtype}`);
        if (dx.shape.join() !== x.shape.join()) throw new Error(`Error in gradient for op ${node.kernelName}: gradient of ${name} has shape ${dx.shape}, input ${x.shape}`);
        const cur = acc.get(x.id);
        if (cur === undefined) {
          acc.set(x.id, dx);
          hold(dx);
        } else {
          const sum = tf.add(cur, dx);
          acc.set(x.id, sum);
          hold(sum);
          release(cur);
          if (!refs.has(dx)) dx.dispose();
        }
      }
      // the outputs' gradients and the node's saved tensors are not needed any more
      for (const o of node.outputs) {
        const g = acc.get(o.id);
        if (g !== undefined && !keepIds.has(o.id)) {
          acc.delete(o.id);
          release(g);
        }
      }
      for (const s of node.saved ?? []) s.dispose();
    }
    const grads: Record<string, tf.Tensor> = {};
    for (const v of vars) {
      const g = acc.get(v.id);
      if (g !== undefined) grads[v.name] = g;
    }
    return { value: y, grads };
  });
  // release every node's saved tensors (also those off the x -> y paths), as engine.gradients does
  for (const node of tape) for (const s of node.saved ?? []) s.dispose();
  engine.state.activeTape = null;
  return { value, grads };
}
