// MMStar-style multiple-choice accuracy, as nanoVLM v0.1 measures it (train.py `test_mmstar`):
// prompt = `Question: {question} \nAnswer only with the letter! \nAnswer:`, a few tokens generated
// greedily (v0.1 samples; greedy makes the figure reproducible), then
// `models/utils.py check_multiple_choice_with_regex`:
//   https://github.com/huggingface/nanoVLM/blob/v0.1/models/utils.py
//     correct_answer = correct_answer.upper()
//     patterns = [rf"\b{correct_answer}\b", rf"\b{correct_answer}[.,)]", rf"\(.*{correct_answer}.*\)"]
//     correct = any(re.search(p, model_output) for p in patterns)
// The Python `re` semantics are reproduced: `\b` is Unicode-aware (a word character is a letter,
// a number or `_`), `.` matches anything but "\n". The answer is escaped (v0.1 interpolates it
// raw; for the letters A-Z that is the same).
// Besides that lenient score we report a strict one (the first non-space character of the output
// is the answer letter, followed by a non-word character or the end), the number of unparseable
// outputs (no option letter passes the regex check) and of ambiguous ones (several do).
// `scoring: likelihood` (our extension) reads the question as a cloze instead, as
// lm-evaluation-harness does: no letter is generated; each option is scored by its log-likelihood
// as the answer in the training format (`Question: {question without options} Answer:` + option +
// eos, collated as in training) and the highest-scoring option is the prediction. It measures what
// the model knows without requiring it to map options to letters; its results are reported as the
// evaluator `multiple-choice-likelihood` (docs/generation.md).
// A model in nanoVLM HEAD's format is asked as HEAD's lmms-eval wrapper asks MMStar (common.ts
// promptRow): lmms-eval's mmstar context (question + "\nAnswer with the option's letter from the
// given choices directly") with the wrapper's rewrites, through the chat template, then "Answer:";
// the likelihood reading scores each option as the assistant's answer of a chat sample.
import { definePlugin } from 'nanovlm-ts/plugin-api';
import { mmstarPrompt, vqaPrompt } from '../../core/data/prompt.ts';
import type { Dataset, Evaluator, EvalResult, Sample } from 'nanovlm-ts/plugin-api';
import { UserError } from 'nanovlm-ts/plugin-api';
import { benchmarkFormat, formatContext } from './tasks/nanovlm-format.ts';
import { mmstarContext } from './tasks/mmstar.ts';
import { answerAll, COMMON_OPTIONS, perCategory, scoreOptionsAll, padToFor, PADDING_OPTION } from './common.ts';

const WORD = String.raw`[\p{L}\p{N}_]`; // Python 3 str-pattern \w
const NOT_WORD = String.raw`[^\p{L}\p{N}_]`;
// Python's \b: between a word and a non-word character (or the text's ends)
const WB = String.raw`(?:(?<=${WORD})(?!${WORD})|(?<!${WORD})(?=${WORD}))`;
const ANY = String.raw`[^\n]`; // Python's `.` without DOTALL

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

/** nanoVLM v0.1 `check_multiple_choice_with_regex` for one output. */
export function checkMultipleChoiceWithRegex(modelOutput: string, correctAnswer: string): boolean {
  const x = escapeRegex(correctAnswer.toUpperCase());
  const patterns = [
    `${WB}${x}${WB}`, // word boundary around the answer letter
    `${WB}${x}[.,)]`, // answer followed by punctuation
    String.raw`\(${ANY}*${x}${ANY}*\)`, // answer within parentheses
  ];
  return patterns.some((p) => new RegExp(p, 'u').test(modelOutput));
}

/** The strict reading: the letter the output starts with (after spaces), or null. */
export function firstLetter(modelOutput: string, letters: readonly string[]): string | null {
  const m = new RegExp(String.raw`^\s*(\p{Lu})(?!${WORD})`, 'u').exec(modelOutput);
  return m && letters.includes(m[1]) ? m[1] : null;
}

/** Option letters of a sample: A.. for its choices, else A-D. */
export function optionLetters(sample: Pick<Sample, 'choices'>): string[] {
  const n = sample.choices?.length || 4;
  return Array.from({ length: n }, (_, i) => String.fromCharCode(65 + i));
}

export interface ChoiceScore {
  /** nanoVLM's regex check */
  correct: boolean;
  /** first-letter check */
  strict: boolean;
  /** option letters that pass the regex check */
  matched: string[];
  unparseable: boolean;
  ambiguous: boolean;
}

export function scoreChoice(modelOutput: string, answer: string, letters: readonly string[] = ['A', 'B', 'C', 'D']): ChoiceScore {
  const matched = letters.filter((l) => checkMultipleChoiceWithRegex(modelOutput, l));
  return {
    correct: checkMultipleChoiceWithRegex(modelOutput, answer),
    strict: firstLetter(modelOutput, letters) === answer.toUpperCase(),
    matched,
    unparseable: matched.length === 0,
    ambiguous: matched.length > 1,
  };
}

/** The letter of the highest log-likelihood (the first of equal ones); null when every option is -Infinity. */
export function pickOption(logLiks: number[]): string | null {
  let best = -1;
  for (let j = 0; j < logLiks.length; j++) if (logLiks[j] > -Infinity && (best < 0 || logLiks[j] > logLiks[best])) best = j;
  return best < 0 ? null : String.fromCharCode(65 + best);
}

