// The evaluator scorers on hand-made outputs: right, wrong, ambiguous, empty.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkMultipleChoiceWithRegex,
  firstLetter,
  scoreChoice,
  summariseChoices,
  optionLetters,
} from '../../../plugins/evaluator/multiple-choice.ts';
import { normalizeAnswer, exactMatch, summariseExact } from '../../../plugins/evaluator/exact-match.ts';

test('nanoVLM regex check: right answers in the forms v0.1 accepts', () => {
  for (const out of ['A', ' A', 'A.', 'A,', 'A)', 'The answer is A', '(A)', 'Answer: A.', 'option (the A one)', 'a) or A']) {
    assert.equal(checkMultipleChoiceWithRegex(out, 'A'), true, JSON.stringify(out));
  }
  // the correct answer is upper-cased, the output is not
  assert.equal(checkMultipleChoiceWithRegex('B', 'b'), true);
});

test('nanoVLM regex check: wrong and unparseable outputs', () => {
  for (const out of ['B', 'Apple', 'BAD', 'a', 'the answer is b', '', 'AB', '_A_', 'A1']) {
    assert.equal(checkMultipleChoiceWithRegex(out, 'A'), false, JSON.stringify(out));
  }
});

test('nanoVLM regex check follows Python re: Unicode \\b and "." not matching a newline', () => {
  // Python: "éA" has no word boundary before A (é is a word character); JS's ASCII \b would find one
  assert.equal(checkMultipleChoiceWithRegex('éA', 'A'), false);
  assert.equal(checkMultipleChoiceWithRegex('1A', 'A'), false);
  assert.equal(checkMultipleChoiceWithRegex('«A»', 'A'), true);
  // pattern 3 `\(.*A.*\)` must not cross a newline; "(xAx" alone has no closing bracket
  assert.equal(checkMultipleChoiceWithRegex('(xAx\ny)', 'A'), false);
  assert.equal(checkMultipleChoiceWithRegex('(xAx y)', 'A'), true);
  // pattern 2 `\bA[.,)]` where pattern 1 fails: "A." is already caught by \bA\b; "xA." is not
  assert.equal(checkMultipleChoiceWithRegex('xA.', 'A'), false);
});

test('ambiguous outputs: the lenient check accepts every letter present, the strict one only the first', () => {
  const s = scoreChoice('A B C D', 'C');
  assert.equal(s.correct, true); // nanoVLM v0.1 counts it correct
  assert.equal(s.strict, false);
  assert.equal(s.ambiguous, true);
  assert.deepEqual(s.matched, ['A', 'B', 'C', 'D']);
  assert.equal(scoreChoice('A B C D', 'A').strict, true);
});

test('strict first letter', () => {
  const L = ['A', 'B', 'C', 'D'];
  assert.equal(firstLetter('B', L), 'B');
  assert.equal(firstLetter('  C. because', L), 'C');
  assert.equal(firstLetter('D)', L), 'D');
  assert.equal(firstLetter('Apple', L), null);
  assert.equal(firstLetter('a', L), null);
  assert.equal(firstLetter('(A)', L), null);
  assert.equal(firstLetter('E', L), null);
  assert.equal(firstLetter('', L), null);
  assert.deepEqual(optionLetters({ choices: ['x', 'y', 'z'] }), ['A', 'B', 'C']);
  assert.deepEqual(optionLetters({}), L);
});

test('empty output is wrong, unparseable and not ambiguous', () => {
  const s = scoreChoice('', 'A');
  assert.deepEqual(s, { correct: false, strict: false, matched: [], unparseable: true, ambiguous: false });
});

test('multiple-choice summary: overall and per category', () => {
  const rows = [
    { category: 'math', score: scoreChoice('A', 'A') },
    { category: 'math', score: scoreChoice('The answer is B', 'B') },
    { category: 'math', score: scoreChoice('C', 'D') },
    { category: 'science', score: scoreChoice('', 'A') },
  ];
  const { metrics, breakdown } = summariseChoices(rows);
  assert.deepEqual(metrics, { accuracy: 0.5, accuracy_strict: 0.25, unparseable: 1, ambiguous: 0, n: 4 });
  assert.deepEqual(breakdown, {
    math: { accuracy: 2 / 3, accuracy_strict: 1 / 3, unparseable: 0, n: 3 },
    science: { accuracy: 0, accuracy_strict: 0, unparseable: 1, n: 1 },
  });
  assert.deepEqual(summariseChoices([]).metrics, { accuracy: 0, accuracy_strict: 0, unparseable: 0, ambiguous: 0, n: 0 });
});

test('exact match: normalisation (case, punctuation, articles, spaces)', () => {
  assert.equal(normalizeAnswer('  The Red  Circle. '), 'red circle');
  assert.equal(normalizeAnswer('An apple!'), 'apple');
  assert.equal(normalizeAnswer('día'), 'día'); // no article inside a Unicode word
  assert.equal(exactMatch('Seven.', 'seven'), true);
  assert.equal(exactMatch('7', '7'), true);
  assert.equal(exactMatch('a triangle', 'triangle'), true);
  // wrong, partial, ambiguous and empty outputs
  assert.equal(exactMatch('1', '7'), false);
  assert.equal(exactMatch('seven or eight', 'seven'), false);
  assert.equal(exactMatch('7 7', '7'), false);
  assert.equal(exactMatch('', ''), false);
  assert.equal(exactMatch('  ', 'a'), false);
  assert.equal(exactMatch('...', '7'), false);
  // SQuAD: both sides normalise to "" (an article alone) -> equal
  assert.equal(exactMatch('A', 'a'), true);
  assert.equal(exactMatch('A', 'B'), false);
});

test('exact match summary', () => {
  const { metrics, breakdown } = summariseExact([
    { category: 'count', output: 'Three', answer: 'three' },
    { category: 'count', output: '', answer: 'two' },
    { category: 'color', output: 'the blue', answer: 'blue' },
    { output: 'red', answer: 'green' },
  ]);
  assert.deepEqual(metrics, { exact_match: 0.5, empty: 1, n: 4 });
  assert.deepEqual(breakdown, {
    '(none)': { exact_match: 0, empty: 0, n: 1 },
    color: { exact_match: 1, empty: 0, n: 1 },
    count: { exact_match: 0.5, empty: 1, n: 2 },
  });
});
