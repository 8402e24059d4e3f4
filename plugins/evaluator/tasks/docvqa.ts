// DocVQA and InfographicVQA (lmms-lab/DocVQA, configs DocVQA and InfographicVQA, split validation:
// 5,349 and 2,801 questions) as lmms-eval's `docvqa_val` and `infovqa_val`:
// lmms_eval/tasks/docvqa/_default_template_docvqa_yaml, docvqa_val.yaml, utils.py and
// lmms_eval/tasks/infovqa/... . Prompt: question + "\nAnswer the question using a single word or
// phrase." (nanoVLM's wrapper: DocVQA gets its "short and terse answer" prefix, InfoVQA the suffix
// "\nGive a very brief answer."). Metric: ANLS, τ = 0.5, over the answers (core/eval/anls.ts).
import { anls } from '../../../core/eval/anls.ts';
import { defineTask, IMAGE_LEAF, imageOf, mean, str, strList, TEXT_LEAF, type TaskSpec } from './task.ts';

function docTask(name: string, lmmsTask: string, config: string, what: string): TaskSpec {
  return {
    name,
    lmmsTask,
    description: `${what}: ANLS (τ = 0.5) over the reference answers`,
    source: `lmms_eval/tasks/${name}`,
    hub: { repo: 'lmms-lab/DocVQA', config, split: 'validation' },
    leaves: [IMAGE_LEAF(), TEXT_LEAF('question')],
    columns: ['questionId', 'question', 'image', 'answers'],
    toSample(row, id) {
      const answers = strList(row.answers);
      return { id: row.questionId != null ? `${id} (questionId ${str(row.questionId)})` : id, image: imageOf(row.image), question: str(row.question), answer: answers[0] ?? '', fields: { answers } };
    },
    context: (s) => `${s.question}\nAnswer the question using a single word or phrase.`,
    target: (s) => s.fields?.answers,
    maxNewTokens: 32,
    score: (s, out) => ({ anls: anls(out, s.fields?.answers as string[]) }),
    aggregate: (rows) => ({ metrics: { anls: mean(rows, 'anls') }, lmms: { anls: mean(rows, 'anls') } }),
    primary: 'anls',
  };
}

export const docvqaSpec = docTask('docvqa', 'docvqa_val', 'DocVQA', 'DocVQA (document images)');
export const infovqaSpec = docTask('infovqa', 'infovqa_val', 'InfographicVQA', 'InfographicVQA (infographics)');
export const docvqa = defineTask(docvqaSpec);
export const infovqa = defineTask(infovqaSpec);
