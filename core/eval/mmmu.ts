// MMMU answer parsing and scoring, the official MMMU evaluation code as lmms-eval runs it:
//   MMMU-Benchmark/MMMU eval/eval_utils.py @51ce7f3 (parse_multi_choice_response, extract_numbers,
//   check_is_number, normalize_str, parse_open_response, eval_multi_choice, eval_open,
//   calculate_ins_level_acc) via lmms_eval/tasks/mmmu/utils.py and
//   lmms_eval/tasks/_task_utils/mmmu_mcq_utils.py.
// Two departures, both reported:
//   - when no option can be read from a multiple-choice answer, the reference picks one with
//     Python's `random.choice`; we pick with a generator seeded by the question id (so a run is
//     reproducible) and count these guesses (`random_guesses`);
//   - `mmmu_process_results` keeps only `str(parse_open_response(pred)[0])` for open questions and
//     `eval_open` then iterates that STRING character by character, so lmms-eval scores an open
//     question right only when the gold answer normalises to "" — in practice never. `evalOpen`
//     is the official scoring (the whole parsed list); `evalOpenLmmsEval` reproduces lmms-eval's.
import { hashString, mulberry32 } from '../rng.ts';
import { pyFloat } from './relaxed.ts';

/** Options list -> letters and letter -> text (get_multi_choice_info). */
export function multiChoiceInfo(options: readonly string[]): { allChoices: string[]; index2ans: Record<string, string> } {
  const allChoices = options.map((_, i) => String.fromCharCode(65 + i));
  const index2ans: Record<string, string> = {};
  allChoices.forEach((c, i) => (index2ans[c] = options[i]));
  return { allChoices, index2ans };
}

function stripChar(s: string, ch: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && s[a] === ch) a++;
  while (b > a && s[b - 1] === ch) b--;
  return s.slice(a, b);
}

/** parse_multi_choice_response: the letter the response chooses; `guessed` when none could be read. */
export function parseMultiChoiceResponse(
  response: string,
  allChoices: readonly string[],
  index2ans: Record<string, string>,
  seed = 0,
): { letter: string; guessed: boolean } {
  for (const ch of [',', '.', '!', '?', ';', ':', "'"]) response = stripChar(response, ch);
  response = ' ' + response + ' ';
  let indexAns = true;
  let withBracket = false;
  const cands: string[] = [];
  for (const c of allChoices) {
    if (response.includes(`(${c})`)) {
      cands.push(c);
      withBracket = true;
    }
  }
  if (!cands.length) for (const c of allChoices) if (response.includes(`${c} `)) cands.push(c);
  if (!cands.length) for (const c of allChoices) if (response.includes(`${c}.`)) cands.push(c);
  if (!cands.length && pySplitCount(response) > 5) {
    for (const [idx, ans] of Object.entries(index2ans)) {
      if (response.toLowerCase().includes(ans.toLowerCase())) {
        cands.push(idx);
        indexAns = false;
      }
    }
  }
  if (!cands.length) {
    const rand = mulberry32(seed);
    return { letter: allChoices[Math.floor(rand() * allChoices.length)], guessed: true };
  }
  if (cands.length === 1) return { letter: cands[0], guessed: false };
  const starts = cands.map((can) =>
    indexAns
      ? withBracket
        ? response.lastIndexOf(`(${can})`)
        : response.lastIndexOf(` ${can} `)
      : response.toLowerCase().lastIndexOf(index2ans[can].toLowerCase()),
  );
  let best = 0; // np.argmax: the first of equal maxima
  for (let i = 1; i < starts.length; i++) if (starts[i] > starts[best]) best = i;
  return { letter: cands[best], guessed: false };
}

function pySplitCount(s: string): number {
  return s.split(/\s+/u).filter(Boolean).length;
}

/** extract_numbers: numbers with thousands commas, in scientific notation, and simple ones (in that order). */
export function extractNumbers(s: string): string[] {
  const commas = s.match(new RegExp(String.raw`-?${WB}${D}{1,3}(?:,${D}{3})+${WB}`, 'gu')) ?? [];
  const scientific = s.match(new RegExp(String.raw`-?${D}+(?:\.${D}+)?[eE][+-]?${D}+`, 'gu')) ?? [];
  const simple = s.match(new RegExp(String.raw`-?(?:${D}+\.${D}+|\.${D}+|${D}+${WB})(?![eE][+-]?${D}+)(?![,${D}])`, 'gu')) ?? [];
  return [...commas, ...scientific, ...simple];
}

