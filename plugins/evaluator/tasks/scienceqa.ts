// ScienceQA-IMG (lmms-lab/ScienceQA, config ScienceQA-IMG, split test, 2,017 questions) as
// lmms-eval's `scienceqa_img` task: lmms_eval/tasks/scienceqa/scienceqa_img.yaml, utils.py.
// Prompt: "Context: {hint}\n" (when there is a hint) + question + "\n" + "A. x\nB. y..." +
// "\nAnswer with the option's letter from the given choices directly." (nanoVLM's wrapper lists
// "scienceqa", not "scienceqa_img": no rewrite). Metric: sqa_process_results (core/eval/choice.ts).
import { scienceqaMatch } from '../../../core/eval/choice.ts';
import { defineTask, type TaskSpec, IMAGE_LEAF, imageOf, lettered, mean, str, strList, TEXT_LEAF } from './task.ts';

export const spec: TaskSpec = {
  name: 'scienceqa',
  lmmsTask: 'scienceqa_img',
  description: 'ScienceQA (image questions) multiple choice: exact match of the answer letter',
  source: 'lmms_eval/tasks/scienceqa',
  hub: { repo: 'lmms-lab/ScienceQA', config: 'ScienceQA-IMG', split: 'test' },
  leaves: [IMAGE_LEAF(), TEXT_LEAF('question'), { column: 'answer', leaf: 'answer', type: 'INT64', alt: ['INT32'] }],
  columns: ['image', 'question', 'choices', 'answer', 'hint', 'subject', 'category'],
  toSample(row, id) {
    const choices = strList(row.choices);
    const k = Number(row.answer);
    return {
      id,
      image: imageOf(row.image),
      question: str(row.question),
      answer: choices.length > k && k >= 0 ? String.fromCharCode(65 + k) : '',
      choices,
      category: str(row.subject) || undefined,
      fields: { hint: str(row.hint) },
    };
  },
  context(s) {
    const hint = String(s.fields?.hint ?? '');
    const context = hint ? `Context: ${hint}\n` : '';
    return `${context}${String(s.question)}\n${lettered(s.choices ?? [])}\nAnswer with the option's letter from the given choices directly.`;
  },
  target: (s) => s.answer,
  maxNewTokens: 16,
  score: (s, out) => ({ exact_match: scienceqaMatch(out, s.answer) }),
  aggregate: (rows) => ({ metrics: { exact_match: mean(rows, 'exact_match') }, lmms: { exact_match: mean(rows, 'exact_match') } }),
  primary: 'exact_match',
};

export default defineTask(spec);
