// ANLS (Average Normalized Levenshtein Similarity, Biten et al. 2019) with threshold τ = 0.5, as
// lmms-eval scores DocVQA and InfographicVQA:
//   lmms_eval/api/metrics.py `anls` (from QwenLM/Qwen-VL eval_mm/infographicsvqa_eval.py)
// Per question: 1 - min over references of NL(gt, pred), NL = levenshtein(gt', pred') / max(|gt|, |pred|),
// where gt', pred' are lowercased, stripped, with whitespace runs collapsed to one space; the
// length is that of the RAW strings (as upper-cased), as the reference does. A score below τ counts 0.
// Both empty: NL = 0, score 1. Lengths and distances count Unicode code points (Python str).

/** Levenshtein distance over code points (insert, delete, substitute: cost 1). */
export function levenshtein(a: string, b: string): number {
  const s = [...a];
  const t = [...b];
  if (s.length < t.length) return levenshtein(b, a);
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const cur = [i];
    for (let j = 1; j <= t.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (s[i - 1] === t[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[t.length];
}

const squash = (s: string) => s.trim().toLowerCase().split(/\s+/u).filter(Boolean).join(' ');
const pyLen = (s: string) => [...s.toUpperCase()].length;

/** ANLS of one prediction against its references (0 without references). */
export function anls(prediction: string, references: readonly string[], threshold = 0.5): number {
  if (!references.length) return 0;
  const det = squash(prediction);
  let best = Infinity;
  for (const answer of references) {
    const length = Math.max(pyLen(answer), pyLen(prediction));
    const nl = length === 0 ? 0 : levenshtein(squash(answer), det) / length;
    best = Math.min(best, nl);
  }
  const score = 1 - best;
  return score < threshold ? 0 : score;
}
