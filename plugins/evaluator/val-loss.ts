// Mean token loss on a dataset: samples prompted and collated exactly as for training (the
// loader's defaultPrompt: `Question: {q} Answer:`, or the MMStar prompt for multiple-choice samples;
// nanoVLM VQACollator: prompt + answer + eos, left padded to lm_max_length, question and padding
// masked with -100; unusable samples skipped and counted), then core/train/eval-loss.ts
// meanTokenLoss (the train stage's validation loss): the mean over every counted token.
// A model in nanoVLM HEAD's format (image tokens as placeholders) is scored on HEAD's chat samples
// instead, as the train stage's loader makes them (core/data/chat.ts prepareChatSample: the image
// string of the tiles, the chat template, loss on the assistant's tokens; collateChat: left padded
// to max_length, samples longer than it dropped). Packing (train.packing) is the train stage's: the
// evaluator scores one sample per row.
import { definePlugin } from 'nanovlm-ts/plugin-api';
import { collate, encodeSample, type EncodedSample } from '../../core/data/collator.ts';
import { meanTokenLoss } from '../../core/train/eval-loss.ts';
import { defaultPrompt } from '../../core/data/loader.ts';
import { assistantPrefixLength, prepareChatSample, type PreparedChat } from '../../core/data/chat.ts';
import { collateChat } from '../../core/data/chat-collator.ts';
import type { Evaluator, EvalResult, HostBatch } from 'nanovlm-ts/plugin-api';
import { batches, COMMON_OPTIONS, isHeadFormat, needModel, promptProblem } from './common.ts';
import { UserError } from 'nanovlm-ts/plugin-api';

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
      measuresValLoss: true, // the train stage computes this number itself while training
      async evaluate(ctx, dataset): Promise<EvalResult> {
        const { model, tokenizer, imageProcessor } = needModel(ctx, 'val-loss');
        const head = isHeadFormat(model);
        let prefixLen: number | undefined;
        let samples = 0;
        let skipped = 0;
        async function* hostBatches(): AsyncGenerator<HostBatch> {
          for await (const batch of batches(dataset, options.batch_size, options.max_samples as number | null)) {
            const encoded: EncodedSample[] = [];
            const chats: PreparedChat[] = [];
            for (const s of batch) {
              try {
                const problem = promptProblem(model, s);
                if (problem) throw new Error(problem);
                if (head) chats.push(await prepareChatSample(s, tokenizer, imageProcessor, { imageTokenLength: model.numImageTokens, maxImagesPerExample: Infinity, prefixLen: (prefixLen ??= assistantPrefixLength(tokenizer)) }));
                else {
                  const pixels = await imageProcessor.process(s.image, s.id);
                  encoded.push({ id: s.id, pixels, ...encodeSample(tokenizer, defaultPrompt(s), s.answer) });
                }
              } catch (e) {
                if (e instanceof UserError) throw e;
                skipped++;
                ctx.log.warn(`val-loss: skipped ${s.id}: ${(e as Error).message}`);
              }
            }
            if (!encoded.length && !chats.length) continue;
            const shape = { maxLength: model.maxLength, padTokenId: tokenizer.padTokenId, imageSize: imageProcessor.size };
            const host = head ? collateChat(chats, shape) : collate(encoded, shape);
            samples += host.batchSize;
            yield host;
          }
        }
        const { loss, tokens } = await meanTokenLoss(model, hostBatches(), { signal: ctx.signal });
        return { evaluator: 'val-loss', dataset: dataset.name, metrics: { loss, tokens, n: samples, ...(skipped ? { skipped } : {}) } };
      },
    };
  },
});
