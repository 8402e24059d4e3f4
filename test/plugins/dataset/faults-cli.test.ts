// Fault injection, data: broken dataset files stop `vlm run` in the load stage with the file (and
// row group / column / jsonl line) named; broken samples (undecodable, zero-byte or decompression-
// bomb images, a missing image file, an empty answer) are skipped and counted, each named by its
// jsonl line, a text longer than max_length is reported (and ignored as nanoVLM does), and above
// train.bad_sample_ratio the run stops naming examples. The user's data files are never modified.
// test/core/data/ checks the loader and the Parquet reader in-process; this is what a user sees.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { DATA, needsShared } from '../../helpers/shared.ts';
import { assertNoLeftovers, assertUnchanged, assertUserError, png, pool, snapshot, tinyRecipe, vlm, workspace, type CliResult } from '../../helpers/cli-faults.ts';

const DIGITS = join(DATA, 'digits', 'train.parquet');
const digits = needsShared('data', 'digits', 'train.parquet');
const skipOutputs = (rel: string) => rel.startsWith('runs') || rel.startsWith('.hf-home');

let cwd = '';
let frozen = new Map<string, string>();
const C: Record<string, Promise<CliResult>> = {};

/** a recipe whose training data is `train` (one dataset entry) */
function recipe(name: string, train: Record<string, unknown>, over: Record<string, unknown> = {}): string {
  const file = `${name}.yaml`;
  writeFileSync(join(cwd, file), stringify(tinyRecipe({ name, data: { train: [train] }, ...over })));
  return file;
}

/**
 * digits train.parquet with row group 1's `texts.user` column chunk declared INT32 instead of
 * BYTE_ARRAY: in the Thrift footer every ColumnMetaData starts with field 1 (type, i32) = 0x15
 * followed by zigzag(6 = BYTE_ARRAY) = 0x0c and field 2 (encodings, a list) = 0x19; the 8th such
 * triple is row group 1's third column (5 columns per row group).
 */
function wrongSchemaRowGroup(src: Buffer): Buffer {
  const out = Buffer.from(src);
  const footerLen = out.readInt32LE(out.length - 8);
  const start = out.length - 8 - footerLen;
  const at: number[] = [];
  for (let i = start; i < out.length - 8 - 2; i++) if (out[i] === 0x15 && out[i + 1] === 0x0c && out[i + 2] === 0x19) at.push(i);
  assert.equal(at.length, 10, 'digits train.parquet: 2 row groups x 5 columns');
  out[at[7] + 1] = 0x02; // zigzag(1) = INT32
  return out;
}

before(() => {
  cwd = workspace();
  const run = pool(3);
  const start = (k: string, args: string[]) => {
    C[k] = run(() => vlm(args, { cwd }));
    C[k].catch(() => undefined);
  };

  // --- dataset files -------------------------------------------------------------------------
  mkdirSync(join(cwd, 'not-parquet'));
  writeFileSync(join(cwd, 'not-parquet', 'train.parquet'), 'question,answer\nwhat?,that\n'.repeat(50));
  start('notParquet', ['run', recipe('not-parquet', { use: 'cauldron', path: 'not-parquet' })]);
  if (!digits.skip) {
    const src = readFileSync(DIGITS);
    mkdirSync(join(cwd, 'truncated'));
    writeFileSync(join(cwd, 'truncated', 'train.parquet'), src.subarray(0, src.length >> 1));
    mkdirSync(join(cwd, 'wrong-schema'));
    writeFileSync(join(cwd, 'wrong-schema', 'train.parquet'), wrongSchemaRowGroup(src));
    start('truncated', ['run', recipe('truncated', { use: 'cauldron', path: 'truncated' })]);
    start('wrongSchema', ['run', recipe('wrong-schema', { use: 'cauldron', path: 'wrong-schema' })]);
  }

  // --- a folder dataset: 46 good samples, then the bad ones at known lines ------------------------
  const dir = join(cwd, 'photos');
  mkdirSync(dir);
  writeFileSync(join(dir, 'good.png'), png(20, 16));
  writeFileSync(join(dir, 'bomb.png'), png(100_000, 100_000, { idat: Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]) })); // 10^10 pixels declared, 69 bytes
  writeFileSync(join(dir, 'zero.png'), '');
  writeFileSync(join(dir, 'garbage.png'), 'this is not an image\n'.repeat(20));
  const good = (i: number) => JSON.stringify({ image: 'good.png', question: `what colour ${i}?`, answer: 'red' });
  const lines = Array.from({ length: 40 }, (_, i) => good(i));
  const bad = [
    { image: 'bomb.png', question: 'q?', answer: 'a' }, // line 41
    { image: 'zero.png', question: 'q?', answer: 'a' }, // 42
    { image: 'garbage.png', question: 'q?', answer: 'a' }, // 43
    { image: 'missing.png', question: 'q?', answer: 'a' }, // 44
    { image: 'good.png', question: 'q?', answer: '' }, // 45
    { image: 'good.png', question: 'long '.repeat(100), answer: 'a' }, // 46: longer than max_length 48
  ];
  const text = [...lines, ...bad.map((b) => JSON.stringify(b)), good(99)].join('\n') + '\n';
  writeFileSync(join(dir, 'data.jsonl'), text);
  writeFileSync(join(dir, 'broken.jsonl'), [good(0), good(1), '{"image": "good.png", "question": oops}', good(2)].join('\n') + '\n');
  const epoch = { train: { batch_size: 8, max_steps: null, checkpoint_every: 100, log_every: 100 } };
  start('badLine', ['run', recipe('bad-line', { use: 'folder', path: 'photos', file: 'broken.jsonl' })]);
  // batch 1: one step per sample in the file, more than there are good samples, so the loader
  // must read every sample (with batch 8 the steps end before the last few samples, and a bad one
  // among them would never be seen, depending on the shuffle)
  start('tolerated', ['run', recipe('tolerated', { use: 'folder', path: 'photos' }, { train: { ...epoch.train, batch_size: 1, bad_sample_ratio: 0.5 } })]);
  // above the ratio: 3 copies of the data (141 samples, 15 bad) so the check (from 100 samples on) trips
  writeFileSync(join(dir, 'triple.jsonl'), text.repeat(3));
  start('tooMany', ['run', recipe('too-many', { use: 'folder', path: 'photos', file: 'triple.jsonl' }, { train: { ...epoch.train, bad_sample_ratio: 0.05 } })]);

  frozen = snapshot(cwd, skipOutputs);
});

