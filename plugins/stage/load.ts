// The load stage: build the model, tokenizer and image processor (core/build.ts) and the datasets,
// and put them on the run context for the stages that follow.
import { buildComponents, buildDatasets } from '../../core/build.ts';
import { surveyLengths } from '../../core/data/loader.ts';
import { definePlugin } from 'nanovlm-ts/plugin-api';
import type { RunContext, Stage } from 'nanovlm-ts/plugin-api';

/** warn when at least this share of the surveyed training samples is longer than max_length */
const TOO_LONG_WARNING = 0.1;

function loadStage(): Stage {
  return {
    title: 'load',
    async run(ctx: RunContext, report) {
      report('building the model');
      const { model, tokenizer, imageProcessor } = await buildComponents(ctx.recipe, ctx.registry, ctx);
      Object.assign(ctx, { model, tokenizer, imageProcessor });
      report('opening the datasets');
      ctx.datasets = await buildDatasets(ctx.recipe, ctx.registry, ctx);
      // rows longer than max_length are ignored in training (as nanoVLM): a large share of them is
      // said now, with the max_length that would keep them, not noticed after training
      // (v0.1's samples; a model with image tokens as placeholders trains on chat samples, whose too long ones HEAD drops)
      for (const [i, ds] of model.imageTokenId === null ? ctx.datasets.train.entries() : []) {
        report(`checking the text lengths of ${ds.name}`);
        const s = await surveyLengths(ds, tokenizer, model.maxLength);
        if (s.surveyed && s.tooLong / s.surveyed >= TOO_LONG_WARNING) {
          ctx.log.warn(
            `data.train[${i}] (${ds.name}): ${s.tooLong} of the first ${s.surveyed} samples (${Math.round((100 * s.tooLong) / s.surveyed)}%) are longer than ` +
              `model.decoder.max_length ${model.maxLength} tokens and will be ignored in training; max_length ${s.longest} would keep them all`,
          );
        }
      }
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
  // the model components it builds: all of them, or (model.from names a checkpoint) the tokenizer and image processor
  checkRecipe(recipe) {
    const model = recipe.model ?? {};
    const needed = model.from ? ['tokenizer', 'image_processor'] : ['vision', 'projector', 'decoder', 'tokenizer', 'image_processor'];
    return needed
      .filter((k) => model[k] === undefined)
      .map((k) => ({
        path: ['model'],
        atKey: true,
        message: `missing model.${k}${model.from ? '' : ' (needed unless model.from names a checkpoint)'}`,
        hint: `add model.${k}: {use: <plugin>} (see \`vlm plugins\`)`,
      }));
  },
  create: loadStage,
});
