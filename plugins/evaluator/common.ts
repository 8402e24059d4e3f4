// Shared by the generative evaluators (multiple-choice, exact-match): read a dataset in batches,
// format each question into a prompt, preprocess the images, generate greedily (batched, left
// padded) and hand back (sample, answer text) pairs. Unusable samples (bad image, empty field) are
// skipped and counted, as the training loader does. Not a plugin itself.
// The prompt is the model's format (promptRow, the one place that builds it): nanoVLM v0.1's text
// prompt with the image as a prefix of embeddings, or, for a model with image tokens as
// placeholders, nanoVLM HEAD's (eval/lmms_eval_wrapper.py, as `vlm generate`: core/chat-prompts.ts):
// the image string of the tiles + the question through the chat template with the generation
// prompt, then the benchmark's assistant prefix. Scoring (likelihood, val-loss) uses the training
// format of the model: v0.1's collator or HEAD's chat samples (core/data/chat.ts).
import { generateBatch, type GenerateOptions } from '../../core/generate.ts';
import { UserError } from 'nanovlm-ts/plugin-api';
import { sampleProblem } from '../../core/data/loader.ts';
import type { Dataset, RunContext, Sample } from 'nanovlm-ts/plugin-api';
import * as tf from '@tensorflow/tfjs';
import { collate, encodeSample, IGNORE, isTooLong, toTensors, type EncodedSample } from '../../core/data/collator.ts';
import { batchPromptRows, chatPromptRow, type ChatPromptRow } from '../../core/chat-prompts.ts';
import { assistantPrefixLength, chatSampleProblem, prepareChatSample, sampleImages, type PreparedChat } from '../../core/data/chat.ts';
import { collateChat } from '../../core/data/chat-collator.ts';
import type { VisionLanguageModel } from '../../core/model/vlm.ts';

/** The option schema every evaluator shares (each plugin adds its own keys). */
export const COMMON_OPTIONS = {
  data: {
    type: 'string',
    enum: ['val', 'eval'],
    description: 'which data list of the recipe to evaluate on (data.val or data.eval)',
  },
  max_samples: {
    type: ['integer', 'null'],
    minimum: 1,
    default: null,
    description: 'evaluate at most this many samples of each dataset (null = all)',
  },
  batch_size: { type: 'integer', minimum: 1, default: 16, description: 'samples per forward pass' },
} as const;

/** the `padding` option of the generating evaluators */
export const PADDING_OPTION = {
  type: 'string',
  enum: ['batch', 'max_length'],
  default: 'batch',
  description:
    "batch = left-pad the prompts to the longest of the batch (nanoVLM's MMStarCollator); max_length = left-pad every prompt so that a one-token answer + eos ends at the decoder's max_length, where training (nanoVLM's VQACollator) put it: for small models trained from scratch, which are sensitive to the distance between image and answer (docs/generation.md)",
} as const;

/** the prompt length to left-pad to for a `padding` option value (0 = the longest of the batch) */
export function padToFor(padding: string, ctx: RunContext): number {
  return padding === 'max_length' && ctx.model ? ctx.model.maxLength - 2 : 0;
}

/** The model pieces an evaluator needs, or a UserError saying the load stage must run first. */
export function needModel(ctx: RunContext, evaluator: string) {
  const { model, tokenizer, imageProcessor } = ctx;
  if (!model || !tokenizer || !imageProcessor) {
    throw new UserError(`evaluator ${evaluator}: no model loaded`, {
      hint: 'the load stage must run before eval (stages: [load, ..., eval]) or pass --model to `vlm eval`',
    });
  }
  return { model, tokenizer, imageProcessor };
}

function checkAbort(ctx: RunContext): void {
  if (ctx.signal?.aborted) throw ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error('interrupted');
}

/** Iterate a dataset in batches of `batchSize`, at most `maxSamples` samples. */
export async function* batches(dataset: Dataset, batchSize: number, maxSamples: number | null | undefined) {
  let batch: Sample[] = [];
  let n = 0;
  for await (const s of dataset.samples({ epoch: 0 })) {
    if (maxSamples != null && n >= maxSamples) break;
    batch.push(s);
    n++;
    if (batch.length === batchSize) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length) yield batch;
}

/** a model in nanoVLM HEAD's input format (image tokens as placeholders, chat prompts) */
export function isHeadFormat(model: VisionLanguageModel): boolean {
  return model.imageTokenId !== null;
}

/** How an evaluator words a question, in each model format. */
export interface PromptFormat {
  /** nanoVLM v0.1: the whole text prompt (e.g. vqaPrompt) */
  format: (question: string) => string;
  /** nanoVLM HEAD: the user message (default: the question as it is) */
  content?: (question: string) => string;
  /** nanoVLM HEAD: text after the generation prompt (the wrapper's assistant_prefix, e.g. "Answer:") */
  assistantPrefix?: string;
}

