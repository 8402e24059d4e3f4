// ChartQA's relaxed accuracy as lmms-eval scores it (lmms_eval/tasks/chartqa/utils.py
// `relaxed_correctness`, taken from QwenLM/Qwen-VL eval_mm/evaluate_vqa.py#L113; Methani et al.
// 2020 / Masry et al. 2022 §5.1): a numeric answer is right within 5% of the gold number, any
// other answer must match exactly (case-insensitively). "12%" reads as 0.12. A gold answer of 0
// (or not a number) falls back to the string comparison, as the reference does (`if target_float`).

/** Python's float(): optional spaces, sign, digits with `_` between them, '.', exponent, inf/nan. null when Python raises. */
export function pyFloat(text: string): number | null {
  const s = text.trim();
  const num = /^[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d(?:_?\d)*)?$/;
  if (num.test(s)) return Number(s.replaceAll('_', ''));
  const m = /^([+-]?)(inf|infinity|nan)$/i.exec(s);
  if (m) return m[2].toLowerCase() === 'nan' ? NaN : m[1] === '-' ? -Infinity : Infinity;
  return null;
}

function toFloat(text: string): number | null {
  // text.endswith("%"): float(text.rstrip("%")) / 100
  if (text.endsWith('%')) {
    const v = pyFloat(text.replace(/%+$/, ''));
    return v === null ? null : v / 100;
  }
  return pyFloat(text);
}

/** relaxed_correctness(prediction, target, max_relative_change=0.05) */
export function relaxedCorrectness(prediction: string, target: string, maxRelativeChange = 0.05): boolean {
  const p = toFloat(prediction);
  const t = toFloat(target);
  // Python truthiness of target_float: None and 0.0 are false (NaN is true)
  if (p !== null && t !== null && t !== 0) return Math.abs(p - t) / Math.abs(t) <= maxRelativeChange;
  return prediction.toLowerCase() === target.toLowerCase();
}

/** The best relaxed correctness over several references (1 or 0); lmms-eval's ChartQA has exactly one. */
export function relaxedAccuracy(prediction: string, references: readonly string[]): number {
  return references.some((r) => relaxedCorrectness(prediction, r)) ? 1 : 0;
}
