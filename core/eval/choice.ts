// Multiple-choice and yes/no answer checks of the lmms-eval tasks, each as its task file defines it:
//   MMStar      lmms_eval/tasks/mmstar/utils.py `exact_match` -> _task_utils/mcq_extract.py
//               `extract_mcq_answer` (since lmms-eval 9ca4445d, 2026-04: the letter is extracted from
//               free-form output by a priority ranking of formats), then compared to the answer letter
//   ScienceQA   lmms_eval/tasks/scienceqa/utils.py `sqa_process_results` (LLaVA's parse)
//   AI2D        lmms_eval/tasks/ai2d/ai2d.yaml: filter `MultiChoiceRegexFilter` (utils.py: `^\s*([A-Z])\.`
//               takes the letter, else the whole response), then metric exact_match with
//               ignore_case + ignore_punctuation (api/metrics.py `exact_match_hf_evaluate`)
//   MME         lmms_eval/tasks/mme/utils.py `parse_pred_ans` (from Otter) and `mme_process_results`
//   OCRBench    lmms_eval/tasks/ocrbench/utils.py `ocrbench_process_results`
// Python string semantics kept: str.strip(chars) strips that set from both ends; isalpha is a
// Unicode letter; isupper an upper-case letter.

const isAlpha = (c: string | undefined) => c !== undefined && /^\p{L}$/u.test(c);
const isUpper = (c: string | undefined) => c !== undefined && /^\p{Lu}$/u.test(c);

/** Python str.strip(chars) */
export function pyStrip(s: string, chars: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && chars.includes(s[a])) a++;
  while (b > a && chars.includes(s[b - 1])) b--;
  return s.slice(a, b);
}

const ANSWER_PHRASES = [
  'the answer is', 'answer is', 'the correct answer is', 'correct answer is', 'the best answer is',
  'best answer is', 'the correct option is', 'correct option is', 'the best option is', 'best option is',
  'the choice is', 'choice is', 'the correct choice is', 'correct choice is', 'i choose', 'i select',
  'i pick', 'my answer is', 'my choice is', '옵션', '정답은', '답은', '답:', '答案是', '答案为', '选', '答えは',
];
const PRIORITY: Record<string, number> = { start: 10, end: 9, phrase: 7, parentheses: 6, period: 5, colon: 4, right_paren: 3, space: 2, fallback: 0 };

/**
 * lmms-eval `extract_mcq_answer(response, choices)`: the choice letter of a free-form answer, ""
 * when none. Candidates in several formats; the highest-priority format wins, then the latest position.
 */
export function extractMcqAnswer(response: string, choices: readonly string[] = ['A', 'B', 'C', 'D', 'E', 'F', 'G', 'H']): string {
  if (!response || !response.trim()) return '';
  let text = response.trim();
  for (const ch of [',', '.', '!', '?', ';', ':', "'", '"']) text = pyStrip(text, ch);
  text = ' ' + text + ' ';
  const cands: { ch: string; pos: number; fmt: string }[] = [];
  const add = (fmt: string, make: (ch: string) => string) => {
    for (const ch of choices) if (text.includes(make(ch))) cands.push({ ch, pos: text.lastIndexOf(make(ch)), fmt });
  };
  add('parentheses', (c) => `(${c})`);
  add('period', (c) => `${c}.`);
  add('colon', (c) => `${c}:`);
  add('right_paren', (c) => `${c})`);
  add('space', (c) => `${c} `);
  const lower = text.toLowerCase();
  for (const phrase of ANSWER_PHRASES) {
    const idx = lower.indexOf(phrase);
    if (idx === -1) continue;
    const after = idx + phrase.length;
    for (const ch of choices) {
      const at = text.indexOf(ch, after);
      if (at !== -1) cands.push({ ch, pos: at, fmt: 'phrase' });
    }
  }
  const stripped = text.trim();
  const chars = [...stripped];
  for (const ch of choices) {
    if (stripped.startsWith(ch) && (chars.length === 1 || !isAlpha(chars[1]))) cands.push({ ch, pos: 0, fmt: 'start' });
  }
  for (const ch of choices) {
    if (stripped.endsWith(ch) && (chars.length === 1 || !isAlpha(chars[chars.length - 2]))) cands.push({ ch, pos: text.length - 1, fmt: 'end' });
  }
  if (!cands.length) for (const ch of choices) if (text.includes(ch)) cands.push({ ch, pos: text.lastIndexOf(ch), fmt: 'fallback' });
  if (!cands.length) return '';
  // sort(key=(priority, position), reverse=True) is stable: equal keys keep their order
  cands.sort((a, b) => PRIORITY[b.fmt] - PRIORITY[a.fmt] || b.pos - a.pos);
  return cands[0].ch;
}