// Python 3 str patterns: \d is any decimal digit, \b a boundary between Unicode word characters and others
const D = String.raw`\p{Nd}`;
const W = String.raw`[\p{L}\p{N}_]`;
const WB = String.raw`(?:(?<=${W})(?!${W})|(?<!${W})(?=${W}))`;

/** check_is_number: float(s.replace(",", "")) succeeds */
export function checkIsNumber(s: string): boolean {
  return pyFloat(s.replaceAll(',', '')) !== null;
}

/** Python round(x, 2) (to the nearest representable two-decimal value) */
function round2(x: number): number {
  return Number.isFinite(x) ? Number(x.toFixed(2)) : x;
}

/** normalize_str: a number -> [float rounded to 2 decimals]; text -> lowercased ([" x", "x "] for one character). */
export function normalizeStr(s: string): (string | number)[] {
  s = s.trim();
  if (checkIsNumber(s)) return [round2(pyFloat(s.replaceAll(',', ''))!)];
  s = s.toLowerCase();
  if ([...s].length === 1) return [' ' + s, s + ' '];
  return [s];
}

const TRIVIAL = new Set([':', ',', '.', '!', '?', ';', "'"]);

/** parse_open_response: candidate answers (strings and numbers), duplicates removed. */
export function parseOpenResponse(response: string): (string | number)[] {
  const keyResponses = (() => {
    const r = stripChar(response.trim(), '.').toLowerCase();
    // the split's `(?=[A-Z])` never matches a lowercased text: in effect a split on newlines
    const subs = r.split(/\.\s(?=[A-Z])|\n/);
    const indicators = ['could be ', 'so ', 'is ', 'thus ', 'therefore ', 'final ', 'answer ', 'result '];
    const keys: string[] = [];
    subs.forEach((resp, index) => {
      if (index === subs.length - 1) indicators.push('=');
      let shortest: string | null = null;
      for (const ind of indicators) {
        if (!resp.includes(ind)) continue;
        const tail = resp.split(ind).at(-1)!.trim();
        if (!shortest || tail.length < shortest.length) shortest = tail;
      }
      if (shortest && !TRIVIAL.has(shortest.trim())) keys.push(shortest);
    });
    return keys.length ? keys : [r];
  })();
  const preds: string[] = [...keyResponses];
  for (const resp of keyResponses) preds.push(...extractNumbers(resp));
  const out: (string | number)[] = [];
  for (const p of preds) for (const n of normalizeStr(p)) if (!out.includes(n)) out.push(n);
  return out;
}

/** eval_multi_choice */
export function evalMultiChoice(gold: string | string[], pred: string): boolean {
  return Array.isArray(gold) ? gold.includes(pred) : gold === pred;
}

function goldNorms(gold: string | string[]): (string | number)[] {
  return Array.isArray(gold) ? gold.flatMap(normalizeStr) : normalizeStr(gold);
}

/** eval_open (official): a parsed string containing a normalised gold string, or a parsed number equal to a gold number. */
export function evalOpen(gold: string | string[], preds: readonly (string | number)[]): boolean {
  const norms = goldNorms(gold);
  for (const p of preds) {
    if (typeof p === 'string') {
      if (norms.some((n) => typeof n === 'string' && p.includes(n))) return true;
    } else if (norms.includes(p)) return true;
  }
  return false;
}

/** Python str() of a parsed value (floats print with a ".0") */
function pyStr(v: string | number): string {
  if (typeof v === 'number' && !Number.isFinite(v)) return Number.isNaN(v) ? 'nan' : v > 0 ? 'inf' : '-inf';
  return typeof v === 'string' ? v : Number.isInteger(v) && Math.abs(v) < 1e16 ? `${v}.0` : String(v);
}

/** eval_open as lmms-eval calls it: on the characters of str(parsed[0]) (see the header). */
export function evalOpenLmmsEval(gold: string | string[], preds: readonly (string | number)[]): boolean {
  const first = preds.length ? pyStr(preds[0]) : '';
  return evalOpen(gold, [...first]);
}

/** extract_subset_name("validation_Art_Theory_12") -> "Art_Theory" */
export function mmmuSubject(id: string): string {
  const split = id.split('_')[0];
  const m = new RegExp(`^${split.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}_(.+?)_\\d+$`).exec(id);
  if (!m) throw new Error(`no MMMU subject in id "${id}" (expected <split>_<Subject>_<n>)`);
  return m[1];
}

