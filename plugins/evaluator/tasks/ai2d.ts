// AI2D (lmms-lab/ai2d, split test, 3,088 questions) as lmms-eval's `ai2d` task:
// lmms_eval/tasks/ai2d/ai2d.yaml, utils.py. Prompt: question + "\n" + "A. x\nB. y..." +
// "\nAnswer with the option's letter from the given choices directly." (nanoVLM's rewrite:
// "\nA. " -> "\nChoices:\nA. ", "... directly" -> "Answer with the letter directly", assistant
// prefix "Answer:"). Metric: the "flexible-extract" filter then exact match ignoring case and
// punctuation (core/eval/choice.ts ai2dMatch), reported as "exact_match,flexible-extract".
import { ai2dMatch } from '../../../core/eval/choice.ts';
import { defineTask, type TaskSpec, IMAGE_LEAF, imageOf, lettered, mean, str, strList, TEXT_LEAF } from './task.ts';

export const spec: TaskSpec = {
  name: 'ai2d',
  lmmsTask: 'ai2d',
  description: 'AI2D diagrams multiple choice: exact match of the answer letter',
  source: 'lmms_eval/tasks/ai2d',
  hub: { repo: 'lmms-lab/ai2d', split: 'test' },
  leaves: [IMAGE_LEAF(), TEXT_LEAF('question')],
  columns: ['image', 'question', 'options', 'answer'],
  toSample(row, id) {
    const choices = strList(row.options);
    const k = Number.parseInt(str(row.answer), 10);
    return { id, image: imageOf(row.image), question: str(row.question), answer: k >= 0 && k < choices.length ? String.fromCharCode(65 + k) : '', choices };
  },
  context: (s) => `${String(s.question)}\n${lettered(s.choices ?? [])}\nAnswer with the option's letter from the given choices directly.`,
  target: (s) => s.answer,
  maxNewTokens: 16,
  score: (s, out) => ({ exact_match: ai2dMatch(out, s.answer) }),
  aggregate: (rows) => ({ metrics: { exact_match: mean(rows, 'exact_match') }, lmms: { exact_match: mean(rows, 'exact_match') } }),
  primary: 'exact_match',
  filter: 'flexible-extract',
};

export default defineTask(spec);
