// VQA accuracy as lmms-eval scores TextVQA: the EvalAI answer normalisation then
// min(#matching human answers / 3, 1) averaged over the leave-one-out subsets of the answers.
//   lmms_eval/tasks/_task_utils/vqa_eval_metric.py  EvalAIAnswerProcessor (itself copied from
//     facebookresearch/mmf pythia/tasks/processors.py#L897, the official VQA evaluation)
//   lmms_eval/tasks/textvqa/utils.py                textvqa_process_results
// Reproduced quirk for quirk:
//   - the period regex is `(?!<=\d)(\.)(?!\d)`: the first group is a negative LOOKAHEAD for the
//     text "<=digit" (a typo for a lookbehind), so every "." not followed by a digit is removed;
//   - `PERIOD_STRIP.sub("", text, re.UNICODE)` passes re.UNICODE (= 32) as `count`: at most 32
//     periods are removed;
//   - punctuation is deleted (not replaced by a space) when the ORIGINAL text has it next to a
//     space, or when it contains a digit,digit comma anywhere.

/** EvalAI's contraction table (keys without apostrophes -> the canonical spelling). */
const CONTRACTIONS: Record<string, string> = {
  aint: "ain't", arent: "aren't", cant: "can't", couldve: "could've", couldnt: "couldn't",
  "couldn'tve": "couldn't've", "couldnt've": "couldn't've", didnt: "didn't", doesnt: "doesn't",
  dont: "don't", hadnt: "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", hasnt: "hasn't",
  havent: "haven't", hed: "he'd", "hed've": "he'd've", "he'dve": "he'd've", hes: "he's", howd: "how'd",
  howll: "how'll", hows: "how's", "Id've": "I'd've", "I'dve": "I'd've", Im: "I'm", Ive: "I've",
  isnt: "isn't", itd: "it'd", "itd've": "it'd've", "it'dve": "it'd've", itll: "it'll", "let's": "let's",
  maam: "ma'am", mightnt: "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
  mightve: "might've", mustnt: "mustn't", mustve: "must've", neednt: "needn't", notve: "not've",
  oclock: "o'clock", oughtnt: "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
  shant: "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", shouldve: "should've",
  shouldnt: "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
  "somebody'd": 'somebodyd', "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
  somebodyll: "somebody'll", somebodys: "somebody's", someoned: "someone'd", "someoned've": "someone'd've",
  "someone'dve": "someone'd've", someonell: "someone'll", someones: "someone's", somethingd: "something'd",
  "somethingd've": "something'd've", "something'dve": "something'd've", somethingll: "something'll",
  thats: "that's", thered: "there'd", "thered've": "there'd've", "there'dve": "there'd've",
  therere: "there're", theres: "there's", theyd: "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
  theyll: "they'll", theyre: "they're", theyve: "they've", twas: "'twas", wasnt: "wasn't",
  "wed've": "we'd've", "we'dve": "we'd've", weve: "we've", werent: "weren't", whatll: "what'll",
  whatre: "what're", whats: "what's", whatve: "what've", whens: "when's", whered: "where'd",
  wheres: "where's", whereve: "where've", whod: "who'd", "whod've": "who'd've", "who'dve": "who'd've",
  wholl: "who'll", whos: "who's", whove: "who've", whyll: "why'll", whyre: "why're", whys: "why's",
  wont: "won't", wouldve: "would've", wouldnt: "wouldn't", "wouldnt've": "wouldn't've",
  "wouldn'tve": "wouldn't've", yall: "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
  "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", youd: "you'd",
  "youd've": "you'd've", "you'dve": "you'd've", youll: "you'll", youre: "you're", youve: "you've",
};

const NUMBER_MAP: Record<string, string> = {
  none: '0', zero: '0', one: '1', two: '2', three: '3', four: '4', five: '5',
  six: '6', seven: '7', eight: '8', nine: '9', ten: '10',
};
const ARTICLES = new Set(['a', 'an', 'the']);
const PUNCTUATIONS = [';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',', '?', '!'];
const COMMA_STRIP = /(?<=\p{Nd})(,)+(?=\p{Nd})/u; // Python str patterns: \d is any Unicode digit
const PERIOD_STRIP = /(?!<=\p{Nd})(\.)(?!\p{Nd})/gu;

/** Python str.split() with no argument: split on runs of whitespace, no empty pieces. */
export function pySplit(s: string): string[] {
  return s.split(/\s+/u).filter((w) => w !== '');
}

function wordTokenize(word: string): string {
  return word.toLowerCase().replaceAll(',', '').replaceAll('?', '').replaceAll("'s", " 's").trim();
}

function processPunctuation(inText: string): string {
  let out = inText;
  const commaBetweenDigits = COMMA_STRIP.test(inText);
  for (const p of PUNCTUATIONS) {
    if (inText.includes(p + ' ') || inText.includes(' ' + p) || commaBetweenDigits) out = out.replaceAll(p, '');
    else out = out.replaceAll(p, ' ');
  }
  let count = 0; // re.sub(..., count=re.UNICODE=32)
  return out.replace(PERIOD_STRIP, (m) => (count++ < 32 ? '' : m));
}

function processDigitArticle(inText: string): string {
  const words = pySplit(inText.toLowerCase())
    .map((w) => NUMBER_MAP[w] ?? w)
    .filter((w) => !ARTICLES.has(w));
  return words.map((w) => (Object.hasOwn(CONTRACTIONS, w) ? CONTRACTIONS[w] : w)).join(' ');
}

/** EvalAIAnswerProcessor.__call__: the normalised answer both sides are compared as. */
export function normalizeVqaAnswer(answer: string): string {
  let item = wordTokenize(answer);
  item = item.replaceAll('\n', ' ').replaceAll('\t', ' ').trim();
  item = processPunctuation(item);
  return processDigitArticle(item);
}

/**
 * TextVQA accuracy of one prediction against its (usually 10) human answers: for each answer i,
 * min(1, #(other answers equal to the prediction) / 3), averaged. 0 without answers.
 */
export function vqaAccuracy(prediction: string, answers: readonly string[]): number {
  if (!answers.length) return 0;
  const pred = normalizeVqaAnswer(prediction.trim());
  const gts = answers.map(normalizeVqaAnswer);
  let sum = 0;
  for (let i = 0; i < gts.length; i++) {
    let matching = 0;
    for (let j = 0; j < gts.length; j++) if (j !== i && gts[j] === pred) matching++;
    sum += Math.min(1, matching / 3);
  }
  return sum / gts.length;
}
