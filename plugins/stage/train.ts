// The training stage (work in progress: the loop lands in the next commits).
import { definePlugin } from '../../core/plugin.ts';
import type { Stage } from '../../core/types.ts';

export default definePlugin({
  kind: 'stage',
  name: 'train',
  description: 'Train the model: batch -> forward -> loss -> backward -> clip -> lr -> step -> log, with eval, checkpoints and resume.',
  options: { type: 'object', additionalProperties: false, properties: {} } as const,
  create(): Stage {
    return {
      title: 'train',
      async run() {
        throw new Error('the train stage is not implemented yet');
      },
    };
  },
});
