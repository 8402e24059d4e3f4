// The load stage: build the model, tokenizer and image processor (core/build.ts) and the datasets,
// and put them on the run context for the stages that follow.
import { buildComponents, buildDatasets } from '../../core/build.ts';
import { definePlugin } from '../../core/plugin.ts';
import type { RunContext, Stage } from '../../core/types.ts';

function loadStage(): Stage {
  return {
    title: 'load',
    async run(ctx: RunContext, report) {
      report('building the model');
      const { model, tokenizer, imageProcessor } = await buildComponents(ctx.recipe, ctx.registry, ctx);
      Object.assign(ctx, { model, tokenizer, imageProcessor });
      report('opening the datasets');
      ctx.datasets = await buildDatasets(ctx.recipe, ctx.registry, ctx);
      const counts = model.parameterCounts();
      const n = (role: 'train' | 'val' | 'eval') => ctx.datasets[role].length;
      const line = `model ${(counts.total / 1e6).toFixed(2)}M params (vision ${counts.vision_encoder}, MP ${counts.MP}, decoder ${counts.decoder}); datasets train ${n('train')}, val ${n('val')}, eval ${n('eval')}`;
      ctx.log.info(line);
      ctx.facts.parameters = counts;
      report(line);
    },
  };
}

export default definePlugin({
  kind: 'stage',
  name: 'load',
  description: 'Build the model, tokenizer, image processor and datasets the recipe describes (loading weights from model.from if set).',
  options: { type: 'object', additionalProperties: false, properties: {} } as const,
  create: loadStage,
});
