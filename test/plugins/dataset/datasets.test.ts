// Dataset plugins: cauldron and mmstar on the real digits files, folder, synthetic-shapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import sharp from 'sharp';
import { DATA, needsShared } from '../../helpers/shared.ts';
import cauldron from '../../../plugins/dataset/cauldron.ts';
import mmstar from '../../../plugins/dataset/mmstar.ts';
import folder from '../../../plugins/dataset/folder.ts';
import shapes, { COLORS, SHAPES, POSITIONS } from '../../../plugins/dataset/synthetic-shapes.ts';
import { parseOptions } from '../../../core/data/prompt.ts';
import { UserError } from '../../../core/errors.ts';
import type { Dataset, Sample } from '../../../core/types.ts';
import { BytesTokenizer } from '../../../plugins/tokenizer/bytes.ts';
import { encodeSample } from '../../../core/data/collator.ts';
import { defaultPrompt } from '../../../core/data/loader.ts';
import { writeParquet, CAULDRON_FIELDS } from '../../helpers/parquet-writer.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const DIGITS = join(DATA, 'digits');
const ctx = (role: 'train' | 'val' | 'eval', seed = 0) => ({ role, seed, recipeDir: process.cwd(), yamlPath: `data.${role}[0]`, recipe: {}, log: console }) as any;
const C = (o: object) => ({ path: null, repo: null, subsets: null, limit: null, skip: 0, val_ratio: 0, seed: 0, ...o }) as any;
async function all(ds: Dataset, opts: { epoch?: number; skip?: number } = {}): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of ds.samples(opts)) out.push(s);
  return out;
}
const png = (color: string) => sharp({ create: { width: 8, height: 8, channels: 3, background: color } }).png().toBuffer();

test('cauldron: digits train.parquet, first image + first turn, nanoVLM split (shuffle seed 0, last val_ratio part)', needsShared('data', 'digits', 'train.parquet'), async () => {
  const path = join(DIGITS, 'train.parquet');
  const full = (await cauldron.create(C({ path }), ctx('eval'))) as Dataset;
  assert.equal(await full.size(), 1437);
  const rows = await all(full);
  assert.equal(rows.length, 1437);
  assert.equal(rows[0].id, 'train.parquet row 0');
  assert.ok(rows.every((s) => s.image[1] === 0x50 && s.question.length > 0 && s.answer.length > 0)); // PNG bytes, texts[0]
  assert.ok(rows.some((s) => s.answer === 'seven'));

  const tr = (await cauldron.create(C({ path, val_ratio: 0.01 }), ctx('train'))) as Dataset;
  const va = (await cauldron.create(C({ path, val_ratio: 0.01 }), ctx('val'))) as Dataset;
  assert.equal(await va.size(), 14); // int(1437 * 0.01)
  assert.equal(await tr.size(), 1423);
  const trIds = (await all(tr)).map((s) => s.id);
  const vaIds = (await all(va)).map((s) => s.id);
  assert.equal(new Set([...trIds, ...vaIds]).size, 1437); // disjoint, complete
  // train order: reshuffled per epoch, reproducible per (seed, epoch); skip = suffix
  const e0 = trIds;
  assert.deepEqual((await all(tr, { epoch: 0 })).map((s) => s.id), e0);
  const e1 = (await all(tr, { epoch: 1 })).map((s) => s.id);
  assert.notDeepEqual(e1, e0);
  assert.deepEqual([...e1].sort(), [...e0].sort());
  assert.deepEqual((await all(tr, { epoch: 1, skip: 1000 })).map((s) => s.id), e1.slice(1000));
  // val / eval read in file order
  assert.deepEqual(vaIds, [...vaIds].sort((a, b) => +a.split(' ').pop()! - +b.split(' ').pop()!));
  // limit / skip take from the same seeded shuffle
  const lim = (await cauldron.create(C({ path, limit: 100, skip: 10 }), ctx('eval'))) as Dataset;
  assert.equal(await lim.size(), 100);
  await assert.rejects(Promise.resolve(cauldron.create(C({ path }), ctx('val'))), (e: any) => e instanceof UserError && e.where.yamlPath === 'data.val[0].val_ratio');
});

