// The metrics `vlm score` applies to given (prediction, references) pairs, by the names lmms-eval
// reports them under; each is the per-sample score of a task here, averaged over the pairs.
import { anls } from './anls.ts';
import { exactMatchIgnoring, mmstarMatch, mmstarMatchLegacy } from './choice.ts';
import { relaxedAccuracy } from './relaxed.ts';
import { vqaAccuracy } from './vqa.ts';

export interface PairMetric {
  describe: string;
  /** score of one prediction against its references */
  score(prediction: string, references: readonly string[]): number;
}

export const PAIR_METRICS: Record<string, PairMetric> = {
  mmstar: {
    describe: 'MMStar: the option letter extracted from the prediction (lmms-eval extract_mcq_answer) equals the reference letter',
    score: (p, r) => (r.some((x) => mmstarMatch(p, x)) ? 1 : 0),
  },
  mmstar_legacy: {
    describe: "MMStar as lmms-eval scored it before 2026-04: the letter is the output's first character (or follows '(', 'option ', 'the answer is ')",
    score: (p, r) => (r.some((x) => mmstarMatchLegacy(p, x)) ? 1 : 0),
  },
  exact_match: {
    describe: "lmms-eval exact_match with ignore_case and ignore_punctuation (string.punctuation removed), best over the references",
    score: (p, r) => (r.some((x) => exactMatchIgnoring(p.trim(), x)) ? 1 : 0),
  },
  vqa_accuracy: {
    describe: 'TextVQA / VQAv2 accuracy: EvalAI normalisation, min(#matching references / 3, 1) over the leave-one-out subsets',
    score: (p, r) => vqaAccuracy(p, r),
  },
  anls: {
    describe: 'DocVQA / InfoVQA ANLS with threshold 0.5 (best over the references)',
    score: (p, r) => anls(p.trim(), r),
  },
  relaxed_accuracy: {
    describe: 'ChartQA relaxed accuracy: numbers within 5% (percentages read as fractions), exact otherwise',
    score: (p, r) => relaxedAccuracy(p.trim(), r),
  },
};

/** Mean score of `metric` over the pairs. */
export function scorePairs(metric: string, pairs: { prediction: string; references: string[] }[]): { metric: string; value: number; n: number } {
  const m = PAIR_METRICS[metric];
  if (!m) throw new Error(`unknown metric ${metric}`);
  const sum = pairs.reduce((a, p) => a + m.score(p.prediction, p.references), 0);
  return { metric, value: pairs.length ? sum / pairs.length : 0, n: pairs.length };
}
