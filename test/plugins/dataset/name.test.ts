// Every built-in dataset takes `name:` (issue 20, item 8): a short, machine-independent default
// (never a path), used as <evaluator>/<name>/<metric>; naming a dataset does not change what it
// yields or in which order; two datasets of one role with the same name are refused.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { buildDatasets } from '../../../core/build.ts';
import { Registry } from '../../../core/registry.ts';
import type { Dataset } from '../../../core/types.ts';
import builtins from '../../../plugins/index.ts';
import { CAULDRON_FIELDS, MMSTAR_FIELDS, writeParquet } from '../../helpers/parquet-writer.ts';
import { writeFolderDataset } from '../../helpers/tiny-run.ts';

const root = mkdtempSync(join(tmpdir(), 'vlm-ds-name-'));
after(() => rmSync(root, { recursive: true, force: true }));
const quiet = { info() {}, warn() {}, debug() {} };
const registry = new Registry(builtins);

async function make(entry: Record<string, unknown>, role: 'train' | 'val' | 'eval' = 'eval'): Promise<Dataset> {
  return registry.create('dataset', entry as { use: string }, { recipe: {}, recipeDir: root, yamlPath: `data.${role}[0]`, seed: 0, log: quiet, role });
}

async function ids(ds: Dataset): Promise<string[]> {
  const out: string[] = [];
  for await (const s of ds.samples()) out.push(`${s.id}|${s.question}`);
  return out;
}

test('defaults are short and hold no path; name: replaces them; the order does not depend on the name', async () => {
  const png = new Uint8Array(await sharp({ create: { width: 8, height: 8, channels: 3, background: '#f00' } }).png().toBuffer());
  mkdirSync(join(root, 'deep', 'data'), { recursive: true });
  writeParquet(join(root, 'deep', 'data', 'mmstar-style.parquet'), MMSTAR_FIELDS, [1, 2, 3].map((i) => ({ index: BigInt(i), question: `q${i}\nOptions: A: x, B: y`, image: { bytes: png, path: null }, answer: 'A', category: 'c', l2_category: 'l' })));
  writeParquet(join(root, 'deep', 'data', 'train.parquet'), CAULDRON_FIELDS, [1, 2, 3, 4].map((i) => ({ images: [{ bytes: png, path: null }], texts: [{ user: `u${i}`, assistant: `a${i}`, source: 's' }] })));
  await writeFolderDataset(join(root, 'deep', 'photos'));

  const cases: [Record<string, unknown>, string][] = [
    [{ use: 'synthetic-shapes', split: 'test', count: 4 }, 'shapes-test'],
    [{ use: 'mmstar', path: 'deep/data/mmstar-style.parquet' }, 'mmstar-style'],
    [{ use: 'cauldron', path: 'deep/data/train.parquet' }, 'train'],
    [{ use: 'cauldron', path: 'deep/data/train.parquet', val_ratio: 0.5, split: 'val' }, 'train-val'],
    [{ use: 'folder', path: 'deep/photos' }, 'photos'],
  ];
  for (const [entry, name] of cases) {
    const ds = await make(entry);
    assert.equal(ds.name, name, JSON.stringify(entry));
    assert.ok(!ds.name.includes('/') && !ds.name.includes(root));
    // shuffled (train) order with and without a name: the same samples in the same order
    const plain = await make({ ...entry, shuffle: true }, 'train');
    const named = await make({ ...entry, shuffle: true, name: 'mine' }, 'train');
    assert.equal(named.name, 'mine');
    assert.deepEqual(await ids(named), await ids(plain), `${entry.use}: naming changed the order`);
  }
  // a name with "/" is refused by the schema (it would break <evaluator>/<name>/<metric>)
  await assert.rejects(make({ use: 'synthetic-shapes', name: 'a/b' }), (e: Error & { where?: { yamlPath?: string } }) => /must match pattern/.test(e.message) && e.where?.yamlPath === "data.eval[0].name");
});

test('two datasets of one role with the same name are refused, naming the entry to rename', async () => {
  const recipe = { data: { eval: [{ use: 'synthetic-shapes', split: 'test', count: 2 }, { use: 'synthetic-shapes', split: 'test', count: 3, seed: 1 }] } };
  await assert.rejects(buildDatasets(recipe, registry, { recipe, recipeDir: root, seed: 0, log: quiet }), (e: Error & { hint?: string; where?: { yamlPath?: string } }) => {
    assert.match(e.message, /data\.eval\[0\] and data\.eval\[1\] are both named "shapes-test"/);
    assert.equal(e.where?.yamlPath, 'data.eval[1].name');
    return true;
  });
});