/** what is wrong with a sample for the model's format, or null */
export function promptProblem(model: VisionLanguageModel, sample: Sample): string | null {
  return isHeadFormat(model) ? chatSampleProblem(sample) : sampleProblem(sample);
}

/**
 * The prompt of one sample in the model's format: v0.1 = the tokens of format(question) and the
 * image (one tile); HEAD = chatPromptRow (every image of the sample split into tiles, the image
 * string + content(question) through the chat template, the generation prompt, assistantPrefix).
 * Image errors throw.
 */
export async function promptRow(ctx: RunContext, evaluator: string, sample: Sample, pf: PromptFormat): Promise<ChatPromptRow> {
  const { model, tokenizer, imageProcessor } = needModel(ctx, evaluator);
  if (!isHeadFormat(model)) {
    return { ids: tokenizer.encode(pf.format(sample.question)), tiles: await imageProcessor.process(sample.image, sample.id), count: 1 };
  }
  const prompt = (pf.content ?? ((q: string) => q))(sample.question);
  return chatPromptRow(tokenizer, imageProcessor, { prompt, images: sampleImages(sample), id: sample.id }, {
    imageTokenLength: model.numImageTokens,
    assistantPrefix: pf.assistantPrefix,
    indexTags: false, // the wrapper: get_image_string once per image
  });
}

export interface Answered {
  sample: Sample;
  /** decoded generation, special tokens skipped */
  output: string;
}

/**
 * Generate an answer for each sample of `dataset`: the prompt in the model's format (promptRow:
 * v0.1 format(sample.question); HEAD the chat prompt), greedy, batched. Samples whose image cannot
 * be decoded are skipped and counted.
 */
export async function answerAll(
  ctx: RunContext,
  evaluator: string,
  dataset: Dataset,
  opts: PromptFormat & {
    batchSize: number;
    maxSamples?: number | null;
    generate: GenerateOptions;
    /** left-pad every prompt to at least this many tokens (default 0: the longest prompt of the batch) */
    padTo?: number;
    /** called after each batch with the number of samples read so far */
    onProgress?: (done: number) => void;
  },
): Promise<{ answered: Answered[]; skipped: string[] }> {
  const { model, tokenizer, imageProcessor } = needModel(ctx, evaluator);
  const answered: Answered[] = [];
  const skipped: string[] = [];
  let seen = 0;
  for await (const batch of batches(dataset, opts.batchSize, opts.maxSamples)) {
    checkAbort(ctx);
    seen += batch.length;
    const ok: { sample: Sample; row: ChatPromptRow }[] = [];
    for (const sample of batch) {
      try {
        const problem = promptProblem(model, sample);
        if (problem) throw new Error(problem);
        ok.push({ sample, row: await promptRow(ctx, evaluator, sample, opts) });
      } catch (e) {
        if (e instanceof UserError) throw e;
        skipped.push(sample.id);
        ctx.log.warn(`${evaluator}: skipped ${sample.id}: ${(e as Error).message}`);
      }
    }
    if (!ok.length) {
      opts.onProgress?.(seen);
      continue;
    }
    // left-pad the prompts to the longest of the batch (nanoVLM MMStarCollator: padding=True, left; HEAD's wrapper: padding="longest", left)
    const prompts = batchPromptRows(
      ok.map((o) => o.row),
      tokenizer.padTokenId,
      imageProcessor.size,
      opts.padTo ?? 0,
    );
    const tokens = await generateBatch(model, prompts, { eosTokenId: tokenizer.eosTokenId, ...opts.generate });
    ok.forEach((o, b) => answered.push({ sample: o.sample, output: tokenizer.decode(tokens[b], { skipSpecialTokens: true }) }));
    opts.onProgress?.(seen);
    // let the event loop breathe (progress rendering, signals) between batches
    await new Promise((r) => setImmediate(r));
  }
  return { answered, skipped };
}

/**
 * Metrics grouped by sample.category: `means` are averaged (accuracies), `counts` summed;
 * every group also gets its sample count `n`. Categories sorted by name.
 */
export function perCategory(
  rows: { category?: string; means: Record<string, number>; counts?: Record<string, number> }[],
): Record<string, Record<string, number>> {
  const groups = new Map<string, { n: number; means: Record<string, number>; counts: Record<string, number> }>();
  for (const r of rows) {
    const key = r.category ?? '(none)';
    const g = groups.get(key) ?? { n: 0, means: {}, counts: {} };
    g.n++;
    for (const [k, v] of Object.entries(r.means)) g.means[k] = (g.means[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.counts ?? {})) g.counts[k] = (g.counts[k] ?? 0) + v;
    groups.set(key, g);
  }
  const out: Record<string, Record<string, number>> = {};
  for (const [key, g] of [...groups].sort((a, b) => a[0].localeCompare(b[0]))) {
    out[key] = {};
    for (const [k, s] of Object.entries(g.means)) out[key][k] = s / g.n;
    Object.assign(out[key], g.counts, { n: g.n });
  }
  return out;
}

