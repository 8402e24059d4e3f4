// OCRBench (echo840/OCRBench, split test, 1,000 questions in 10 categories) as lmms-eval's
// `ocrbench`: lmms_eval/tasks/ocrbench/ocrbench.yaml, utils.py. Prompt: question.strip() (nanoVLM's
// wrapper adds "\nGive a very brief answer."). Metric: a reference contained in the answer
// (core/eval/choice.ts ocrbenchMatch); the score is the number right out of 1,000, per category
// and in the five groups of the paper; lmms-eval's `ocrbench_accuracy` is that count / 1000 —
// also with --limit (a run on 100 questions scores at most 0.1 there; `accuracy` is right / n).
import { ocrbenchMatch } from '../../../core/eval/choice.ts';
import { defineTask, type TaskSpec, IMAGE_LEAF, imageOf, str, strList, TEXT_LEAF } from './task.ts';

export const OCRBENCH_CATEGORIES = [
  'Regular Text Recognition',
  'Irregular Text Recognition',
  'Artistic Text Recognition',
  'Handwriting Recognition',
  'Digit String Recognition',
  'Non-Semantic Text Recognition',
  'Scene Text-centric VQA',
  'Doc-oriented VQA',
  'Key Information Extraction',
  'Handwritten Mathematical Expression Recognition',
];

export const spec: TaskSpec = {
  name: 'ocrbench',
  lmmsTask: 'ocrbench',
  description: 'OCRBench: answers containing the reference, counted per category (final score out of 1000)',
  source: 'lmms_eval/tasks/ocrbench',
  hub: { repo: 'echo840/OCRBench', split: 'test' },
  leaves: [IMAGE_LEAF(), TEXT_LEAF('question'), TEXT_LEAF('question_type')],
  columns: ['dataset', 'question', 'question_type', 'answer', 'image'],
  toSample(row, id) {
    const answers = strList(row.answer);
    return { id, image: imageOf(row.image), question: str(row.question), answer: answers[0] ?? '', category: str(row.question_type), fields: { answers, dataset: str(row.dataset) } };
  },
  context: (s) => s.question.trim(),
  target: (s) => s.fields?.answers,
  maxNewTokens: 128,
  score: (s, out) => ({ score: ocrbenchMatch(out, s.fields?.answers as string[], String(s.fields?.dataset ?? '')) }),
  aggregate(rows) {
    const count: Record<string, number> = Object.fromEntries(OCRBENCH_CATEGORIES.map((c) => [c, 0]));
    const n: Record<string, number> = {};
    for (const r of rows) {
      const c = r.sample.category ?? '';
      count[c] = (count[c] ?? 0) + r.scores.score;
      n[c] = (n[c] ?? 0) + 1;
    }
    const recognition = OCRBENCH_CATEGORIES.slice(0, 6).reduce((a, c) => a + count[c], 0);
    const final = Object.values(count).reduce((a, b) => a + b, 0);
    const breakdown: Record<string, Record<string, number>> = {};
    for (const c of Object.keys(n).sort()) breakdown[c] = { right: count[c], n: n[c] };
    return {
      metrics: {
        final_score: final,
        text_recognition: recognition,
        scene_text_vqa: count['Scene Text-centric VQA'],
        doc_vqa: count['Doc-oriented VQA'],
        key_information_extraction: count['Key Information Extraction'],
        handwritten_math: count['Handwritten Mathematical Expression Recognition'],
        accuracy: rows.length ? final / rows.length : 0,
      },
      breakdown,
      lmms: { ocrbench_accuracy: final / 1000 },
    };
  },
  primary: 'ocrbench_accuracy',
};

export default defineTask(spec);