describe('broken dataset files stop the run in the load stage, naming the file', () => {
  it('a file that is not Parquet', async () => {
    assertUserError(await C.notParquet, /train\.parquet is not a readable Parquet file .*is it truncated or another format\?/, /-> /);
  });

  it('a truncated Parquet file', digits, async () => {
    assertUserError(await C.truncated, /truncated\/train\.parquet: train\.parquet is not a readable Parquet file/, /-> download it again, or remove it/);
  });

  it('a row group with the wrong schema: file, row group, column, types', digits, async () => {
    assertUserError(await C.wrongSchema, /wrong-schema\/train\.parquet: .*row group 1 column texts\.list\.element\.user is INT32, expected BYTE_ARRAY/, /-> the file was written with another schema/);
  });

  it('a folder dataset whose jsonl has a bad line: file:line and the expected form', async () => {
    assertUserError(await C.badLine, /error: \S*photos\/broken\.jsonl:3: invalid JSON/, /-> each line of data\.jsonl must be one JSON object/);
  });
});

describe('bad samples are skipped and counted, each named', () => {
  it('below bad_sample_ratio: the epoch completes; every bad sample named by its line with the reason', async () => {
    const r = await C.tolerated;
    assert.equal(r.code, 0, r.all);
    const w = (line: number, reason: RegExp) => assert.match(r.all, new RegExp(`warning: data: skipped \\S*photos/data\\.jsonl:${line}: ${reason.source}`));
    w(41, /.*(pixel cap|decompression bomb)/);
    w(42, /empty image \(0 bytes\)/);
    w(43, /cannot decode the image/);
    w(44, /cannot read image missing\.png/);
    w(45, /empty answer/);
    assert.match(r.all, /photos\/data\.jsonl:46 is longer than max_length 48 tokens/, 'the too-long text is reported');
    assert.match(r.all, /data: 5 of \d+ samples skipped so far \(\S*photos\/data\.jsonl:\d+/, 'a summary with the count');
    assert.doesNotMatch(r.all, /internal error/);
  });

  it('above bad_sample_ratio: the run stops, naming examples and what to do', async () => {
    assertUserError(await C.tooMany, /\d+ of \d+ samples are bad \([\d.]+%\), above bad_sample_ratio 0\.05: \S*triple\.jsonl:\d+ \(/, /-> fix or remove these samples, or raise train\.bad_sample_ratio/);
  });

  it('no data file was modified, nothing half-written was left', async () => {
    await Promise.allSettled(Object.values(C));
    assertUnchanged(frozen, snapshot(cwd, skipOutputs), 'a data file');
    assertNoLeftovers(cwd);
  });
});