test('cauldron: subsets folder layout, mixing, several row groups, multi-turn uses the first turn', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cauldron-'));
  try {
    const img = new Uint8Array(await png('#ff0000'));
    for (const [sub, n] of [['aa', 30], ['bb', 10]] as const) {
      mkdirSync(join(dir, sub));
      const rows = Array.from({ length: n }, (_, i) => ({
        images: [{ bytes: img, path: null }],
        texts: [{ user: `${sub} q${i}`, assistant: `${sub} a${i}`, source: sub }, { user: 'second turn', assistant: 'ignored', source: sub }],
      }));
      writeParquet(join(dir, sub, 'train-00000-of-00001.parquet'), CAULDRON_FIELDS, rows, { rowGroupSize: 7 });
    }
    const ds = (await cauldron.create(C({ path: dir, subsets: ['aa', 'bb'] }), ctx('train'))) as Dataset;
    assert.equal(await ds.size(), 40);
    const s = await all(ds);
    assert.equal(new Set(s.map((x) => x.id)).size, 40);
    assert.ok(s.every((x) => /^(aa|bb) q\d+$/.test(x.question) && x.answer === x.question.replace(' q', ' a')));
    // the two subsets are interleaved, not one after the other
    const firstHalf = s.slice(0, 20).filter((x) => x.question.startsWith('bb')).length;
    assert.ok(firstHalf > 0 && firstHalf < 10, `bb samples in the first half: ${firstHalf}`);
    assert.deepEqual((await all(ds, { skip: 13 })).map((x) => x.id), s.slice(13).map((x) => x.id));
    await assert.rejects(Promise.resolve(cauldron.create(C({ path: dir, subsets: ['zz'] }), ctx('train'))), (e: any) => e instanceof UserError && /subset "zz"/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cauldron mc_ratio: open digits questions become MMStar-style 4-option questions, deterministic and resume-stable', needsShared('data', 'digits', 'train.parquet'), async () => {
  const path = join(DIGITS, 'train.parquet');
  const open = await all((await cauldron.create(C({ path }), ctx('eval'))) as Dataset);
  const ds = (await cauldron.create(C({ path, mc_ratio: 0.5 }), ctx('eval'))) as Dataset;
  const mc = await all(ds);
  const truth = new Map(open.map((x) => [x.id, x]));
  let n = 0;
  for (const x of mc) {
    const o = truth.get(x.id)!;
    if (!x.choices) {
      assert.equal(x.question, o.question);
      continue;
    }
    n++;
    assert.equal(x.question, `${o.question}\nOptions: A: ${x.choices[0]}, B: ${x.choices[1]}, C: ${x.choices[2]}, D: ${x.choices[3]}`);
    assert.equal(x.choices[x.answer.charCodeAt(0) - 65], o.answer);
    assert.equal(x.target, undefined); // trains on the letter (mc_target default)
    assert.equal(new Set(x.choices).size, 4);
    // distractors are answers of the same question kind (numerals, or words for the "spell out" variant)
    assert.ok(x.choices.every((c) => /^\d$/.test(c) === /^\d$/.test(o.answer)), x.question);
  }
  assert.ok(n > 600 && n < 840, `multiple choice: ${n} of 1437`);
  assert.deepEqual(new Set(mc.filter((x) => x.choices).map((x) => x.answer)), new Set(['A', 'B', 'C', 'D']));
  const tr = (await cauldron.create(C({ path, mc_ratio: 0.5 }), ctx('train'))) as Dataset;
  const e0 = await all(tr, { epoch: 2 });
  const resumed = await all(tr, { epoch: 2, skip: 700 });
  assert.deepEqual(resumed.map((x) => [x.id, x.question, x.answer]), e0.slice(700).map((x) => [x.id, x.question, x.answer]));
});

test('cauldron: gzip and brotli compressed pages are read (hyparquet-compressors)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cauldron-z-'));
  try {
    const img = new Uint8Array(await png('#0000ff'));
    const rows = Array.from({ length: 5 }, (_, i) => ({ images: [{ bytes: img, path: null }], texts: [{ user: `q${i}`, assistant: `a${i}`, source: 'z' }] }));
    for (const codec of ['gzip', 'brotli'] as const) {
      writeParquet(join(dir, `${codec}.parquet`), CAULDRON_FIELDS, rows, { codec, rowGroupSize: 2 });
      const s = await all((await cauldron.create(C({ path: join(dir, `${codec}.parquet`) }), ctx('eval'))) as Dataset);
      assert.deepEqual(s.map((x) => x.answer), ['a0', 'a1', 'a2', 'a3', 'a4'], codec);
      assert.ok(s.every((x) => Buffer.compare(x.image, img) === 0), codec);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('mmstar: digits mmstar-style.parquet, options parsed, letter answers, categories', needsShared('data', 'digits', 'mmstar-style.parquet'), async () => {
  const ds = (await mmstar.create({ path: join(DIGITS, 'mmstar-style.parquet'), repo: null, limit: null, seed: 0, shuffle: false } as any, ctx('eval'))) as Dataset;
  assert.equal(await ds.size(), 360);
  const s = await all(ds);
  assert.equal(s[0].id, 'mmstar-style.parquet row 0 (index 0)');
  assert.equal(s[1].id, 'mmstar-style.parquet row 1 (index 5)');
  assert.equal(s[0].question, 'Which digit is shown?\nOptions: A: 0, B: 4, C: 6, D: 1');
  assert.deepEqual(s[0].choices, ['0', '4', '6', '1']);
  const counts: Record<string, number> = {};
  for (const x of s) {
    counts[x.answer] = (counts[x.answer] ?? 0) + 1;
    assert.equal(x.category, 'fine-grained perception');
    assert.equal(x.l2Category, 'recognition');
    assert.equal(x.choices?.length, 4);
  }
  assert.deepEqual(counts, { A: 90, B: 90, C: 90, D: 90 }); // README: exactly uniform
});

test('folder: data.jsonl + images; a bad line is a UserError with file:line; a missing image is a bad sample', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'folder-'));
  try {
    writeFileSync(join(dir, 'a.png'), await png('#00ff00'));
    writeFileSync(join(dir, 'data.jsonl'), ['{"image": "a.png", "question": "What color?", "answer": "green"}', '', '{"image": "missing.png", "question": "Q", "answer": "x"}', '{"question": "no image", "answer": "y", "category": "c"}'].join('\n'));
    const ds = (await folder.create({ path: dir, file: 'data.jsonl' } as any, ctx('eval'))) as Dataset;
    assert.equal(await ds.size(), 3);
    const s = await all(ds);
    assert.equal(s[0].answer, 'green');
    assert.equal(s[0].problem, undefined);
    assert.match(s[0].id, /data\.jsonl:1$/);
    assert.match(s[1].id, /data\.jsonl:3$/);
    assert.match(s[1].problem!, /cannot read image missing\.png: ENOENT/);
    assert.match(s[2].problem!, /no "image" field/);
    assert.equal(s[2].category, 'c');
    writeFileSync(join(dir, 'data.jsonl'), '{"image": "a.png", "question": "q", "answer": "a"}\n{"image": "a.png", "question": "q", answer: a}\n');
    await assert.rejects(Promise.resolve().then(() => folder.create({ path: dir, file: 'data.jsonl' } as any, ctx('train'))), (e: any) => {
      assert.ok(e instanceof UserError);
      assert.equal(e.where.line, 2);
      assert.match(e.format(), /data\.jsonl:2: invalid JSON/);
      return true;
    });
    writeFileSync(join(dir, 'data.jsonl'), '[1, 2]\n');
    await assert.rejects(Promise.resolve().then(() => folder.create({ path: dir, file: 'data.jsonl' } as any, ctx('train'))), (e: any) => e instanceof UserError && e.where.line === 1 && /expected a JSON object/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const S = (o: object, role: 'train' | 'val' | 'eval' = 'eval') => shapes.create({ split: 'train', count: 200, format: 'open', seed: 0, image_size: 64, shuffle_options: false, ...o } as any, ctx(role)) as Promise<Dataset>;

test('synthetic-shapes: deterministic, open answers are one word/digit, splits disjoint, count', async () => {
  const a = await all(await S({}));
  const b = await all(await S({}));
  assert.equal(a.length, 200);
  assert.deepEqual(a.map((s) => [s.question, s.answer]), b.map((s) => [s.question, s.answer]));
  assert.ok(a.every((s, i) => Buffer.compare(s.image, b[i].image) === 0));
  const answers = new Set([...Object.keys(COLORS), ...SHAPES, ...POSITIONS, '1', '2', '3', '4']);
  assert.ok(a.every((s) => answers.has(s.answer) && !s.choices));
  assert.deepEqual(new Set(a.map((s) => s.category)), new Set(['color', 'shape', 'count', 'position']));
  // disjoint splits: no image of val/test equals an image of train
  const key = (s: Sample) => Buffer.from(s.image).toString('base64');
  const train = new Set(a.map(key));
  for (const split of ['val', 'test']) {
    const other = await all(await S({ split }));
    assert.ok(other.every((s) => !train.has(key(s))), split);
  }
  // the train role reshuffles per epoch (same samples)
  const t = await S({}, 'train');
  const e0 = (await all(t, { epoch: 0 })).map((s) => s.id);
  const e1 = (await all(t, { epoch: 1 })).map((s) => s.id);
  assert.notDeepEqual(e0, e1);
  assert.deepEqual([...e0].sort(), [...e1].sort());
  assert.deepEqual((await all(t, { epoch: 1, skip: 50 })).map((s) => s.id), e1.slice(50));
});

test('synthetic-shapes: multiple-choice sequences have one length for all question types (= the default recipe\'s max_length)', async () => {
  const tok = new BytesTokenizer();
  const lengths = async (o: object) => {
    const out = new Map<string, Set<number>>();
    for (const s of await all(await S({ format: 'multiple-choice', count: 200, ...o }))) {
      const n = encodeSample(tok, defaultPrompt(s), s.target ?? s.answer).ids.length;
      if (!out.has(s.category!)) out.set(s.category!, new Set());
      out.get(s.category!)!.add(n);
    }
    assert.equal(out.size, 4);
    return new Set([...out.values()].flatMap((v) => [...v]));
  };
  // no padding in training, and the MMStar eval (left-padded to the longest prompt of its batch)
  // puts the prompt end where training did
  assert.deepEqual(await lengths({}), new Set([109])); // MMStar prompt + options + letter + eos
  assert.deepEqual(await lengths({ shuffle_options: true }), new Set([109]));
  assert.deepEqual(await lengths({ inline_options: false }), new Set([57]));
  // recipes/shapes-tiny.yaml (options inline, canonical order) pads nothing: max_length = that length
  const recipe = parseYaml(readFileSync(join(ROOT, 'recipes', 'shapes-tiny.yaml'), 'utf8'));
  const train = recipe.data.train[0];
  assert.equal(train.format, 'multiple-choice');
  assert.ok(train.inline_options !== false && !train.shuffle_options);
  assert.equal(recipe.model.decoder.max_length, 109);
  let longest = 0;
  for (const s of await all(await S({ format: 'open', count: 200 }))) longest = Math.max(longest, encodeSample(tok, defaultPrompt(s), s.answer).ids.length);
  assert.ok(longest <= 57, String(longest));
});

test('synthetic-shapes: curriculum stages come first, in order, in every shuffled epoch', async () => {
  const t = await S({ format: 'multiple-choice', inline_options: false, count: 80, curriculum: [{ tasks: ['color'], count: 20 }, { tasks: ['count', 'position'], count: 20 }] }, 'train');
  const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
  const firsts: string[] = [];
  for (const epoch of [0, 1]) {
    const xs = await all(t, { epoch });
    const idx = xs.map((s) => Number(s.id.split('#')[1]));
    firsts.push(xs[0].id);
    assert.deepEqual([...idx.slice(0, 20)].sort((a, b) => a - b), range(0, 20));
    assert.deepEqual([...idx.slice(20, 40)].sort((a, b) => a - b), range(20, 40));
    assert.ok(xs.slice(0, 20).every((s) => s.category === 'color'));
    assert.deepEqual(new Set(xs.slice(20, 40).map((s) => s.category)), new Set(['count', 'position']));
    assert.equal(new Set(xs.slice(40).map((s) => s.category)).size, 4);
  }
  assert.notEqual(firsts[0], firsts[1]); // each stage is still shuffled per epoch
});

test('synthetic-shapes: multiple-choice questions in MMStar inline format with the answer letter; mixed alternates', async () => {
  const mc = await all(await S({ format: 'multiple-choice', split: 'test', count: 100 }));
  const open = await all(await S({ format: 'open', split: 'test', count: 100 }));
  mc.forEach((s, i) => {
    assert.match(s.question, /\nOptions: A: [^,]+, B: [^,]+, C: [^,]+, D: [^,]+$/);
    assert.deepEqual(parseOptions(s.question), s.choices);
    assert.match(s.answer, /^[ABCD]$/);
    assert.equal(s.choices![s.answer.charCodeAt(0) - 65], open[i].answer); // same scene, same truth
  });
  const letters = new Set(mc.map((s) => s.answer));
  assert.equal(letters.size, 4);
  // training target: the letter by default, or "B: green" with mc_target: letter-option
  const withTarget = await all(await S({ format: 'multiple-choice', split: 'test', count: 20, mc_target: 'letter-option' }));
  withTarget.forEach((s, i) => assert.equal(s.target, `${s.answer}: ${open[i].answer}`));
  const letterOnly = await all(await S({ format: 'multiple-choice', split: 'test', count: 20, mc_target: 'letter' }));
  assert.ok(letterOnly.every((s) => s.target === undefined && /^[ABCD]$/.test(s.answer)));
  const mixed = await all(await S({ format: 'mixed', split: 'test', count: 10 }));
  mixed.forEach((s, i) => assert.equal(!!s.choices, i % 2 === 1));
  const shuffled = await all(await S({ format: 'multiple-choice', split: 'test', count: 40, shuffle_options: true }));
  assert.ok(shuffled.some((s) => s.choices!.join() !== mc.find((m) => m.category === s.category)!.choices!.join()));
  // default: the canonical order per question type, so the letter is a function of the truth
  const canonical: Record<string, string[]> = { color: Object.keys(COLORS), shape: [...SHAPES], count: ['1', '2', '3', '4'], position: [...POSITIONS] };
  mc.forEach((s) => assert.deepEqual(s.choices, canonical[s.category!]));
  // inline_options: false asks the bare question (same scene, same letter, same choices)
  const bare = await all(await S({ format: 'multiple-choice', split: 'test', count: 100, inline_options: false }));
  bare.forEach((s, i) => {
    assert.doesNotMatch(s.question, /Options/);
    assert.equal(s.answer, mc[i].answer);
    assert.deepEqual(s.choices, mc[i].choices);
  });
});
