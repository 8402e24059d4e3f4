// The lmms-eval metrics (core/eval/*) on worked examples from their official definitions, edge
// cases included. Each expected value is derived by hand from the reference code named in the
// file under test (and was cross-checked against that Python code on 24,000 random strings).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeVqaAnswer, vqaAccuracy } from '../../../core/eval/vqa.ts';
import { anls, levenshtein } from '../../../core/eval/anls.ts';
import { pyFloat, relaxedCorrectness, relaxedAccuracy } from '../../../core/eval/relaxed.ts';
import { ai2dMatch, extractMcqAnswer, mmeMatch, mmeParse, mmstarMatch, mmstarMatchLegacy, ocrbenchMatch, scienceqaMatch } from '../../../core/eval/choice.ts';
import {
  aggregateMmmu,
  evalOpen,
  evalOpenLmmsEval,
  extractNumbers,
  mmmuSubject,
  normalizeStr,
  parseMmmuOptions,
  parseMultiChoiceResponse,
  parseOpenResponse,
  scoreMmmu,
} from '../../../core/eval/mmmu.ts';
import { scorePairs } from '../../../core/eval/score.ts';

const close = (a: number, b: number, msg?: string) => assert.ok(Math.abs(a - b) < 1e-12, `${msg ?? ''} ${a} != ${b}`);

test('VQA normalisation: case, articles, number words, contractions, punctuation', () => {
  const cases: [string, string][] = [
    ['Two dogs.', '2 dogs'], // number word, final period removed
    ['The cat', 'cat'], // article
    ['an apple', 'apple'],
    ['a', ''], // only an article
    ['none', '0'],
    ['ten', '10'],
    ['dont', "don't"], // contraction table
    ['Yes!', 'yes'],
    ['3.5', '3.5'], // a period before a digit stays
    ['1,000', '1000'], // commas go (word_tokenize)
    ['hello-world', 'hello world'], // punctuation not next to a space -> a space
    ['hello - world', 'hello world'], // next to a space -> deleted
    ['(red)', 'red'],
    ["cat's toy", "cat 's toy"], // "'s" split off
    ['  Left\tside\n', 'left side'],
    ['what?', 'what'],
  ];
  for (const [input, want] of cases) assert.equal(normalizeVqaAnswer(input), want, JSON.stringify(input));
});

test('VQA normalisation quirks of the reference: digit,digit commas delete all punctuation; at most 32 periods go', () => {
  // word_tokenize already removed the comma, so the digit-comma rule never fires after it: "-" becomes a space
  assert.equal(normalizeVqaAnswer('1,000-2'), '1000 2');
  // 40 periods: re.sub(..., re.UNICODE) is count=32, so 8 remain
  assert.equal(normalizeVqaAnswer('.'.repeat(40)), '.'.repeat(8));
});

test('VQA accuracy: min(#matches / 3, 1) averaged over the 10 leave-one-out subsets', () => {
  const answers = (k: number) => [...Array(k).fill('two'), ...Array(10 - k).fill('three')];
  close(vqaAccuracy('2', answers(0)), 0);
  close(vqaAccuracy('2', answers(1)), 0.3); // 9 subsets see 1 match (1/3), 1 sees none
  close(vqaAccuracy('2', answers(2)), 0.6); // 2 x 1/3 + 8 x 2/3
  close(vqaAccuracy('Two.', answers(3)), 0.9); // 3 x 2/3 + 7 x 1
  close(vqaAccuracy('the two', answers(4)), 1);
  close(vqaAccuracy('', ['', 'a', 'the', ...Array(7).fill('x')]), 0.9); // empty equals articles-only answers: 3 matches
  close(vqaAccuracy('x', []), 0);
});

