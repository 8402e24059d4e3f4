// Normalised exact match for open answers (synthetic shapes, digits): the VQA prompt
// `Question: {question} Answer:`, greedy generation up to eos, then both the output and the
// reference are normalised as SQuAD's evaluation script does (lowercase, punctuation removed,
// articles a/an/the removed, whitespace collapsed) and compared.
//   https://github.com/rajpurkar/SQuAD-explorer/blob/master/evaluate-v2.0.py (normalize_answer)
// A model in nanoVLM HEAD's format is asked as HEAD asks (common.ts promptRow): the image string +
// the question as the user message of the chat template, with the generation prompt.
import { definePlugin } from 'nanovlm-ts/plugin-api';
import { vqaPrompt } from '../../core/data/prompt.ts';
import type { Evaluator, EvalResult } from 'nanovlm-ts/plugin-api';
import { answerAll, COMMON_OPTIONS, perCategory, padToFor, PADDING_OPTION } from './common.ts';

/** lowercase, strip punctuation, drop articles, collapse whitespace */
export function normalizeAnswer(s: string): string {
  return s
    .toLowerCase()
    .replace(/[\p{P}\p{S}]/gu, '')
    .replace(/(?<![\p{L}\p{N}_])(a|an|the)(?![\p{L}\p{N}_])/gu, ' ')
    .split(/\s+/)
    .filter(Boolean)
    .join(' ');
}

/**
 * True when the normalised output equals the normalised reference (SQuAD's exact match). An output
 * that is empty or only whitespace never matches; one that normalises to "" (e.g. "A", an article)
 * matches a reference that does too.
 */
export function exactMatch(output: string, reference: string): boolean {
  return output.trim() !== '' && normalizeAnswer(output) === normalizeAnswer(reference);
}

export function summariseExact(rows: { category?: string; output: string; answer: string }[]): Pick<EvalResult, 'metrics' | 'breakdown'> {
  const scored = rows.map((r) => ({ category: r.category, match: exactMatch(r.output, r.answer), empty: r.output.trim() === '' }));
  const n = scored.length;
  return {
    metrics: {
      exact_match: n ? scored.filter((s) => s.match).length / n : 0,
      empty: scored.filter((s) => s.empty).length,
      n,
    },
    breakdown: perCategory(scored.map((s) => ({ category: s.category, means: { exact_match: +s.match }, counts: { empty: +s.empty } }))),
  };
}

export default definePlugin({
  kind: 'evaluator',
  name: 'exact-match',
  description: 'Open answers: VQA prompt, greedy generation to eos, SQuAD-normalised exact match (lowercase, no punctuation/articles).',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      ...COMMON_OPTIONS,
      data: { ...COMMON_OPTIONS.data, default: 'eval' },
      padding: PADDING_OPTION,
      max_new_tokens: { type: 'integer', minimum: 1, default: 16, description: 'longest answer generated' },
    },
  } as const,
  create(options): Evaluator & { data: 'val' | 'eval' } {
    return {
      name: 'exact-match',
      data: options.data,
      async evaluate(ctx, dataset): Promise<EvalResult> {
        const { answered, skipped } = await answerAll(ctx, 'exact-match', dataset, {
          format: vqaPrompt,
          batchSize: options.batch_size,
          maxSamples: options.max_samples as number | null,
          padTo: padToFor(options.padding, ctx),
          generate: { greedy: true, maxNewTokens: options.max_new_tokens, stopAtEos: true },
        });
        const { metrics, breakdown } = summariseExact(
          answered.map(({ sample, output }) => ({ category: sample.category, output, answer: sample.answer })),
        );
        if (skipped.length) metrics.skipped = skipped.length;
        return { evaluator: 'exact-match', dataset: dataset.name, metrics, breakdown };
      },
    };
  },
});
