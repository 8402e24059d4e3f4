// Validation loss, the one copy (the train stage's periodic eval and the `val-loss` evaluator):
// cross-entropy per batch (mean over its counted tokens, model.loss), and the batch means weighted
// by their number of counted tokens, so the result is the mean over every counted token of the
// data. (nanoVLM v0.1's train.py averages the batch means instead; with equal-length answers the
// two agree.)
import * as tf from '@tensorflow/tfjs';
import type { HostBatch } from '../types.ts';
import type { VisionLanguageModel } from '../model/vlm.ts';
import { countTargets, toTensors } from '../data/collator.ts';

/** Token-weighted mean loss over `batches`; `loss` is NaN when no batch counts a token. */
export async function meanTokenLoss(
  model: VisionLanguageModel,
  batches: AsyncIterable<HostBatch>,
  opts: { signal?: AbortSignal } = {},
): Promise<{ loss: number; tokens: number }> {
  let sum = 0;
  let tokens = 0;
  for await (const host of batches) {
    if (opts.signal?.aborted) throw opts.signal.reason instanceof Error ? opts.signal.reason : new Error('interrupted');
    const k = countTargets(host.targets);
    if (k === 0) continue; // every sample too long: nothing to score
    const loss = tf.tidy(() => {
      const t = toTensors(host);
      return model.loss(model.forward(t.inputIds, t.images, t.attentionMask, { training: false, segments: t.segmentIds }), t.targets);
    });
    sum += (await loss.data())[0] * k;
    tokens += k;
    loss.dispose();
  }
  return { loss: tokens ? sum / tokens : NaN, tokens };
}