test('ANLS: normalised edit distance, threshold 0.5, best reference, empty predictions', () => {
  assert.equal(levenshtein('kitten', 'sitting'), 3);
  assert.equal(levenshtein('', 'abc'), 3);
  close(anls('cat', ['cat']), 1);
  close(anls('  The   CAT ', ['the cat']), 1); // case and whitespace do not count
  close(anls('bat', ['cat']), 1 - 1 / 3);
  close(anls('abxy', ['abcd']), 0.5); // exactly at the threshold: kept
  close(anls('abxyz', ['abcde']), 0); // 0.4 < 0.5 -> 0
  close(anls('', ['cat']), 0); // empty prediction
  close(anls('', ['']), 1); // both empty: distance 0
  close(anls('dog', ['cat', 'dogs']), 0.75); // best reference
  // the length is that of the raw strings: spaces the normalisation removed still count
  close(anls('ab', ['ab      ']), 1);
  close(anls('ac', ['ab      ']), 1 - 1 / 8);
});

test("relaxed accuracy: 5% on numbers, percentages as fractions, exact otherwise", () => {
  assert.equal(relaxedCorrectness('12', '12.5'), true); // 4%
  assert.equal(relaxedCorrectness('11.8', '12.5'), false); // 5.6%
  assert.equal(relaxedCorrectness('-10.4', '-10'), true);
  assert.equal(relaxedCorrectness('12%', '0.12'), true); // 12% reads 0.12
  assert.equal(relaxedCorrectness('12', '12%'), false); // 12 vs 0.12
  assert.equal(relaxedCorrectness('12.4%', '12%'), true);
  assert.equal(relaxedCorrectness('0.0', '0'), false); // gold 0 is falsy: string comparison
  assert.equal(relaxedCorrectness('0', '0'), true);
  assert.equal(relaxedCorrectness('1,000', '1000'), false); // float("1,000") fails: string comparison
  assert.equal(relaxedCorrectness(' 7 ', '7'), true); // float() strips spaces
  assert.equal(relaxedCorrectness('Yes', 'yes'), true);
  assert.equal(relaxedCorrectness('', '5'), false);
  assert.equal(relaxedAccuracy('2019', ['2020']), 1); // years are numbers too: 0.05% off
  assert.equal(pyFloat('1_000.5'), 1000.5);
  assert.equal(pyFloat('1__0'), null);
  assert.equal(pyFloat('-inf'), -Infinity);
  assert.equal(pyFloat('1e3'), 1000);
  assert.equal(pyFloat('.5'), 0.5);
  assert.equal(pyFloat('5.'), 5);
  assert.equal(pyFloat('abc'), null);
});

test('MMStar: the option letter extracted from free-form output (lmms-eval extract_mcq_answer)', () => {
  const cases: [string, string][] = [
    ['A', 'A'],
    ['(B)', 'B'],
    ['The answer is C.', 'C'],
    ['B. cat', 'B'],
    ['D) dog', 'D'],
    ['Answer: B', 'B'],
    ['I think (A) at first, but the answer is (C)', 'C'], // same format: the later one
    ['Apple', 'A'], // no format matches: the fallback takes any capital option letter
    ['apple', ''],
    ['', ''],
  ];
  for (const [out, want] of cases) assert.equal(extractMcqAnswer(out, ['A', 'B', 'C', 'D']), want, JSON.stringify(out));
  assert.equal(mmstarMatch('B. cat', ' b '), 1);
  assert.equal(mmstarMatch('E', 'E'), 0); // MMStar reads A-D only
});

