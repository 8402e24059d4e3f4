// Benchmark data read lazily from the (fake, local) Hub: HTTP range requests through the Hub client,
// so the first samples of a large Parquet file cost its footer and first row group, not the file;
// the bytes read are cached in blocks (a second run transfers nothing) and give the same samples
// as the file read locally.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pointAtFakeHub, startFakeHub, type FakeHub } from '../../helpers/fake-hub.ts';
import { writeParquet, type Field } from '../../helpers/parquet-writer.ts';
import builtins from '../../../plugins/index.ts';
import { createRegistry } from '../../../core/registry.ts';
import { openRemoteFiles } from '../../../core/hub/lazy.ts';
import type { Dataset, Sample } from '../../../core/types.ts';

const registry = createRegistry(builtins);
const quiet = { info() {}, warn() {}, debug() {} };
const saved = { ...process.env };
let hub: FakeHub;
let file: Uint8Array;
const images: Uint8Array[] = [];
const dir = mkdtempSync(join(tmpdir(), 'vlm-lazy-'));
const IMAGE: Field = { name: 'image', kind: 'struct', fields: [{ name: 'bytes', kind: 'binary' }, { name: 'path', kind: 'string' }] };
const FIELDS: Field[] = [{ name: 'type', kind: 'string' }, { name: 'question', kind: 'string' }, { name: 'answer', kind: 'string' }, IMAGE];

before(async () => {
  hub = await startFakeHub();
  // 400 rows of 50 kB (incompressible) "images", 10 rows per row group: a 20 MB file
  const rows = Array.from({ length: 400 }, (_, i) => ({ type: i % 2 ? 'augmented_test' : 'human_test', question: `question ${i}?`, answer: String(i), image: { bytes: randomBytes(50_000), path: null } }));
  for (const r of rows) images.push(r.image.bytes);
  file = writeParquet(null, FIELDS, rows, { rowGroupSize: 10 });
  hub.addRepo('dataset', 'lmms-lab/ChartQA', { 'data/test-00000-of-00001.parquet': file, 'data/train-00000-of-00001.parquet': file, 'README.md': '# ChartQA' });
  pointAtFakeHub(hub, 'vlm-lazy-home-');
});
after(async () => {
  process.env = saved;
  await hub.close();
});

async function firstSamples(n: number): Promise<Sample[]> {
  // the chartqa task's dataset plugin with no path: its Hub repo (lmms-lab/ChartQA, split test)
  const ds = (await registry.create('dataset', { use: 'chartqa' }, { recipe: {}, recipeDir: dir, yamlPath: 'data.eval[0]', seed: 0, log: quiet, role: 'eval' })) as Dataset;
  assert.equal(await ds.size(), 400);
  const out: Sample[] = [];
  for await (const s of ds.samples()) {
    out.push(s);
    if (out.length === n) break;
  }
  return out;
}

test('the first samples of a Hub benchmark cost a fraction of the file; a second read comes from the cache', async () => {
  hub.bytesServed = 0;
  const five = await firstSamples(5);
  assert.deepEqual(five.map((s) => s.answer), ['0', '1', '2', '3', '4']);
  assert.deepEqual(five[3].image, new Uint8Array(images[3]));
  const first = hub.bytesServed;
  assert.ok(first > 0);
  // footer + first row group (10 x 50 kB) rounded up to 1 MiB blocks: well under a fifth of 20 MB
  assert.ok(first < file.length / 5, `${first} bytes of ${file.length}`);
  if (process.env.VLM_TEST_VERBOSE) console.log(`lazy read: ${first} of ${file.length} bytes`);
  // only the test split was touched: no request for the train file
  assert.ok(!hub.requests.some((r) => r.path.includes('train-')));
  // again: everything from the block cache
  hub.bytesServed = 0;
  const again = await firstSamples(5);
  assert.deepEqual(again.map((s) => s.question), five.map((s) => s.question));
  assert.equal(hub.bytesServed, 0);
});

test('range reads give the bytes of the file, whatever the slice', async () => {
  const stats = { requests: 0, bytes: 0 };
  const [f] = await openRemoteFiles('lmms-lab/ChartQA', { files: (p) => p === 'data/test-00000-of-00001.parquet', blockSize: 64 * 1024, stats });
  assert.equal(f.size, file.length);
  for (const [a, b] of [[0, 4], [65_530, 65_540], [1_000_000, 1_300_000], [file.length - 8, file.length]]) {
    assert.deepEqual(new Uint8Array(await f.buffer.slice(a, b)), file.subarray(a, b), `${a}-${b}`);
  }
  const before = stats.bytes;
  await f.buffer.slice(0, 4); // cached
  assert.equal(stats.bytes, before);
  assert.ok(stats.bytes < file.length / 2);
});

