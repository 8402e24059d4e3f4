// Data sources on the Hub (the fake Hub on 127.0.0.1): a cauldron dataset repo with subsets (only
// the requested subsets are downloaded) and an `hf` tokenizer from a model repo id.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { pointAtFakeHub, startFakeHub, type FakeHub } from '../../helpers/fake-hub.ts';
import { DATA, needsShared } from '../../helpers/shared.ts';
import cauldron from '../../../plugins/dataset/cauldron.ts';
import hf from '../../../plugins/tokenizer/hf.ts';
import type { Dataset, Tokenizer } from '../../../core/types.ts';
import { writeParquet, CAULDRON_FIELDS } from '../../helpers/parquet-writer.ts';

let hub: FakeHub;
let home: string;
const saved = { ...process.env };
before(async () => {
  hub = await startFakeHub();
  home = pointAtFakeHub(hub, 'vlm-data-hub-');
});
after(async () => {
  await hub.close();
  rmSync(home, { recursive: true, force: true });
  process.env = saved;
});
const ctx = (role?: 'train' | 'eval') => ({ role, seed: 0, recipeDir: process.cwd(), yamlPath: 'data.train[0]', recipe: {}, log: { info() {}, warn() {}, debug() {} } }) as any;

test('cauldron from a Hub dataset repo: only the listed subsets are downloaded, then read like local files', async () => {
  const img = new Uint8Array(await sharp({ create: { width: 4, height: 4, channels: 3, background: '#000' } }).png().toBuffer());
  const shard = (sub: string, n: number) => writeParquet(null, CAULDRON_FIELDS, Array.from({ length: n }, (_, i) => ({ images: [{ bytes: img, path: null }], texts: [{ user: `${sub} q${i}`, assistant: `a${i}`, source: sub }] })));
  hub.addRepo('dataset', 'acme/cauldron-mini', {
    'README.md': '# mini\n',
    'ai2d/train-00000-of-00002.parquet': shard('ai2d', 5),
    'ai2d/train-00001-of-00002.parquet': shard('ai2d', 4),
    'vqav2/train-00000-of-00001.parquet': shard('vqav2', 6),
    'textcaps/train-00000-of-00001.parquet': shard('textcaps', 50),
  });
  const ds = (await cauldron.create({ path: null, repo: 'acme/cauldron-mini', subsets: ['ai2d', 'vqav2'], limit: null, skip: 0, val_ratio: 0, seed: 0 } as any, ctx('train'))) as Dataset;
  assert.equal(await ds.size(), 15);
  const qs: string[] = [];
  for await (const s of ds.samples()) qs.push(s.question);
  assert.equal(qs.filter((q) => q.startsWith('ai2d')).length, 9);
  assert.equal(qs.filter((q) => q.startsWith('vqav2')).length, 6);
  const downloads = hub.requests.filter((r) => /\/resolve\//.test(r.path)).map((r) => r.path);
  assert.ok(downloads.some((p) => p.includes('ai2d/train-00001-of-00002.parquet')));
  assert.ok(!downloads.some((p) => p.includes('textcaps') || p.includes('README')), downloads.join('\n'));
});

test('hf tokenizer from a Hub model repo id', needsShared('data', 'tokenizers', 'smollm2'), async () => {
  const dir = join(DATA, 'tokenizers', 'smollm2');
  hub.addRepo('model', 'acme/cosmo-tok', {
    'tokenizer.json': readFileSync(join(dir, 'tokenizer.json')),
    'tokenizer_config.json': readFileSync(join(dir, 'tokenizer_config.json')),
    'model.safetensors': new Uint8Array(64),
  });
  const tok = (await hf.create({ from: 'acme/cosmo-tok', chat_template: null, eos_token: null } as any, ctx())) as Tokenizer;
  assert.deepEqual(tok.encode('a cat on 12 mats'), [81, 2644, 335, 216, 33, 34, 30486]);
  assert.equal(tok.padTokenId, 0);
  assert.ok(!hub.requests.some((r) => r.path.includes('model.safetensors')));
});
