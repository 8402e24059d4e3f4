// MMStar (Lin-Chen/MMStar, split val, 1,500 questions) as lmms-eval's `mmstar` task:
//   lmms_eval/tasks/mmstar/mmstar.yaml, _default_template_yaml, utils.py
// Prompt: question.strip() + "\nAnswer with the option's letter from the given choices directly"
// (then nanoVLM's rewrite: "\nOptions:" -> "\nChoices:", "... directly" -> "Answer with the letter
// directly", assistant prefix "Answer:"). Metric: the extracted letter equals the answer
// (core/eval/choice.ts mmstarMatch); each category's score and the average are MEANS OF THE
// L2-CATEGORY MEANS (mmstar_aggregate_results), not plain accuracies. `average_legacy` is the
// average with lmms-eval's check before 2026-04 (core/eval/choice.ts mmstarMatchLegacy).
// The data is read with the `mmstar` dataset plugin (plugins/dataset/mmstar.ts).
import { mmstarMatch, mmstarMatchLegacy } from '../../../core/eval/choice.ts';
import { MMSTAR_LEAVES, mmstarSample } from '../../dataset/mmstar.ts';
import { defineTask, type TaskSpec, type Scored } from './task.ts';

/** lmms-eval's MMStar categories and their L2 categories */
export const MMSTAR_CATEGORIES: Record<string, string[]> = {
  'coarse perception': ['image scene and topic', 'image style & quality', 'image emotion'],
  'fine-grained perception': ['object counting', 'recognition', 'localization'],
  'instance reasoning': ['single-instance reasoning', 'cross-instance attribute reasoning', 'cross-instance relation reasoning'],
  'logical reasoning': ['code & sequence reasoning', 'diagram reasoning', 'common reasoning'],
  'science & technology': ['biology & chemistry & physics', 'electronics & energy & mechanical eng.', 'geography & earth science & agriculture'],
  math: ['geometry', 'numeric commonsense and calculation', 'statistical reasoning'],
};

/** mmstar_aggregate_results: the mean over L2 categories of each L2 category's mean score */
export function l2MacroMean(rows: { l2: string; score: number }[]): number {
  const groups = new Map<string, number[]>();
  for (const r of rows) groups.set(r.l2, [...(groups.get(r.l2) ?? []), r.score]);
  if (!groups.size) return 0;
  let sum = 0;
  for (const scores of groups.values()) sum += scores.reduce((a, b) => a + b, 0) / scores.length;
  return sum / groups.size;
}

export function aggregateMmstar(rows: Scored[]) {
  const items = rows.map((r) => ({ category: r.sample.category ?? '', l2: r.sample.l2Category ?? '', score: r.scores.accuracy }));
  const lmms: Record<string, number> = {};
  const breakdown: Record<string, Record<string, number>> = {};
  const categories = [...new Set(items.map((i) => i.category))].sort();
  for (const c of categories) {
    const inC = items.filter((i) => i.category === c);
    lmms[c] = l2MacroMean(inC);
    breakdown[c] = { score: lmms[c], accuracy: inC.reduce((a, i) => a + i.score, 0) / inC.length, n: inC.length };
    for (const l2 of [...new Set(inC.map((i) => i.l2))].sort()) {
      const inL2 = inC.filter((i) => i.l2 === l2);
      breakdown[`${c} / ${l2}`] = { accuracy: inL2.reduce((a, i) => a + i.score, 0) / inL2.length, n: inL2.length };
    }
  }
  lmms.average = l2MacroMean(items);
  const accuracy = items.length ? items.reduce((a, i) => a + i.score, 0) / items.length : 0;
  // the figure lmms-eval gave before 2026-04 (first-character check; nanoVLM's published numbers)
  const average_legacy = l2MacroMean(rows.map((r) => ({ l2: r.sample.l2Category ?? '', score: r.scores.accuracy_legacy ?? 0 })));
  return { metrics: { average: lmms.average, accuracy, average_legacy }, breakdown, lmms };
}

export const spec: TaskSpec = {
  name: 'mmstar',
  lmmsTask: 'mmstar',
  datasetPlugin: 'mmstar',
  description: 'MMStar multiple choice: average of the L2-category accuracies, per category and L2 category',
  source: 'lmms_eval/tasks/mmstar',
  hub: { repo: 'Lin-Chen/MMStar', split: 'val' },
  leaves: MMSTAR_LEAVES,
  columns: ['index', 'question', 'image', 'answer', 'category', 'l2_category'],
  toSample: mmstarSample,
  context: (s) => mmstarContext(s.question),
  target: (s) => s.answer,
  maxNewTokens: 50,
  score: (s, out) => ({ accuracy: mmstarMatch(out, s.answer), accuracy_legacy: mmstarMatchLegacy(out, s.answer) }),
  aggregate: aggregateMmstar,
  primary: 'average',
};

/** mmstar_doc_to_text: strip, drop " Please answer yes or no." (only when a post_prompt is set: it is), add the post_prompt */
export function mmstarContext(question: string): string {
  const q = question.trim().replaceAll(' Please answer yes or no.', '');
  return `${q}\nAnswer with the option's letter from the given choices directly`;
}

export default defineTask(spec);
