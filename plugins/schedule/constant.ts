// Constant learning rate (optionally with a linear warmup over the first `warmup_steps` steps).
import { definePlugin } from 'nanovlm-ts/plugin-api';
import type { Schedule } from 'nanovlm-ts/plugin-api';

export default definePlugin({
  kind: 'schedule',
  name: 'constant',
  description: 'The group lr at every step, after an optional linear warmup of warmup_steps steps.',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      warmup_steps: { type: 'integer', minimum: 0, default: 0, description: 'steps of linear warmup from lr/warmup_steps' },
    },
  } as const,
  create(options): Schedule {
    const w = options.warmup_steps;
    return { lr: (step, maxLr) => (step < w ? (maxLr * (step + 1)) / w : maxLr) };
  },
});
