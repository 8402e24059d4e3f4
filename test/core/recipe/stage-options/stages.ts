// Stage plugins a user writes, for test/core/recipe/stage-options.test.ts: one replaces the
// built-in train stage and declares its own options (the recipe's `train:` section), one is a new
// stage with a section of its own (`report:`). Each records the options it was created with.
import { definePlugin } from '../../../../core/plugin.ts';

export const created: Record<string, unknown>[] = [];

export const myTrain = definePlugin({
  kind: 'stage',
  name: 'my-train',
  replaces: 'train',
  description: 'test: a replacement train stage with options of its own',
  options: {
    type: 'object',
    additionalProperties: false,
    required: ['steps'],
    properties: {
      steps: { type: 'integer', minimum: 1, description: 'optimizer steps' },
      schedule_note: { type: 'string', default: 'none', description: 'free text' },
    },
  } as const,
  create(opts) {
    created.push({ stage: 'train', ...opts });
    return { title: 'my train', async run() {} };
  },
});

export const report = definePlugin({
  kind: 'stage',
  name: 'report',
  description: 'test: a new stage with a section of its own',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: { format: { enum: ['md', 'html'], default: 'md', description: 'output format' } },
  } as const,
  create(opts) {
    created.push({ stage: 'report', ...opts });
    return { title: 'report', async run() {} };
  },
});
