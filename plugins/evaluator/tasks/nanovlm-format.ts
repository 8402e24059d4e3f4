// The per-task prompt rewrites of nanoVLM's lmms-eval wrapper, character for character:
//   https://github.com/huggingface/nanoVLM/blob/main/eval/lmms_eval_wrapper.py
//   NanoVLMWrapper.get_benchmark_formatting / apply_benchmark_formatting
// The user text is user_prefix + context with the replacements applied in order + user_suffix; the
// assistant_prefix follows the generation prompt. Keys are lmms-eval task names: the wrapper's
// "chartvqa" and "scienceqa" keys match no lmms-eval task ("chartqa", "scienceqa_img"), so those
// two tasks get no rewrite, as under the wrapper.

export interface BenchmarkFormat {
  textReplacements: [string, string][];
  assistantPrefix: string;
  userPrefix: string;
  userSuffix: string;
}

const MC: BenchmarkFormat = {
  textReplacements: [
    ['\nOptions:', '\nChoices:'],
    ['\nA. ', '\nChoices:\nA. '],
    ['Please select the correct answer from the options above.', 'Answer with the letter.'],
    ["Answer with the option's letter from the given choices directly", 'Answer with the letter directly'],
  ],
  assistantPrefix: 'Answer:',
  userPrefix: '',
  userSuffix: '',
};

const BRIEF: BenchmarkFormat = { textReplacements: [], assistantPrefix: '', userPrefix: '', userSuffix: '\nGive a very brief answer.' };

const FORMATS: Record<string, BenchmarkFormat> = {
  ai2d: MC,
  mmstar: MC,
  seedbench: MC,
  scienceqa: MC,
  docvqa_val: {
    textReplacements: [],
    assistantPrefix: '',
    userPrefix:
      'Give a short and terse answer to the following question. ' +
      'Do not paraphrase or reformat the text you see in the image. Do not include any full stops. ' +
      'Just give the answer without additional explanation. Question: ',
    userSuffix: '',
  },
  chartvqa: {
    textReplacements: [],
    assistantPrefix: '',
    userPrefix:
      'For the question below, follow the following instructions:\n' +
      '-The answer should contain as few words as possible.\n' +
      "-Don't paraphrase or reformat the text you see in the image.\n" +
      '-Answer a binary question with Yes or No.\n' +
      '-When asked to give a numerical value, provide a number like 2 instead of Two.\n' +
      '-If the final answer has two or more items, provide it in the list format like [1, 2].\n' +
      '-When asked to give a ratio, give out the decimal value like 0.25 instead of 1:4.\n' +
      '-When asked to give a percentage, give out the whole value like 17 instead of decimal like 0.17%.\n' +
      "-Don't include any units in the answer.\n" +
      '-Do not include any full stops at the end of the answer.\n' +
      '-Try to include the full label from the graph when asked about an entity.\n' +
      'Question: ',
    userSuffix: '',
  },
  textvqa_val: {
    textReplacements: [],
    assistantPrefix: '',
    userPrefix:
      'Answer the following question about the image using as few words as possible. ' +
      'Follow these additional instructions:\n' +
      '-Always answer a binary question with Yes or No.\n' +
      '-When asked what time it is, reply with the time seen in the image.\n' +
      '-Do not put any full stops at the end of the answer.\n' +
      '-Do not put quotation marks around the answer.\n' +
      '-An answer with one or two words is favorable.\n' +
      '-Do not apply common sense knowledge. The answer can be found in the image.\n' +
      'Question: ',
    userSuffix: '',
  },
  mmmu_val: {
    textReplacements: [
      ['Question:', ''],
      ["Answer with the option's letter from the given choices directly.", 'Answer with the letter directly.'],
      ['\nA. ', '\nChoices:\nA. '],
    ],
    assistantPrefix: 'Answer:',
    userPrefix: '',
    userSuffix: '',
  },
  infovqa_val: BRIEF,
  mme: BRIEF,
  ocrbench: BRIEF,
};
FORMATS.docvqa_test = FORMATS.docvqa_val;
FORMATS.textvqa_test = FORMATS.textvqa_val;
FORMATS.mmmu_test = FORMATS.mmmu_val;

const NONE: BenchmarkFormat = { textReplacements: [], assistantPrefix: '', userPrefix: '', userSuffix: '' };

/** The wrapper's formatting of an lmms-eval task (none for a task it does not list). */
export function benchmarkFormat(lmmsTask: string): BenchmarkFormat {
  return FORMATS[lmmsTask] ?? NONE;
}

/** apply_benchmark_formatting on the user side: prefix, then the replacements (Python str.replace: every occurrence), then suffix. */
export function formatContext(context: string, lmmsTask: string): string {
  const f = benchmarkFormat(lmmsTask);
  let s = f.userPrefix + context;
  for (const [from, to] of f.textReplacements) s = s.replaceAll(from, to);
  return s + f.userSuffix;
}
