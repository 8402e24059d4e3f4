// Cosine learning-rate schedule with linear warmup, exactly nanoVLM v0.1 train.py `get_lr`
// (itself from Karpathy's build-nanogpt train_gpt2.py):
//   https://github.com/huggingface/nanoVLM/blob/v0.1/train.py (get_lr)
//   min_lr = max_lr * 0.1; warmup_steps = max_steps * 0.03   (a float, not rounded)
//   it <  warmup_steps: max_lr * (it + 1) / warmup_steps
//   it >  max_steps:    min_lr
//   otherwise:          min_lr + 0.5 * (1 + cos(pi * (it - warmup) / (max_steps - warmup))) * (max_lr - min_lr)
// As in nanoVLM, `it` is the 0-based optimizer step and max_steps the total number of steps.
// Quirk kept on purpose: with fewer than ~34 total steps warmup_steps < 1, so step 0 gets
// max_lr / warmup_steps > max_lr (nanoVLM does the same); use `constant` for very short runs.
import { definePlugin } from 'nanovlm-ts/plugin-api';
import type { Schedule } from 'nanovlm-ts/plugin-api';

export function cosineWarmupLr(it: number, maxLr: number, maxSteps: number, warmupRatio = 0.03, minLrRatio = 0.1): number {
  const minLr = maxLr * minLrRatio;
  const warmupSteps = maxSteps * warmupRatio;
  // 1) linear warmup
  if (it < warmupSteps) return (maxLr * (it + 1)) / warmupSteps;
  // 2) after the end: the minimum
  if (it > maxSteps) return minLr;
  // 3) cosine decay from maxLr down to minLr
  const decayRatio = (it - warmupSteps) / (maxSteps - warmupSteps);
  const coeff = 0.5 * (1.0 + Math.cos(Math.PI * decayRatio)); // 1 -> 0
  return minLr + coeff * (maxLr - minLr);
}

export default definePlugin({
  kind: 'schedule',
  name: 'cosine-warmup',
  description: 'nanoVLM v0.1 get_lr: linear warmup over warmup_ratio of the steps, then cosine decay to min_lr_ratio x the group lr.',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      warmup_ratio: { type: 'number', minimum: 0, maximum: 1, default: 0.03, description: 'fraction of the total steps' },
      min_lr_ratio: { type: 'number', minimum: 0, maximum: 1, default: 0.1, description: 'final lr as a fraction of the group lr' },
    },
  } as const,
  create(options): Schedule {
    return { lr: (step, maxLr, totalSteps) => cosineWarmupLr(step, maxLr, totalSteps, options.warmup_ratio, options.min_lr_ratio) };
  },
});
