// MMMU (lmms-lab/MMMU, split validation, 900 questions over 30 subjects) as lmms-eval's
// `mmmu_val`: lmms_eval/tasks/mmmu/mmmu_val.yaml, _default_template_yaml, utils.py.
// Prompt (construct_prompt): multiple choice: question + "\n" + "A. x\nB. y..." + "\n\n" +
// "Answer with the option's letter from the given choices directly."; open: question + "\n\n" +
// "Answer the question using a single word or phrase." (`<image n>` tags stay: the template is
// not interleaved). nanoVLM's wrapper removes "Question:", shortens the instruction and writes
// "Choices:"; assistant prefix "Answer:". Our models take one image: the first the question refers
// to (lmms-eval's nanoVLM wrapper passes them all); `multi_image` counts the questions with more.
// Metric: core/eval/mmmu.ts (official parser; lmms-eval's open-question scoring as mmmu_acc_lmms_eval).
import { aggregateMmmu, parseMmmuOptions, scoreMmmu } from '../../../core/eval/mmmu.ts';
import { defineTask, type TaskSpec, imageOf, lettered, str, TEXT_LEAF } from './task.ts';

const IMAGE_COLUMNS = ['image_1', 'image_2', 'image_3', 'image_4', 'image_5', 'image_6', 'image_7'];

export function mmmuPrompt(question: string, questionType: string, options: string[]): string {
  if (questionType === 'multiple-choice') return `${question}\n${lettered(options)}\n\nAnswer with the option's letter from the given choices directly.`;
  return `${question}\n\nAnswer the question using a single word or phrase.`;
}

export const spec: TaskSpec = {
  name: 'mmmu',
  lmmsTask: 'mmmu_val',
  description: "MMMU: the official MMMU answer parser, accuracy overall, per domain and subject",
  source: 'lmms_eval/tasks/mmmu',
  hub: { repo: 'lmms-lab/MMMU', split: 'validation' },
  leaves: [TEXT_LEAF('id'), TEXT_LEAF('question'), TEXT_LEAF('question_type'), { column: 'image_1', leaf: 'bytes', type: 'BYTE_ARRAY' }],
  columns: ['id', 'question', 'options', 'answer', 'question_type', ...IMAGE_COLUMNS],
  toSample(row, id) {
    const question = str(row.question);
    const type = str(row.question_type);
    let options: string[] = [];
    let problem: string | undefined;
    try {
      options = parseMmmuOptions(str(row.options) || '[]');
    } catch (e) {
      problem = (e as Error).message;
    }
    // mmmu_doc_to_visual: the <image n> tags of the full prompt (options included), sorted
    const tags = [...new Set([...mmmuPrompt(question, type, options).matchAll(/<image (\d+)>/g)].map((m) => `image_${m[1]}`))].sort();
    const first = tags.find((t) => imageOf(row[t]).length > 0) ?? 'image_1';
    return {
      id: `${id} (${str(row.id)})`,
      image: imageOf(row[first]),
      question,
      answer: str(row.answer),
      choices: options,
      ...(problem ? { problem } : {}),
      fields: { mmmu_id: str(row.id), question_type: type, images: tags.length },
    };
  },
  context: (s) => mmmuPrompt(s.question, String(s.fields?.question_type), s.choices ?? []),
  target: (s) => s.answer,
  maxNewTokens: 128,
  score(s, out) {
    const r = scoreMmmu({ id: String(s.fields?.mmmu_id), question_type: String(s.fields?.question_type), answer: s.answer, options: s.choices ?? [] }, out);
    return { mmmu_acc: +r.correct, mmmu_acc_lmms_eval: +r.correctLmmsEval, guessed: +r.guessed };
  },
  aggregate(rows) {
    const { metrics, breakdown } = aggregateMmmu(
      rows.map((r) => ({
        id: String(r.sample.fields?.mmmu_id),
        questionType: String(r.sample.fields?.question_type),
        correct: !!r.scores.mmmu_acc,
        correctLmmsEval: !!r.scores.mmmu_acc_lmms_eval,
        guessed: !!r.scores.guessed,
      })),
    );
    metrics.multi_image = rows.filter((r) => Number(r.sample.fields?.images) > 1).length;
    delete metrics.n;
    return { metrics, breakdown, lmms: { mmmu_acc: metrics.mmmu_acc_lmms_eval } };
  },
  primary: 'mmmu_acc',
};

export default defineTask(spec);
