// MME (lmms-lab/MME, split test, 2,374 yes/no questions, two per image) as lmms-eval's `mme`:
// lmms_eval/tasks/mme/mme.yaml, utils.py. Prompt: question.strip() without " Please answer yes
// or no." + "\nAnswer the question using a single word or phrase." (nanoVLM's wrapper adds
// "\nGive a very brief answer."). Metric: per category, the mean over images of acc + acc+ (acc:
// % of the image's two questions right, acc+: 100 when both are), summed over the perception
// categories (max 2000) and the cognition ones (max 800), as mme_aggregate_results. lmms-eval
// asserts two questions per image; with --limit an image may have one: it counts as is and
// `incomplete_pairs` says how many.
import { mmeMatch } from '../../../core/eval/choice.ts';
import { defineTask, type TaskSpec, IMAGE_LEAF, imageOf, str, TEXT_LEAF, type Scored } from './task.ts';

export const MME_PERCEPTION = ['existence', 'count', 'position', 'color', 'posters', 'celebrity', 'scene', 'landmark', 'artwork', 'OCR'];
export const MME_COGNITION = ['commonsense_reasoning', 'numerical_calculation', 'text_translation', 'code_reasoning'];

/** mme_aggregate_results over the rows of one group: the sum over categories of mean(acc + acc+) per image */
export function mmeScores(rows: { category: string; questionId: string; score: number }[]) {
  const cats = new Map<string, Map<string, number[]>>();
  for (const r of rows) {
    const byImage = cats.get(r.category) ?? new Map<string, number[]>();
    byImage.set(r.questionId, [...(byImage.get(r.questionId) ?? []), r.score]);
    cats.set(r.category, byImage);
  }
  const perCategory: Record<string, number> = {};
  let incomplete = 0;
  for (const [c, byImage] of cats) {
    let total = 0;
    for (const scores of byImage.values()) {
      if (scores.length !== 2) incomplete++;
      const sum = scores.reduce((a, b) => a + b, 0);
      total += (sum / scores.length) * 100 + (sum === scores.length ? 100 : 0);
    }
    perCategory[c] = total / byImage.size;
  }
  return { total: Object.values(perCategory).reduce((a, b) => a + b, 0), perCategory, incomplete };
}

export function aggregateMme(rows: Scored[]) {
  const items = rows.map((r) => ({ category: r.sample.category ?? '', questionId: String(r.sample.fields?.question_id ?? r.sample.id), score: r.scores.score }));
  const perception = mmeScores(items.filter((i) => MME_PERCEPTION.includes(i.category)));
  const cognition = mmeScores(items.filter((i) => !MME_PERCEPTION.includes(i.category)));
  const breakdown: Record<string, Record<string, number>> = {};
  for (const [c, v] of Object.entries({ ...perception.perCategory, ...cognition.perCategory }).sort()) {
    const inC = items.filter((i) => i.category === c);
    breakdown[c] = { score: v, accuracy: inC.reduce((a, i) => a + i.score, 0) / inC.length, n: inC.length };
  }
  const lmms: Record<string, number> = {};
  if (items.some((i) => MME_PERCEPTION.includes(i.category))) lmms.mme_perception_score = perception.total;
  if (items.some((i) => !MME_PERCEPTION.includes(i.category))) lmms.mme_cognition_score = cognition.total;
  return {
    metrics: { ...lmms, incomplete_pairs: perception.incomplete + cognition.incomplete },
    breakdown,
    lmms,
  };
}

export const spec: TaskSpec = {
  name: 'mme',
  lmmsTask: 'mme',
  description: 'MME yes/no: perception and cognition scores (acc + acc+ per image, summed over categories)',
  source: 'lmms_eval/tasks/mme',
  hub: { repo: 'lmms-lab/MME', split: 'test' },
  leaves: [IMAGE_LEAF(), TEXT_LEAF('question'), TEXT_LEAF('answer'), TEXT_LEAF('category')],
  columns: ['question_id', 'image', 'question', 'answer', 'category'],
  toSample: (row, id) => ({ id: `${id} (${str(row.question_id)})`, image: imageOf(row.image), question: str(row.question), answer: str(row.answer), category: str(row.category), fields: { question_id: str(row.question_id) } }),
  context: (s) => `${s.question.trim().replaceAll(' Please answer yes or no.', '')}\nAnswer the question using a single word or phrase.`,
  target: (s) => s.answer,
  maxNewTokens: 16,
  score: (s, out) => ({ score: mmeMatch(out, s.answer) }),
  aggregate: aggregateMme,
  primary: 'mme_perception_score',
};

export default defineTask(spec);