export interface OptionScores {
  sample: Sample;
  /** sum of log p(option tokens + eos | image, prompt) per option, in letter order (-Infinity: longer than max_length) */
  logLiks: number[];
}

/**
 * The log-likelihood of every option of every multiple-choice sample (the "cloze" reading of a
 * multiple-choice question, as lm-evaluation-harness scores it): each option is the answer of the
 * training format `format(question without its inline options)` + option + eos, collated exactly
 * like training (core/data/collator.ts: left-padded to max_length, prompt masked), and its score
 * is the summed log-probability of its answer tokens. One forward pass per batch of
 * samples x options. Samples without choices or with an undecodable image are skipped and counted.
 */
export async function scoreOptionsAll(
  ctx: RunContext,
  evaluator: string,
  dataset: Dataset,
  opts: { format: (question: string) => string; batchSize: number; maxSamples?: number | null },
): Promise<{ scored: OptionScores[]; skipped: string[] }> {
  const { model, tokenizer, imageProcessor } = needModel(ctx, evaluator);
  const head = isHeadFormat(model);
  const prefixLen = head ? assistantPrefixLength(tokenizer) : 0;
  const scored: OptionScores[] = [];
  const skipped: string[] = [];
  const T = model.maxLength;
  for await (const batch of batches(dataset, opts.batchSize, opts.maxSamples)) {
    checkAbort(ctx);
    const rows: (EncodedSample | PreparedChat)[] = [];
    // the row of each option (-1: longer than max_length, HEAD's collator drops it)
    const owners: { sample: Sample; at: number[] }[] = [];
    for (const sample of batch) {
      try {
        const problem = promptProblem(model, sample);
        if (problem) throw new Error(problem);
        if (!sample.choices?.length) throw new Error('no options (sample.choices) to score');
        const question = questionWithoutOptions(sample.question);
        const at: number[] = [];
        if (!head) {
          const pixels = await imageProcessor.process(sample.image, sample.id);
          const prompt = opts.format(question);
          for (const option of sample.choices) {
            const { ids, questionLength } = encodeSample(tokenizer, prompt, option);
            at.push(isTooLong({ ids }, T) ? -1 : rows.length);
            rows.push({ id: sample.id, pixels, ids, questionLength });
          }
        } else {
          // HEAD: the option as the assistant's answer of a chat sample (its tokens, <|im_end|> and "\n" counted)
          for (const [j, option] of sample.choices.entries()) {
            const s = { ...sample, id: `${sample.id} option ${j}`, question, target: option, turns: undefined };
            const r = await prepareChatSample(s, tokenizer, imageProcessor, { imageTokenLength: model.numImageTokens, maxImagesPerExample: Infinity, prefixLen });
            at.push(r.inputIds.length > T ? -1 : rows.length);
            if (r.inputIds.length <= T) rows.push(r);
          }
        }
        owners.push({ sample, at });
      } catch (e) {
        if (e instanceof UserError) throw e;
        skipped.push(sample.id);
        ctx.log.warn(`${evaluator}: skipped ${sample.id}: ${(e as Error).message}`);
      }
    }
    if (!rows.length) {
      for (const o of owners) scored.push({ sample: o.sample, logLiks: o.at.map(() => -Infinity) });
      continue;
    }
    const shape = { maxLength: T, padTokenId: tokenizer.padTokenId, imageSize: imageProcessor.size };
    const host = head ? collateChat(rows as PreparedChat[], shape) : collate(rows as EncodedSample[], shape);
    // the counted positions (answer tokens + eos) of each row, and their target ids
    const at: number[] = [];
    const rowOf: number[] = [];
    for (let i = 0; i < host.targets.length; i++) {
      if (host.targets[i] === IGNORE) continue;
      at.push(i);
      rowOf.push(Math.floor(i / T));
    }
    const V = model.decoder.vocabSize;
    const lp = tf.tidy(() => {
      const t = toTensors(host);
      const picked = tf.logSoftmax(model.logitsAt(t.inputIds, t.images, t.attentionMask, at)); // [K, V]: the head on the answer positions only
      const flat = at.map((i, k) => k * V + host.targets[i]);
      return tf.gather(picked.reshape([-1]), tf.tensor1d(flat, 'int32')); // [K]
    });
    const values = await lp.data(); // async: GPU backends
    lp.dispose();
    const sums = new Float64Array(rows.length);
    rowOf.forEach((r, k) => (sums[r] += values[k]));
    for (const o of owners) scored.push({ sample: o.sample, logLiks: o.at.map((r) => (r < 0 ? -Infinity : sums[r])) });
    await new Promise((r) => setImmediate(r));
  }
  return { scored, skipped };
}

/** "Which digit?\nOptions: A: 0, B: 4" -> "Which digit?" (MMStar's inline options removed) */
export function questionWithoutOptions(question: string): string {
  const at = question.lastIndexOf('Options:');
  return at < 0 ? question : question.slice(0, at).trimEnd();
}
