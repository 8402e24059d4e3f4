// Prompt formats of nanoVLM v0.1 (data/datasets.py at tag v0.1), character for character:
//   VQADataset:    f"Question: {question} Answer:"            then answer + eos_token, no space between
//   MMStarDataset: f"Question: {question} \nAnswer only with the letter! \nAnswer:"
// https://github.com/huggingface/nanoVLM/blob/v0.1/data/datasets.py

/** The training / open-question prompt: `Question: {q} Answer:` (the answer follows directly). */
export function vqaPrompt(question: string): string {
  return `Question: ${question} Answer:`;
}

/** The MMStar multiple-choice prompt (note the spaces before each `\n`). */
export function mmstarPrompt(question: string): string {
  return `Question: ${question} \nAnswer only with the letter! \nAnswer:`;
}

/** MMStar's inline options: `...\nOptions: A: x, B: y, C: z, D: w` (our synthetic MC uses it too). */
export function formatOptions(choices: string[]): string {
  return 'Options: ' + choices.map((c, i) => `${String.fromCharCode(65 + i)}: ${c}`).join(', ');
}

/**
 * The option texts of an MMStar question, in letter order, or undefined when the question has no
 * `Options:` part. Splits on `, B: `, `, C: `, ... (an option text containing such a sequence is
 * ambiguous in MMStar's format itself).
 */
export function parseOptions(question: string): string[] | undefined {
  const at = question.lastIndexOf('Options:');
  if (at < 0) return undefined;
  const body = question.slice(at + 'Options:'.length).trim();
  if (!body.startsWith('A:')) return undefined;
  const out: string[] = [];
  let rest = body.slice(2);
  for (let k = 1; ; k++) {
    const marker = `, ${String.fromCharCode(65 + k)}:`;
    const i = rest.indexOf(marker);
    if (i < 0) {
      out.push(rest.trim());
      break;
    }
    out.push(rest.slice(0, i).trim());
    rest = rest.slice(i + marker.length);
  }
  return out;
}