/** Aggregate per-sample scores: overall metrics and the per-category breakdown. */
export function summariseChoices(rows: { category?: string; score: ChoiceScore }[]): Pick<EvalResult, 'metrics' | 'breakdown'> {
  const n = rows.length;
  const sum = (f: (s: ChoiceScore) => boolean) => rows.reduce((a, r) => a + (f(r.score) ? 1 : 0), 0);
  return {
    metrics: {
      accuracy: n ? sum((s) => s.correct) / n : 0,
      accuracy_strict: n ? sum((s) => s.strict) / n : 0,
      unparseable: sum((s) => s.unparseable),
      ambiguous: sum((s) => s.ambiguous),
      n,
    },
    breakdown: perCategory(
      rows.map((r) => ({
        category: r.category,
        means: { accuracy: +r.score.correct, accuracy_strict: +r.score.strict },
        counts: { unparseable: +r.score.unparseable },
      })),
    ),
  };
}

/** The multiple-choice rows of a dataset (those with `choices`); `without()` counts the others read so far. */
export function choiceRows(dataset: Dataset): { dataset: Dataset; without: () => number } {
  let without = 0;
  return {
    dataset: {
      name: dataset.name,
      size: () => dataset.size(),
      async *samples(opts) {
        for await (const s of dataset.samples(opts)) {
          if (s.choices?.length || s.problem) yield s; // a bad sample is still counted as skipped
          else without++;
        }
      },
    },
    without: () => without,
  };
}

export default definePlugin({
  kind: 'evaluator',
  name: 'multiple-choice',
  description:
    'MMStar-style accuracy: MMStar prompt, greedy generation, nanoVLM v0.1 regex check + strict first letter; overall and per category.',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      ...COMMON_OPTIONS,
      data: { ...COMMON_OPTIONS.data, default: 'eval' },
      scoring: {
        type: 'string',
        enum: ['generate', 'likelihood'],
        default: 'generate',
        description:
          "generate = nanoVLM's MMStar protocol (the model writes the letter); likelihood = each option scored by its log-likelihood as the answer to the question without its options (training format), the best one is the prediction (reported as multiple-choice-likelihood)",
      },
      padding: PADDING_OPTION,
      max_new_tokens: { type: 'integer', minimum: 1, default: 5, description: 'tokens generated per answer (nanoVLM: 5)' },
      stop_at_eos: {
        type: 'boolean',
        default: true,
        description: 'stop each answer at eos; false = nanoVLM v0.1, whose decoded text then includes what follows the eos',
      },
    },
  } as const,
  create(options): Evaluator & { data: 'val' | 'eval' } {
    return {
      name: 'multiple-choice',
      data: options.data,
      async evaluate(ctx, dataset): Promise<EvalResult> {
        if (options.scoring === 'likelihood') {
          const { scored, skipped } = await scoreOptionsAll(ctx, 'multiple-choice', dataset, {
            format: vqaPrompt,
            batchSize: options.batch_size,
            maxSamples: options.max_samples as number | null,
          });
          const rows = scored.map(({ sample, logLiks }) => ({ category: sample.category, correct: pickOption(logLiks) === sample.answer.trim().toUpperCase() }));
          const n = rows.length;
          const metrics: Record<string, number> = { accuracy: n ? rows.filter((r) => r.correct).length / n : 0, n };
          if (skipped.length) metrics.skipped = skipped.length;
          const breakdown = perCategory(rows.map((r) => ({ category: r.category, means: { accuracy: +r.correct }, counts: {} })));
          return { evaluator: 'multiple-choice-likelihood', dataset: dataset.name, metrics, breakdown };
        }
        // rows without `choices` (open questions, e.g. synthetic-shapes format: mixed) are not
        // multiple-choice questions: skipped and counted, never scored as unparseable
        const mc = choiceRows(dataset);
        const { answered, skipped } = await answerAll(ctx, 'multiple-choice', mc.dataset, {
          format: mmstarPrompt,
          content: (q) => formatContext(mmstarContext(q), 'mmstar'),
          assistantPrefix: benchmarkFormat('mmstar').assistantPrefix,
          batchSize: options.batch_size,
          maxSamples: options.max_samples as number | null,
          padTo: padToFor(options.padding, ctx),
          generate: { greedy: true, maxNewTokens: options.max_new_tokens, stopAtEos: options.stop_at_eos },
        });
        const rows = answered.map(({ sample, output }) => ({
          category: sample.category,
          score: scoreChoice(output, sample.answer, optionLetters(sample)),
        }));
        if (mc.without() > 0 && rows.length === 0) {
          throw new UserError(`dataset ${dataset.name} has no multiple-choice rows: none of the ${mc.without()} samples read has \`choices\``, {
            where: { yamlPath: 'eval.evaluators' },
            hint: 'give the rows choices (folder: "choices": [...] and the letter as "answer"; synthetic-shapes: format: multiple-choice), or evaluate this dataset with exact-match',
          });
        }
        const { metrics, breakdown } = summariseChoices(rows);
        if (skipped.length) metrics.skipped = skipped.length;
        if (mc.without() > 0) {
          metrics.no_choices = mc.without();
          ctx.log.info(`multiple-choice on ${dataset.name}: ${mc.without()} samples without choices were skipped (not multiple-choice questions)`);
        }
        return { evaluator: 'multiple-choice', dataset: dataset.name, metrics, breakdown };
      },
    };
  },
});
