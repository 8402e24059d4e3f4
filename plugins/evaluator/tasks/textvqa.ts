// TextVQA (lmms-lab/textvqa, split validation, 5,000 questions) as lmms-eval's `textvqa_val`:
// lmms_eval/tasks/textvqa/_default_template_textvqa_yaml, textvqa_val.yaml, utils.py.
// Prompt: question.capitalize() (Python: the rest lower-cased) + "\nAnswer the question using a
// single word or phrase." (nanoVLM's wrapper prefixes its TextVQA instructions). Metric: VQA
// accuracy over the 10 human answers (core/eval/vqa.ts), reported as "exact_match".
import { vqaAccuracy } from '../../../core/eval/vqa.ts';
import { defineTask, type TaskSpec, IMAGE_LEAF, imageOf, mean, pyCapitalize, str, strList, TEXT_LEAF } from './task.ts';

export const spec: TaskSpec = {
  name: 'textvqa',
  lmmsTask: 'textvqa_val',
  description: 'TextVQA: VQA accuracy (EvalAI normalisation, 10 human answers)',
  source: 'lmms_eval/tasks/textvqa',
  hub: { repo: 'lmms-lab/textvqa', split: 'validation' },
  leaves: [IMAGE_LEAF(), TEXT_LEAF('question')],
  columns: ['question_id', 'question', 'image', 'answers'],
  toSample(row, id) {
    const answers = strList(row.answers);
    return { id: row.question_id != null ? `${id} (question_id ${str(row.question_id)})` : id, image: imageOf(row.image), question: str(row.question), answer: answers[0] ?? '', fields: { answers } };
  },
  context: (s) => `${pyCapitalize(s.question)}\nAnswer the question using a single word or phrase.`,
  target: (s) => s.fields?.answers,
  maxNewTokens: 50,
  score: (s, out) => ({ exact_match: vqaAccuracy(out, s.fields?.answers as string[]) }),
  aggregate: (rows) => ({ metrics: { exact_match: mean(rows, 'exact_match') }, lmms: { exact_match: mean(rows, 'exact_match') } }),
  primary: 'exact_match',
};

export default defineTask(spec);
