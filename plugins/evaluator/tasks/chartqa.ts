// ChartQA (lmms-lab/ChartQA, split test, 2,500 questions: 1,250 human + 1,250 augmented) as
// lmms-eval's `chartqa`: lmms_eval/tasks/chartqa/chartqa.yaml, utils.py. Prompt: question +
// "\nAnswer the question with a single word." (nanoVLM's wrapper keys its ChartQA instructions
// "chartvqa", which is no lmms-eval task: no rewrite). Metric: relaxed accuracy
// (core/eval/relaxed.ts) overall and on the human / augmented splits (`type` column).
import { relaxedCorrectness } from '../../../core/eval/relaxed.ts';
import { defineTask, type TaskSpec, IMAGE_LEAF, imageOf, mean, str, TEXT_LEAF } from './task.ts';

export const spec: TaskSpec = {
  name: 'chartqa',
  lmmsTask: 'chartqa',
  description: 'ChartQA: relaxed accuracy (5% on numbers), overall and per split (human / augmented)',
  source: 'lmms_eval/tasks/chartqa',
  hub: { repo: 'lmms-lab/ChartQA', split: 'test' },
  leaves: [IMAGE_LEAF(), TEXT_LEAF('question'), TEXT_LEAF('answer')],
  columns: ['type', 'question', 'answer', 'image'],
  toSample: (row, id) => ({ id, image: imageOf(row.image), question: str(row.question), answer: str(row.answer), category: str(row.type) || undefined }),
  context: (s) => `${s.question}\nAnswer the question with a single word.`,
  target: (s) => s.answer,
  maxNewTokens: 16,
  score: (s, out) => ({ relaxed_overall: relaxedCorrectness(out, s.answer) ? 1 : 0 }),
  aggregate(rows) {
    const human = rows.filter((r) => r.sample.category === 'human_test');
    const augmented = rows.filter((r) => r.sample.category !== 'human_test');
    const lmms: Record<string, number> = { relaxed_overall: mean(rows, 'relaxed_overall') };
    // lmms-eval reports a split's mean only when it has samples (a mean of nothing is an error there)
    if (human.length) lmms.relaxed_human_split = mean(human, 'relaxed_overall');
    if (augmented.length) lmms.relaxed_augmented_split = mean(augmented, 'relaxed_overall');
    return {
      metrics: { ...lmms },
      breakdown: {
        ...(human.length ? { human_test: { relaxed_accuracy: lmms.relaxed_human_split, n: human.length } } : {}),
        ...(augmented.length ? { augmented_test: { relaxed_accuracy: lmms.relaxed_augmented_split, n: augmented.length } } : {}),
      },
      lmms,
    };
  },
  primary: 'relaxed_overall',
};

export default defineTask(spec);