test('MMStar before 2026-04: the first character, or after "(", "option ", "the answer is "', () => {
  assert.equal(mmstarMatchLegacy('B', 'B'), 1);
  assert.equal(mmstarMatchLegacy(' b. dog', 'B'), 1);
  assert.equal(mmstarMatchLegacy('(C)', 'C'), 1);
  assert.equal(mmstarMatchLegacy('Option D', 'D'), 1);
  assert.equal(mmstarMatchLegacy('The answer is A.', 'A'), 1);
  assert.equal(mmstarMatchLegacy('The correct answer is A', 'A'), 0); // extract_mcq_answer reads this one
  assert.equal(mmstarMatch('The correct answer is A', 'A'), 1);
  assert.equal(mmstarMatchLegacy('Apple', 'A'), 1); // the first character, whatever follows
  assert.equal(mmstarMatchLegacy('', 'A'), 0); // IndexError in the reference: 0
  assert.equal(mmstarMatchLegacy('(', 'A'), 0);
  assert.equal(mmstarMatchLegacy('the answer is ', 'A'), 0);
});

test('ScienceQA (LLaVA parse) and AI2D (regex filter + exact match ignoring case and punctuation)', () => {
  assert.equal(scienceqaMatch('A', 'A'), 1);
  assert.equal(scienceqaMatch(' b ', 'B'), 1);
  assert.equal(scienceqaMatch('B. cat', 'B'), 1);
  assert.equal(scienceqaMatch('b. cat', 'B'), 0); // the letter must be upper case
  assert.equal(scienceqaMatch('The answer is A', 'A'), 0);
  assert.equal(ai2dMatch('A. dog', 'A'), 1);
  assert.equal(ai2dMatch('  C.', 'C'), 1);
  assert.equal(ai2dMatch('(A)', 'A'), 1); // punctuation removed
  assert.equal(ai2dMatch('a', 'A'), 1);
  assert.equal(ai2dMatch('A dog', 'A'), 0);
  assert.equal(ai2dMatch('B. dog', 'A'), 0);
});

test('MME: yes/no parsing from the first four characters', () => {
  assert.equal(mmeParse('Yes'), 'yes');
  assert.equal(mmeParse('No.'), 'no');
  assert.equal(mmeParse('y'), 'yes');
  assert.equal(mmeParse('Yes, there is a dog'), 'yes');
  assert.equal(mmeParse('Not sure'), 'no'); // "not " contains "no"
  assert.equal(mmeParse('There is no dog'), 'other');
  assert.equal(mmeParse(''), 'other');
  assert.equal(mmeMatch('yes.', 'Yes'), 1);
  assert.equal(mmeMatch('maybe', 'No'), 0);
});

test('OCRBench: a reference contained in the prediction; HME100k ignores spaces; full-width folded', () => {
  assert.equal(ocrbenchMatch('The word is CHAIN.', ['CHAIN']), 1);
  assert.equal(ocrbenchMatch('chai', ['CHAIN']), 0);
  assert.equal(ocrbenchMatch('ＣＨＡＩＮ', ['chain']), 1);
  assert.equal(ocrbenchMatch('x=\\frac{17}{5}', ['x = \\frac { 1 7 } { 5 }\n'], 'HME100k'), 1);
  assert.equal(ocrbenchMatch('x=\\frac{17}{5}', ['x = \\frac { 1 7 } { 5 }\n'], 'IAM'), 0);
  assert.equal(ocrbenchMatch('26.58', ['26.58', '$26.58']), 1);
});

test('MMMU multiple choice: brackets, letters, option texts, and the seeded guess when nothing parses', () => {
  const opts = ['cat', 'dog', 'a bird', 'fish'];
  const info = { all: ['A', 'B', 'C', 'D'], idx: { A: 'cat', B: 'dog', C: 'a bird', D: 'fish' } };
  const parse = (r: string) => parseMultiChoiceResponse(r, info.all, info.idx, 7);
  assert.deepEqual(parse('(B)'), { letter: 'B', guessed: false });
  assert.deepEqual(parse('B'), { letter: 'B', guessed: false });
  assert.deepEqual(parse('C.'), { letter: 'C', guessed: false });
  assert.deepEqual(parse('(A) or maybe (D)'), { letter: 'D', guessed: false }); // the last bracket
  assert.deepEqual(parse('I think the answer is a bird for sure'), { letter: 'C', guessed: false }); // > 5 words: option text
  const g = parse('cat');
  assert.equal(g.guessed, true); // one word: no option text match, a (seeded) guess
  assert.deepEqual(parse('cat'), g);
  assert.deepEqual(parseMmmuOptions(`['1/2', "it's", 'a, b']`), ['1/2', "it's", 'a, b']);
  assert.deepEqual(parseMmmuOptions('[]'), []);
  void opts;
});

