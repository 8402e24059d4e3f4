// `vlm sample` writes one sample's image out of a recipe's dataset, here a Parquet file (whose images
// exist only inside it), byte for byte, and prints its question, options and answer (issue 20, item 15).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { cli } from '../../../core/cli.ts';
import { main as sampleMain } from '../../../core/commands/sample.ts';
import builtins from '../../../plugins/index.ts';
import { MMSTAR_FIELDS, writeParquet } from '../../helpers/parquet-writer.ts';
import { commandEnv } from '../../helpers/tiny-run.ts';

const root = mkdtempSync(join(tmpdir(), 'vlm-sample-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('vlm sample --data data.eval[0] --index 2: the stored image bytes, the question, options and answer', async () => {
  const pngs = await Promise.all(['#f00', '#0f0', '#00f'].map(async (c) => new Uint8Array(await sharp({ create: { width: 8, height: 8, channels: 3, background: c } }).png().toBuffer())));
  writeParquet(join(root, 'mm.parquet'), MMSTAR_FIELDS, pngs.map((png, i) => ({ index: BigInt(i), question: `Which colour?\nOptions: A: red, B: green, C: blue`, image: { bytes: png, path: null }, answer: 'ABC'[i], category: 'c', l2_category: 'l' })));
  writeFileSync(join(root, 'r.yaml'), 'name: s\ndata:\n  eval: [ { use: mmstar, path: mm.parquet } ]\n');
  const out = join(root, 'x.png');
  const c = commandEnv();
  assert.equal(await sampleMain([join(root, 'r.yaml'), '--data', 'data.eval[0]', '--index', '2', '--out', out], c.env), 0);
  assert.deepEqual(new Uint8Array(readFileSync(out)), pngs[2]);
  assert.match(c.out(), /sample 2 of mm /);
  assert.match(c.out(), /choices: {2}A: red, B: green, C: blue\nanswer: {3}C\n/);
  assert.match(c.out(), /vlm generate --model <run dir> --image .*x\.png --prompt "Which colour\?"/);
  // the command is listed, and mistakes are one-line errors
  let help = '';
  await cli(['help'], { builtins, stdout: { write: (s: string) => (help += s) } });
  assert.match(help, /^ {2}sample /m);
  await assert.rejects(sampleMain([join(root, 'r.yaml'), '--index', '9'], commandEnv().env), /--index 9: mm has 3 samples/);
  await assert.rejects(sampleMain([join(root, 'r.yaml'), '--data', 'data.train[0]'], commandEnv().env), /the recipe has 0 entries under data\.train/);
});