/** MMStar `exact_match(pred, gt)`: 1 when the extracted letter (choices A-D) is the answer letter. */
export function mmstarMatch(prediction: string, answer: string): number {
  return extractMcqAnswer(prediction, ['A', 'B', 'C', 'D']) === answer.trim().toUpperCase() ? 1 : 0;
}

/**
 * MMStar's check in lmms-eval before 9ca4445d (2026-04; "Brought from MMStar"), which figures
 * published until then (nanoVLM's among them) used: the answer letter is the first character of
 * the lowercased, stripped output, or follows "(", "option " or "the answer is " at its start.
 */
export function mmstarMatchLegacy(prediction: string, answer: string): number {
  const gt = answer.toLowerCase().replaceAll('\n', ' ').trim();
  const p = [...prediction.toLowerCase().replaceAll('\n', ' ').trim()];
  const at = (i: number) => p[i]; // Python indexing past the end raises: no match
  if (!p.length) return 0;
  if (gt === at(0)) return 1;
  if (at(0) === '(' && at(1) !== undefined && gt === at(1)) return 1;
  if (p.slice(0, 7).join('') === 'option ' && at(7) !== undefined && gt === at(7)) return 1;
  if (p.slice(0, 14).join('') === 'the answer is ' && at(14) !== undefined && gt === at(14)) return 1;
  return 0;
}

/** ScienceQA `sqa_process_results`: the whole answer is the letter, or it starts with "<Upper>." */
export function scienceqaMatch(prediction: string, answerLetter: string): number {
  const target = answerLetter.trim().toLowerCase();
  const pred = prediction.trim();
  if (pred.toLowerCase() === target) return 1;
  const c = [...pred];
  if (c.length >= 2 && isUpper(c[0]) && c[1] === '.') return c[0].toLowerCase() === target ? 1 : 0;
  return 0;
}

const PUNCTUATION = `!"#$%&'()*+,-./:;<=>?@[\\]^_\`{|}~`; // Python string.punctuation

/** lmms-eval `exact_match` with ignore_case and ignore_punctuation (string.punctuation deleted). */
export function exactMatchIgnoring(prediction: string, reference: string): number {
  const norm = (s: string) => [...s.toLowerCase()].filter((c) => !PUNCTUATION.includes(c)).join('');
  return norm(prediction) === norm(reference) ? 1 : 0;
}

/** AI2D: MultiChoiceRegexFilter (`^\s*([A-Z])\.` -> the letter, else the response) then exact_match ignoring case/punctuation. */
export function ai2dMatch(response: string, answerLetter: string): number {
  const m = /^\s*([A-Z])\./.exec(response);
  const filtered = (m ? m[1] : response).trim(); // lmms-eval strips the (filtered) results before scoring
  return exactMatchIgnoring(filtered, answerLetter);
}

/** MME `parse_pred_ans`: "yes" | "no" | "other". */
export function mmeParse(prediction: string): 'yes' | 'no' | 'other' {
  const p = prediction.toLowerCase().trim().replaceAll('.', '');
  if (p === 'yes' || p === 'no') return p;
  if ([...p].length === 1) return p === 'y' ? 'yes' : p === 'n' ? 'no' : 'other';
  const prefix = [...p].slice(0, 4).join('');
  if (prefix.includes('yes')) return 'yes';
  if (prefix.includes('no')) return 'no';
  return 'other';
}

/** MME per-question score: 1 when the parsed answer is the gold yes/no. */
export function mmeMatch(prediction: string, answer: string): number {
  return mmeParse(prediction) === answer.toLowerCase().trim().replaceAll('.', '') ? 1 : 0;
}

/** OCRBench `_fold_fullwidth_ascii`: U+FF01..U+FF5E -> ASCII, U+3000 -> space. */
function foldFullwidth(s: string): string {
  let out = '';
  for (const c of s) {
    const cp = c.codePointAt(0)!;
    out += cp >= 0xff01 && cp <= 0xff5e ? String.fromCodePoint(cp - 0xfee0) : cp === 0x3000 ? ' ' : c;
  }
  return out;
}

/**
 * OCRBench `ocrbench_process_results`: 1 when some reference is contained in the prediction —
 * for HME100k (handwritten maths) with every space removed, otherwise case-insensitively after
 * folding full-width ASCII.
 */
export function ocrbenchMatch(prediction: string, references: readonly string[], dataset = ''): number {
  const pred = prediction.trim();
  for (const gt of references) {
    if (dataset === 'HME100k') {
      const answer = gt.trim().replaceAll('\n', ' ').replaceAll(' ', '');
      if (pred.trim().replaceAll('\n', ' ').replaceAll(' ', '').includes(answer)) return 1;
    } else {
      const answer = foldFullwidth(gt).toLowerCase().trim().replaceAll('\n', ' ');
      if (foldFullwidth(pred).toLowerCase().trim().replaceAll('\n', ' ').includes(answer)) return 1;
    }
  }
  return 0;
}
