// Gradient helpers of the training step: global-norm clipping exactly as torch 1.13
// `torch.nn.utils.clip_grad_norm_` (norm_type 2), gradient accumulation weighted by counted
// tokens, and the non-finite diagnostics used when a step goes NaN/Inf.
//   https://github.com/pytorch/pytorch/blob/v1.13.0/torch/nn/utils/clip_grad.py
import * as tf from '@tensorflow/tfjs';

/** total L2 norm over all gradients: sqrt(sum_i ||g_i||^2) (a scalar tensor; no host read) */
export function globalNorm(grads: Map<string, tf.Tensor>): tf.Scalar {
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
export function clipGradNorm(grads: Map<string, tf.Tensor>, maxNorm: number): { grads: Map<string, tf.Tensor>; norm: tf.Scalar } {
  const norm = globalNorm(grads);
  const coef = tf.tidy(() => tf.minimum(tf.div(maxNorm, tf.add(norm, 1e-6)), 1));
  const out = new Map<string, tf.Tensor>();
  for (const [k, g] of grads) out.set(k, tf.mul(g, coef));
  coef.dispose();
  return { grads: out, norm };
}

/** number of target positions that carry a loss (targets != -100), counted on the host */
export function countedTokens(targets: Int32Array): number {
  let n = 0;
  for (let i = 0; i < targets.length; i++) if (targets[i] !== -100) n++;
  return n;
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
    const next = tf.tidy(() => (prev ? tf.add(prev, tf.mul(g, w)) : tf.mul(g, w)));
    prev?.dispose();
    acc.set(k, next);
  }
}

/** true when every element is finite (reads the tensor: use on the failure path only) */
export function isAllFinite(t: tf.Tensor): boolean {
  const d = t.dataSync();
  for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) return false;
  return true;
}

/** forward order of the VLM's modules: the image goes through the vision encoder, the projector, then the decoder */
export const FORWARD_ORDER = ['vision_encoder', 'MP', 'decoder'];

/** parameter names with a non-finite gradient, in forward order (module order above, then declaration order) */
export function nonFiniteGrads(grads: Map<string, tf.Tensor>): string[] {
  const bad = [...grads.entries()].filter(([, g]) => !isAllFinite(g)).map(([k]) => k);
  const rank = (n: string) => {
    const i = FORWARD_ORDER.indexOf(n.split('.')[0]);
    return i < 0 ? FORWARD_ORDER.length : i;
  };
  return bad
    .map((n, i) => ({ n, i }))
    .sort((a, b) => rank(a.n) - rank(b.n) || a.i - b.i)
    .map((x) => x.n);
}

/** What model.lossAndGrads needs (structural: core/model/vlm.ts VisionLanguageModel fits). */
export interface GradModel {
  lossAndGrads(
    batch: { images: tf.Tensor4D; inputIds: tf.Tensor2D; attentionMask: tf.Tensor2D | null; targets: tf.Tensor2D },
    trainable?: string[],
  ): { loss: tf.Scalar; grads: Map<string, tf.Tensor> };
}

/**
 * forward -> loss -> backward over the micro-batches of one optimizer step. Micro-batch k, whose
 * targets count n_k tokens, is weighted by n_k / sum(n): the result is exactly the loss and the
 * gradients of the concatenated batch (nanoVLM's loss is a mean over the batch's counted tokens).
 * Returns kept tensors; the caller disposes them. `counts[k]` = countedTokens(targets of batch k).
 */
export function accumulatedLossAndGrads(
  model: GradModel,
  batches: { images: tf.Tensor4D; inputIds: tf.Tensor2D; attentionMask: tf.Tensor2D | null; targets: tf.Tensor2D }[],
  counts: number[],
  trainable?: string[],
): { loss: tf.Scalar; grads: Map<string, tf.Tensor> } {
  const total = counts.reduce((a, b) => a + b, 0);
  const grads = new Map<string, tf.Tensor>();
  let loss = tf.scalar(0);
  batches.forEach((batch, k) => {
    if (counts[k] === 0) return; // nothing to learn from (and its mean loss would be 0/0)
    const w = counts[k] / total;
    const r = model.lossAndGrads(batch, trainable);
    accumulate(grads, r.grads, w);
    const prev = loss;
    loss = tf.tidy(() => tf.add(prev, tf.mul(r.loss, w)));
    tf.dispose([prev, r.loss, ...r.grads.values()]);
  });
  return { loss, grads };
}
