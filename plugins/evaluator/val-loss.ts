// Mean token loss on a dataset: samples collated exactly as for training (nanoVLM VQACollator:
// `Question: {q} Answer:` + answer + eos, left padded to lm_max_length, question and padding
// masked with -100), cross-entropy per batch (mean over its counted tokens), and the batch means
// weighted by their number of counted tokens, so the result is the mean over every counted token
// of the dataset. (nanoVLM v0.1's train.py averages the batch means instead; with equal-length
// answers the two agree.)
import * as tf from '@tensorflow/tfjs';
import { definePlugin } from '../../core/plugin.ts';
import { BatchLoader } from '../../core/data/loader.ts';
import { toTensors } from '../../core/data/collator.ts';
import type { Dataset, Evaluator, EvalResult, HostBatch } from '../../core/types.ts';
import { COMMON_OPTIONS, needModel } from './common.ts';

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
  create(options, context): Evaluator & { data: 'val' | 'eval' } {
    return {
      name: 'val-loss',
      data: options.data,
      async evaluate(ctx, dataset): Promise<EvalResult> {
        const { model, tokenizer, imageProcessor } = needModel(ctx, 'val-loss');
        const max = options.max_samples as number | null;
        const limited: Dataset = max == null ? dataset : limitDataset(dataset, max);
        const loader = new BatchLoader({
          datasets: [limited],
          tokenizer,
          imageProcessor,
          batchSize: options.batch_size,
          maxLength: model.maxLength,
          seed: ctx.seed ?? context.seed,
          shuffle: false,
          dropLast: false,
          log: ctx.log,
        });
        const parts: { loss: number; tokens: number }[] = [];
        let samples = 0;
        for await (const { batch } of loader.epoch(0, { skip: 0 }) as AsyncIterable<{ batch: HostBatch }>) {
          if (ctx.signal?.aborted) throw ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error('interrupted');
          samples += batch.batchSize;
          const tokens = countTargets(batch.targets);
          if (tokens === 0) continue; // every sample too long: nothing to score
          const loss = tf.tidy(() => {
            const t = toTensors(batch);
            return model.loss(model.forward(t.inputIds, t.images, t.attentionMask), t.targets);
          });
          parts.push({ loss: (await loss.data())[0], tokens });
          loss.dispose();
        }
        const { loss, tokens } = weightedMean(parts);
        return { evaluator: 'val-loss', dataset: dataset.name, metrics: { loss, tokens, n: samples } };
      },
    };
  },
});

/** the first `max` samples of a dataset */
function limitDataset(ds: Dataset, max: number): Dataset {
  return {
    name: ds.name,
    size: async () => Math.min(max, await ds.size()),
    async *samples(opts) {
      let n = 0;
      for await (const s of ds.samples(opts)) {
        if (n++ >= max) return;
        yield s;
      }
    },
  };
}