export const MMMU_DOMAINS: Record<string, string[]> = {
  'Art and Design': ['Art', 'Art_Theory', 'Design', 'Music'],
  Business: ['Accounting', 'Economics', 'Finance', 'Manage', 'Marketing'],
  Science: ['Biology', 'Chemistry', 'Geography', 'Math', 'Physics'],
  'Health and Medicine': ['Basic_Medical_Science', 'Clinical_Medicine', 'Diagnostics_and_Laboratory_Medicine', 'Pharmacy', 'Public_Health'],
  'Humanities and Social Science': ['History', 'Literature', 'Sociology', 'Psychology'],
  'Tech and Engineering': ['Agriculture', 'Architecture_and_Engineering', 'Computer_Science', 'Electronics', 'Energy_and_Power', 'Materials', 'Mechanical_Engineering'],
};

export interface MmmuScored {
  id: string;
  questionType: string;
  correct: boolean;
  /** lmms-eval's verdict (differs from `correct` on open questions only) */
  correctLmmsEval: boolean;
  guessed: boolean;
}

/** Score one MMMU answer: multiple choice by the letter parser, open by parse_open_response. */
export function scoreMmmu(doc: { id: string; question_type: string; answer: string; options: string[] }, prediction: string): MmmuScored {
  if (doc.question_type === 'multiple-choice') {
    const { allChoices, index2ans } = multiChoiceInfo(doc.options);
    const { letter, guessed } = parseMultiChoiceResponse(prediction, allChoices, index2ans, hashString(doc.id));
    const ok = evalMultiChoice(doc.answer, letter);
    return { id: doc.id, questionType: doc.question_type, correct: ok, correctLmmsEval: ok, guessed };
  }
  const parsed = parseOpenResponse(prediction);
  return { id: doc.id, questionType: doc.question_type, correct: evalOpen(doc.answer, parsed), correctLmmsEval: evalOpenLmmsEval(doc.answer, parsed), guessed: false };
}

/** Instance-level accuracy overall, per domain ("Overall-<domain>") and per subject, as mmmu_aggregate_results. */
export function aggregateMmmu(rows: MmmuScored[]): { metrics: Record<string, number>; breakdown: Record<string, Record<string, number>> } {
  const acc = (rs: MmmuScored[], f: (r: MmmuScored) => boolean) => (rs.length ? rs.filter(f).length / rs.length : 0);
  const bySubject = new Map<string, MmmuScored[]>();
  for (const r of rows) {
    const s = mmmuSubject(r.id);
    bySubject.set(s, [...(bySubject.get(s) ?? []), r]);
  }
  const breakdown: Record<string, Record<string, number>> = {};
  for (const [domain, subjects] of Object.entries(MMMU_DOMAINS)) {
    const rs = subjects.flatMap((s) => bySubject.get(s) ?? []);
    if (rs.length) breakdown[`Overall-${domain}`] = { mmmu_acc: acc(rs, (r) => r.correct), n: rs.length };
    for (const s of subjects) {
      const sr = bySubject.get(s);
      if (sr) breakdown[s] = { mmmu_acc: acc(sr, (r) => r.correct), n: sr.length };
    }
  }
  return {
    metrics: {
      mmmu_acc: acc(rows, (r) => r.correct),
      mmmu_acc_lmms_eval: acc(rows, (r) => r.correctLmmsEval),
      open: rows.filter((r) => r.questionType !== 'multiple-choice').length,
      random_guesses: rows.filter((r) => r.guessed).length,
      n: rows.length,
    },
    breakdown,
  };
}

/** MMMU's `options` column: a Python list literal in a string ("['a', 'b']"). */
export function parseMmmuOptions(s: string): string[] {
  const t = s.trim();
  if (!t.startsWith('[') || !t.endsWith(']')) throw new Error(`options ${JSON.stringify(s.slice(0, 40))} is not a list literal`);
  const out: string[] = [];
  const re = /\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*(,|$)/gy;
  const body = t.slice(1, -1).trim();
  if (!body) return out;
  re.lastIndex = 0;
  let m: RegExpExecArray | null;
  while (re.lastIndex < body.length && (m = re.exec(body))) {
    const raw = m[1] ?? m[2];
    out.push(raw.replace(/\\(.)/g, (_, c: string) => ({ n: '\n', t: '\t' })[c] ?? c));
    if (m[3] === '') break;
  }
  return out;
}