test('MMMU open answers: numbers, key phrases, single characters (official eval_open)', () => {
  // the three patterns run independently: pieces of 1,000 and 2.5e3 are found again as simple numbers
  assert.deepEqual(extractNumbers('total 1,000 and 2.5e3 or -3'), ['1,000', '2.5e3', '000', '2', '3', '-3']);
  assert.deepEqual(normalizeStr(' 1,000 '), [1000]);
  assert.deepEqual(normalizeStr('3.14159'), [3.14]);
  assert.deepEqual(normalizeStr('A'), [' a', 'a ']);
  assert.deepEqual(parseOpenResponse('The answer is 3.14'), [3.14]);
  assert.equal(evalOpen('3.14', parseOpenResponse('The answer is 3.14')), true);
  assert.equal(evalOpen('1,000', parseOpenResponse('so it is 1000')), true);
  assert.equal(evalOpen('cat', parseOpenResponse('It is a cat')), true);
  assert.equal(evalOpen('dog', parseOpenResponse('It is a cat')), false);
  assert.equal(evalOpen('a', parseOpenResponse('a')), true);
  // lmms-eval iterates the characters of str(parsed[0]): a right open answer scores 0
  assert.equal(evalOpenLmmsEval('3.14', parseOpenResponse('The answer is 3.14')), false);
  assert.equal(mmmuSubject('validation_Art_Theory_12'), 'Art_Theory');
  assert.throws(() => mmmuSubject('nope'), /no MMMU subject/);
});

test('MMMU aggregation: instance-level accuracy overall, per domain and per subject', () => {
  const docs = [
    { id: 'validation_Math_1', question_type: 'multiple-choice', answer: 'A', options: ['1', '2'] },
    { id: 'validation_Math_2', question_type: 'multiple-choice', answer: 'B', options: ['1', '2'] },
    { id: 'validation_Art_1', question_type: 'open', answer: '5', options: [] },
  ];
  const rows = [scoreMmmu(docs[0], '(A)'), scoreMmmu(docs[1], '(A)'), scoreMmmu(docs[2], 'so it is 5')];
  const { metrics, breakdown } = aggregateMmmu(rows);
  close(metrics.mmmu_acc, 2 / 3);
  close(metrics.mmmu_acc_lmms_eval, 1 / 3);
  assert.equal(metrics.open, 1);
  assert.deepEqual(breakdown['Overall-Science'], { mmmu_acc: 0.5, n: 2 });
  assert.deepEqual(breakdown.Math, { mmmu_acc: 0.5, n: 2 });
  assert.deepEqual(breakdown['Overall-Art and Design'], { mmmu_acc: 1, n: 1 });
});

test('scorePairs: the mean of a named metric over pairs', () => {
  assert.deepEqual(scorePairs('anls', [{ prediction: 'cat', references: ['cat'] }, { prediction: '', references: ['cat'] }]), { metric: 'anls', value: 0.5, n: 2 });
  assert.deepEqual(scorePairs('mmstar', [{ prediction: 'B', references: ['B'] }]), { metric: 'mmstar', value: 1, n: 1 });
  assert.equal(scorePairs('exact_match', [{ prediction: 'The Cat.', references: ['the cat'] }]).value, 1);
  assert.equal(scorePairs('relaxed_accuracy', [{ prediction: '12%', references: ['0.12'] }]).value, 1);
  assert.deepEqual(scorePairs('vqa_accuracy', []), { metric: 'vqa_accuracy', value: 0, n: 0 });
});
