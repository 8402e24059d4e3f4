// Mean token loss on a dataset: samples prompted and collated exactly as for training (the
// loader's defaultPrompt: `Question: {q} Answer:`, or the MMStar prompt for multiple-choice samples;
// nanoVLM VQACollator: prompt + answer + eos, left padded to lm_max_length, question and padding
// masked with -100; unusable samples skipped and counted), cross-entropy per batch (mean over its counted tokens), and the batch means
// weighted by their number of counted tokens, so the result is the mean over every counted token
// of the dataset. (nanoVLM v0.1's train.py averages the batch means instead; with equal-length
// answers the two agree.)
import * as tf from '@tensorflow/tfjs';
import { definePlugin } from '../../core/plugin.ts';
import { collate, encodeSample, toTensors, type EncodedSample } from '../../core/data/collator.ts';
import { defaultPrompt, sampleProblem } from '../../core/data/loader.ts';
import type { Evaluator, EvalResult } from '../../core/types.ts';
import { batches, COMMON_OPTIONS, needModel } from './common.ts';

/** number of target positions that carry a loss (!= -100) */
export function countTargets(targets: Int32Array): number {
  let n = 0;
  for (const t of targets) if (t !== -100) n++;
  return n;
}

/** token-weighted mean of per-batch mean losses */
export function weightedMean(batches: { loss: number; tokens: number }[]): { loss: number; tokens: number } {
  let sum = 0;
  let tokens = 0;
  for (const b of batches) {
    if (b.tokens === 0) continue;
    sum += b.loss * b.tokens;
    tokens += b.tokens;
  }
  return { loss: tokens ? sum / tokens : NaN, tokens };
}

export default definePlugin({
  kind: 'evaluator',
  name: 'val-loss',
  description: 'Mean cross-entropy per counted answer token over a dataset (collated as in training).',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      ...COMMON_OPTIONS,
      data: { ...COMMON_OPTIONS.data, default: 'val' },
    },
  } as const,
  create(options): Evaluator & { data: 'val' | 'eval' } {
    return {
      name: 'val-loss',
      data: options.data,
      async evaluate(ctx, dataset): Promise<EvalResult> {
        const { model, tokenizer, imageProcessor } = needModel(ctx, 'val-loss');
        const parts: { loss: number; tokens: number }[] = [];
        let samples = 0;
        let skipped = 0;
        for await (const batch of batches(dataset, options.batch_size, options.max_samples as number | null)) {
          if (ctx.signal?.aborted) throw ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error('interrupted');
          const encoded: EncodedSample[] = [];
          for (const s of batch) {
            try {
              const problem = sampleProblem(s);
              if (problem) throw new Error(problem);
              const pixels = await imageProcessor.process(s.image, s.id);
              encoded.push({ id: s.id, pixels, ...encodeSample(tokenizer, defaultPrompt(s), s.answer) });
            } catch (e) {
              skipped++;
              ctx.log.warn(`val-loss: skipped ${s.id}: ${(e as Error).message}`);
            }
          }
          if (!encoded.length) continue;
          const host = collate(encoded, { maxLength: model.maxLength, padTokenId: tokenizer.padTokenId, imageSize: imageProcessor.size });
          samples += host.batchSize;
          const tokens = countTargets(host.targets);
          if (tokens === 0) continue; // every sample too long: nothing to score
          const loss = tf.tidy(() => {
            const t = toTensors(host);
            return model.loss(model.forward(t.inputIds, t.images, t.attentionMask), t.targets);
          });
          parts.push({ loss: (await loss.data())[0], tokens });
          loss.dispose();
        }
        const { loss, tokens } = weightedMean(parts);
        return { evaluator: 'val-loss', dataset: dataset.name, metrics: { loss, tokens, n: samples, ...(skipped ? { skipped } : {}) } };
      },
    };
  },
});
