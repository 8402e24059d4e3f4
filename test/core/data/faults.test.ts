// Data faults (issue 8, "Data"): each case ends in a clear error naming the file / column / line,
// or in a skipped-and-counted sample.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import cauldron from '../../../plugins/dataset/cauldron.ts';
import mmstar from '../../../plugins/dataset/mmstar.ts';
import folder from '../../../plugins/dataset/folder.ts';
import { BatchLoader } from '../../../core/data/loader.ts';
import { IGNORE } from '../../../core/data/collator.ts';
import { ResizeProcessor } from '../../../plugins/image-processor/resize.ts';
import { BytesTokenizer } from '../../../plugins/tokenizer/bytes.ts';
import { UserError } from '../../../core/errors.ts';
import type { Dataset } from '../../../core/types.ts';
import { writeParquet, CAULDRON_FIELDS, MMSTAR_FIELDS } from '../../helpers/parquet-writer.ts';
import { pngWithClaimedSize } from '../../helpers/pil-reference.ts';

const ctx = (role: 'train' | 'val' | 'eval') => ({ role, seed: 0, recipeDir: process.cwd(), yamlPath: `data.${role}[0]`, recipe: {}, log: console }) as any;
const C = (o: object) => ({ path: null, repo: null, subsets: null, limit: null, skip: 0, val_ratio: 0, seed: 0, ...o }) as any;
const row = (img: Uint8Array | null, user: string | null, assistant: string | null) => ({ images: img ? [{ bytes: img, path: null }] : [], texts: [{ user, assistant, source: 't' }] });

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = mkdtempSync(join(tmpdir(), 'data-faults-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
let PNG: Uint8Array;
const goodPng = async () => (PNG ??= new Uint8Array(await sharp({ create: { width: 16, height: 16, channels: 3, background: '#3366cc' } }).png().toBuffer()));

test('a truncated Parquet file and a file that is not Parquet: UserError naming the file', async () => {
  await withDir(async (dir) => {
    const bytes = writeParquet(null, CAULDRON_FIELDS, [row(await goodPng(), 'q', 'a')]);
    writeFileSync(join(dir, 'truncated.parquet'), bytes.subarray(0, bytes.length - 20));
    await assert.rejects(Promise.resolve(cauldron.create(C({ path: join(dir, 'truncated.parquet') }), ctx('train'))), (e: any) => {
      assert.ok(e instanceof UserError, String(e));
      assert.match(e.message, /truncated\.parquet is not a readable Parquet file/);
      assert.equal(e.where.file, join(dir, 'truncated.parquet'));
      return true;
    });
    writeFileSync(join(dir, 'notes.parquet'), 'this is a CSV file, really\na,b\n1,2\n');
    await assert.rejects(Promise.resolve(mmstar.create({ path: join(dir, 'notes.parquet'), repo: null, limit: null, seed: 0, shuffle: false } as any, ctx('eval'))), (e: any) => e instanceof UserError && /notes\.parquet is not a readable Parquet file/.test(e.message));
    writeFileSync(join(dir, 'empty.parquet'), '');
    await assert.rejects(Promise.resolve(cauldron.create(C({ path: join(dir, 'empty.parquet') }), ctx('train'))), (e: any) => e instanceof UserError && /empty\.parquet .*0 bytes/.test(e.message));
  });
});

test('a row group with the wrong schema, and a shard of another layout: UserError naming file, row group and column', async () => {
  await withDir(async (dir) => {
    const png = await goodPng();
    const rows = Array.from({ length: 6 }, (_, i) => row(png, `q${i}`, `a${i}`));
    writeParquet(join(dir, 'rg.parquet'), CAULDRON_FIELDS, rows, { rowGroupSize: 3, wrongType: { rowGroup: 1, path: 'texts.list.element.assistant', type: 'INT64' } });
    await assert.rejects(Promise.resolve(cauldron.create(C({ path: join(dir, 'rg.parquet') }), ctx('train'))), (e: any) => {
      assert.ok(e instanceof UserError);
      assert.match(e.message, /rg\.parquet: row group 1 column texts\.list\.element\.assistant is INT64, expected BYTE_ARRAY/);
      return true;
    });
    // an MMStar file given to the cauldron plugin (a shard of the wrong layout)
    writeParquet(join(dir, 'mm.parquet'), MMSTAR_FIELDS, [{ index: 1n, question: 'q', image: { bytes: png, path: null }, answer: 'A', category: 'c', l2_category: 'l' }]);
    await assert.rejects(Promise.resolve(cauldron.create(C({ path: join(dir, 'mm.parquet') }), ctx('train'))), (e: any) => e instanceof UserError && /mm\.parquet: no column "images" \(columns: index, question, image, answer, category, l2_category\)/.test(e.message));
  });
});

test('damaged page data inside a valid footer: UserError naming the file and row group when it is read', async () => {
  await withDir(async (dir) => {
    const bytes = writeParquet(null, CAULDRON_FIELDS, [row(await goodPng(), 'question', 'answer')]);
    const broken = bytes.slice();
    // overwrite the first page header of the first column with garbage (footer intact)
    broken.fill(0xff, 4, 40);
    writeFileSync(join(dir, 'pages.parquet'), broken);
    const ds = (await cauldron.create(C({ path: join(dir, 'pages.parquet') }), ctx('eval'))) as Dataset;
    await assert.rejects(
      (async () => {
        for await (const _ of ds.samples()) void _;
      })(),
      (e: any) => e instanceof UserError && /pages\.parquet: cannot read row group 0/.test(e.message),
    );
  });
});

test('undecodable, zero-byte and huge-dimension images, empty answers: skipped and counted; too long text: row ignored', async () => {
  await withDir(async (dir) => {
    const png = await goodPng();
    const bomb = pngWithClaimedSize(png, 60000, 60000); // 3.6 gigapixels claimed in a few hundred bytes
    const rows = [
      row(png, 'fine', 'yes'),
      row(new TextEncoder().encode('GIF89a but not really'), 'undecodable', 'x'),
      row(new Uint8Array(0), 'zero bytes', 'x'),
      row(null, 'no image at all', 'x'),
      row(bomb, 'bomb', 'x'),
      row(png, 'empty answer', ''),
      row(png, 'long', 'y'.repeat(500)),
      row(png, 'fine too', 'ok'),
    ];
    writeParquet(join(dir, 'mixed.parquet'), CAULDRON_FIELDS, rows);
    const ds = (await cauldron.create(C({ path: join(dir, 'mixed.parquet') }), ctx('eval'))) as Dataset;
    const L = new BatchLoader({ datasets: [ds], tokenizer: new BytesTokenizer(), imageProcessor: new ResizeProcessor({ size: 8 }), batchSize: 8, maxLength: 64, seed: 0, shuffle: false, badSampleRatio: 1 });
    const batches = [];
    for await (const b of L.batches()) batches.push(b.batch);
    assert.equal(batches.length, 1);
    assert.equal(batches[0].batchSize, 3); // fine, long, fine too
    const st = L.stats();
    assert.equal(st.seen, 8);
    assert.equal(st.skipped, 5);
    assert.equal(st.tooLong, 1);
    const reasons = Object.fromEntries(st.examples.map((e) => [e.id, e.reason]));
    assert.match(reasons['mixed.parquet row 1'], /cannot decode the image/);
    assert.match(reasons['mixed.parquet row 2'], /empty image \(0 bytes\)/);
    assert.match(reasons['mixed.parquet row 3'], /empty image \(0 bytes\)/);
    assert.match(reasons['mixed.parquet row 4'], /pixel|60000x60000/);
    assert.match(reasons['mixed.parquet row 5'], /empty answer/);
    const T = 64;
    assert.ok(Array.from(batches[0].targets.subarray(T, 2 * T)).every((t) => t === IGNORE)); // the long one
    // with the default ratio the same data stops the run with examples... once enough samples are seen
    const strict = new BatchLoader({ datasets: [ds], tokenizer: new BytesTokenizer(), imageProcessor: new ResizeProcessor({ size: 8 }), batchSize: 4, maxLength: 64, seed: 0, shuffle: false, minSamples: 4 });
    await assert.rejects(
      (async () => {
        for await (const _ of strict.batches()) void _;
      })(),
      (e: any) => e instanceof UserError && /of 4 samples are bad .*mixed\.parquet row 1 \(cannot decode the image/.test(e.message),
    );
  });
});

test("a folder dataset's bad jsonl line: UserError with file:line; the file is not modified", async () => {
  await withDir(async (dir) => {
    const text = '{"image": "a.png", "question": "q", "answer": "a"}\n{"image": "b.png", "question": "q", "answer": "b"}\n{"image": "c.png", "question": "q" "answer": "c"}\n';
    writeFileSync(join(dir, 'data.jsonl'), text);
    await assert.rejects(Promise.resolve().then(() => folder.create({ path: dir, file: 'data.jsonl' } as any, ctx('train'))), (e: any) => {
      assert.ok(e instanceof UserError);
      assert.equal(e.where.file, join(dir, 'data.jsonl'));
      assert.equal(e.where.line, 3);
      assert.match(e.format(), /data\.jsonl:3: invalid JSON/);
      return true;
    });
    assert.equal(readFileSync(join(dir, 'data.jsonl'), 'utf8'), text);
  });
});
