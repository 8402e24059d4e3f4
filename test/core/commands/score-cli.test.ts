// `vlm score`: a metric over given prediction/reference pairs, without a model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from '../../../core/cli.ts';

async function vlm(...argv: string[]) {
  let out = '';
  let err = '';
  const code = await cli(argv, { builtins: [], stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } });
  return { code, out, err };
}

const dir = mkdtempSync(join(tmpdir(), 'vlm-score-'));
function pairs(name: string, lines: unknown[]): string {
  const p = join(dir, name);
  writeFileSync(p, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return p;
}

test('vlm score prints {metric, value, n} for each metric', async () => {
  const vqa = pairs('vqa.jsonl', [
    { prediction: 'Two', references: ['2', '2', '2', 'two', 'three', 'x', 'x', 'x', 'x', 'x'] }, // 4 matches: 1
    { prediction: 'cat', references: ['dog', 'dog', 'dog', 'dog', 'dog', 'dog', 'dog', 'dog', 'dog', 'cat'] }, // 1 match: 0.3
    '',
  ]);
  let r = await vlm('score', '--metric', 'vqa_accuracy', '--pairs', vqa);
  assert.equal(r.code, 0, r.err);
  const v = JSON.parse(r.out);
  assert.equal(v.metric, 'vqa_accuracy');
  assert.equal(v.n, 2);
  assert.ok(Math.abs(v.value - 0.65) < 1e-12, String(v.value));

  const mc = pairs('mc.jsonl', [
    { prediction: 'B. dog', references: ['B'] },
    { prediction: 'The answer is (C)', references: ['D'] },
  ]);
  r = await vlm('score', '--metric', 'mmstar', '--pairs', mc);
  assert.equal(r.out, '{"metric":"mmstar","value":0.5,"n":2}\n');

  const docs = pairs('anls.jsonl', [{ prediction: 'bat', references: ['cat', 'hat'] }, { prediction: '', references: ['x'] }]);
  r = await vlm('score', '--metric', 'anls', '--pairs', docs, '--per-sample');
  const lines = r.out.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 3);
  assert.ok(Math.abs(lines[0].score - 2 / 3) < 1e-12);
  assert.equal(lines[1].score, 0);
  assert.ok(Math.abs(lines[2].value - 1 / 3) < 1e-12);

  const chart = pairs('chart.jsonl', [{ prediction: '12%', references: ['0.12'] }, { prediction: '11', references: ['12'] }]);
  r = await vlm('score', '--metric', 'relaxed_accuracy', '--pairs', chart);
  assert.equal(r.out, '{"metric":"relaxed_accuracy","value":0.5,"n":2}\n');
  r = await vlm('score', '--metric', 'exact_match', '--pairs', chart);
  assert.equal(r.out, '{"metric":"exact_match","value":0,"n":2}\n');
});

test('vlm score: bad input is reported with the line number and what to do', async () => {
  const bad = pairs('bad.jsonl', [{ prediction: 'a', references: ['a'] }, '{nope', { prediction: 1, references: ['a'] }, { prediction: 'a', references: [2] }]);
  let r = await vlm('score', '--metric', 'anls', '--pairs', bad);
  assert.equal(r.code, 1);
  assert.match(r.err, /3 bad lines/);
  assert.match(r.err, /line 2: not JSON/);
  assert.match(r.err, /line 3: "prediction" must be a string/);
  assert.match(r.err, /line 4: "references" must be a list of strings/);
  assert.doesNotMatch(r.err, /internal error|at .*\.ts:/);
  r = await vlm('score', '--metric', 'anl', '--pairs', bad);
  assert.match(r.err, /unknown metric "anl" \(did you mean "anls"\?\)/);
  r = await vlm('score', '--metric', 'anls', '--pairs', join(dir, 'missing.jsonl'));
  assert.match(r.err, /does not exist/);
  r = await vlm('score', '--pairs', bad);
  assert.match(r.err, /--metric is required/);
});
