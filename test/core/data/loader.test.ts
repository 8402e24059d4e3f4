// BatchLoader: deterministic mixing, resumable skipping, prefetch overlap, bad-sample policy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { BatchLoader, processedSamples, type LoadedBatch } from '../../../core/data/loader.ts';
import { IGNORE } from '../../../core/data/collator.ts';
import { BytesTokenizer } from '../../../plugins/tokenizer/bytes.ts';
import { UserError } from '../../../core/errors.ts';
import type { Dataset, ImageProcessor, Sample } from '../../../core/types.ts';

/** a dataset of n samples named `name#i`; `bad(i)` marks samples to damage */
function fake(name: string, n: number, opts: { bad?: (i: number) => Partial<Sample>; answer?: (i: number) => string } = {}): Dataset {
  return {
    name,
    size: async () => n,
    async *samples(o = {}) {
      for (let i = o.skip ?? 0; i < n; i++) yield { id: `${name}#${i}`, image: Uint8Array.of(i % 256, 1), question: `q${i}`, answer: opts.answer?.(i) ?? `a${i}`, ...(opts.bad?.(i) ?? {}) };
    },
  };
}
/** an image processor that "decodes" byte 0 into every pixel; image [255, 255] is undecodable */
const proc = (delayMs = 0): ImageProcessor & { calls: number } => ({
  size: 2,
  calls: 0,
  async process(img, id) {
    this.calls++;
    if (delayMs) await sleep(delayMs);
    if (img[0] === 255 && img[1] === 255) throw new Error(`${id}: cannot decode the image (corrupt)`);
    return new Float32Array(12).fill(img[0] / 255);
  },
});
const loader = (o: Partial<ConstructorParameters<typeof BatchLoader>[0]> & { datasets: Dataset[] }) =>
  new BatchLoader({ tokenizer: new BytesTokenizer(), imageProcessor: proc(), batchSize: 4, maxLength: 32, seed: 7, ...o });
async function collect(it: AsyncIterable<LoadedBatch>, consumerMs = 0): Promise<LoadedBatch[]> {
  const out: LoadedBatch[] = [];
  for await (const b of it) {
    out.push(b);
    if (consumerMs) await sleep(consumerMs);
  }
  return out;
}

test('deterministic given (seed, epoch); datasets mixed in proportion; dropLast; skipBatches = the same suffix', async () => {
  const ds = [fake('a', 30), fake('b', 10)];
  const L = loader({ datasets: ds });
  assert.equal(await L.batchesPerEpoch(), 10);
  const e0 = await collect(L.batches({ epoch: 0 }));
  const again = await collect(loader({ datasets: ds }).batches({ epoch: 0 }));
  const ids = (bs: LoadedBatch[]) => bs.flatMap((b) => b.batch.sampleIds);
  assert.equal(e0.length, 10);
  assert.deepEqual(ids(again), ids(e0));
  assert.equal(new Set(ids(e0)).size, 40);
  const bInFirstHalf = ids(e0).slice(0, 20).filter((id) => id.startsWith('b#')).length;
  assert.ok(bInFirstHalf > 0 && bInFirstHalf < 10, `mixed: ${bInFirstHalf}`);
  const e1 = await collect(L.batches({ epoch: 1 }));
  assert.notDeepEqual(ids(e1), ids(e0));
  const resumed = await collect(L.epoch(1, { skip: 6 }));
  assert.deepEqual(ids(resumed), ids(e1).slice(24));
  assert.deepEqual(resumed.map((b) => b.index), [6, 7, 8, 9]);
  // no shuffle: one dataset after the other; dropLast false keeps the partial last batch
  const seq = await collect(loader({ datasets: [fake('a', 6), fake('b', 3)], shuffle: false, dropLast: false }).batches());
  assert.deepEqual(ids(seq), ['a#0', 'a#1', 'a#2', 'a#3', 'a#4', 'a#5', 'b#0', 'b#1', 'b#2']);
  assert.deepEqual(seq.map((b) => b.batch.batchSize), [4, 4, 1]);
  assert.equal(await loader({ datasets: [fake('a', 9)], dropLast: false }).batchesPerEpoch(), 3);
});

test('a batch is VQACollator output of the prompt + answer + eos with the processed images', async () => {
  const [b] = await collect(loader({ datasets: [fake('a', 4)], shuffle: false }).batches());
  const h = b.batch;
  assert.deepEqual([h.batchSize, h.seqLen, h.imageSize], [4, 32, 2]);
  const T = 32;
  const tok = new BytesTokenizer();
  const row0 = Array.from(h.inputIds.subarray(0, T)).filter((_, t) => h.attentionMask[t] === 1);
  assert.equal(tok.decode(row0), 'Question: q0 Answer:a0<|endoftext|>');
  const targets = Array.from(h.targets.subarray(0, T)).filter((t) => t !== IGNORE);
  assert.equal(tok.decode(targets), 'a0<|endoftext|>');
  assert.equal(h.images[12], Math.fround(1 / 255)); // sample 1: byte 1 -> 1/255
});

test('a sample with a target trains on the target (the answer stays what evaluators check)', async () => {
  const ds: Dataset = {
    name: 't',
    size: async () => 1,
    async *samples() {
      yield { id: 't#0', image: Uint8Array.of(1, 1), question: 'Q?\nOptions: A: x, B: y', answer: 'B', choices: ['x', 'y'], target: 'B: y' };
    },
  };
  const [b] = await collect(loader({ datasets: [ds], batchSize: 1, maxLength: 96 }).batches());
  const tok = new BytesTokenizer();
  const T = 96;
  const real = Array.from(b.batch.inputIds).filter((_, t) => b.batch.attentionMask[t] === 1);
  assert.equal(tok.decode(real), 'Question: Q?\nOptions: A: x, B: y \nAnswer only with the letter! \nAnswer:B: y<|endoftext|>');
  assert.equal(tok.decode(Array.from(b.batch.targets.subarray(0, T)).filter((t) => t !== IGNORE)), 'B: y<|endoftext|>');
});

test('prefetch: with a consumer slower than the producer every batch after the first is ready when asked', async () => {
  const L = loader({ datasets: [fake('a', 40)], imageProcessor: proc(1), prefetch: 2 });
  const bs = await collect(L.batches(), 40); // the "training step" takes 40 ms, a batch ~1-5 ms
  assert.equal(bs.length, 10);
  assert.deepEqual(bs.slice(1).map((b) => b.ready), Array(9).fill(true));
  // without prefetch and a slow producer the consumer has to wait
  const slow = loader({ datasets: [fake('a', 12)], imageProcessor: proc(30), prefetch: 0 });
  const sb = await collect(slow.batches());
  assert.ok(sb.every((b) => !b.ready));
  assert.ok(sb.every((b) => b.waitMs > 0));
});

test('bad samples are dropped from their batch, counted, and named; above the ratio -> UserError naming examples', async () => {
  const warnings: string[] = [];
  const log = { info() {}, warn: (m: string) => warnings.push(m), debug() {} };
  const bad = (i: number): Partial<Sample> =>
    i === 3 ? { image: new Uint8Array(0) } : i === 5 ? { answer: '  ' } : i === 9 ? { image: Uint8Array.of(255, 255) } : i === 11 ? { problem: 'cannot read image x.png: ENOENT' } : {};
  const L = loader({ datasets: [fake('a', 200, { bad })], shuffle: false, badSampleRatio: 0.05, log });
  const bs = await collect(L.batches());
  assert.equal(bs.length, 50);
  assert.deepEqual(bs.slice(0, 3).map((b) => b.batch.batchSize), [3, 3, 2]);
  const st = L.stats();
  assert.equal(st.seen, 200);
  assert.equal(st.skipped, 4);
  assert.deepEqual(st.examples.map((e) => e.id), ['a#3', 'a#5', 'a#9', 'a#11']);
  assert.match(st.examples[0].reason, /empty image/);
  assert.match(st.examples[1].reason, /empty answer/);
  assert.match(st.examples[2].reason, /cannot decode the image \(corrupt\)/);
  assert.match(st.examples[3].reason, /ENOENT/);
  assert.ok(warnings.some((w) => /skipped a#9/.test(w)));

  // 2% bad with the default ratio 1%: stops once 100 samples are seen, naming examples
  const many = loader({ datasets: [fake('a', 400, { bad: (i) => (i % 50 === 7 ? { answer: '' } : {}) })], shuffle: false });
  await assert.rejects(collect(many.batches()), (e: any) => {
    assert.ok(e instanceof UserError);
    assert.match(e.message, /2 of 100 samples are bad \(2\.0%\), above bad_sample_ratio 0\.01: a#7 \(empty answer\); a#57 \(empty answer\)/);
    assert.equal(e.where.yamlPath, 'train.bad_sample_ratio');
    return true;
  });
  // below minSamples nothing is thrown
  const few = loader({ datasets: [fake('a', 20, { bad: (i) => (i === 0 ? { answer: '' } : {}) })] });
  assert.equal((await collect(few.batches())).length, 5);
});

test('a text longer than max_length stays in the batch with every label -100 (nanoVLM) and is counted', async () => {
  const L = loader({ datasets: [fake('a', 4, { answer: (i) => (i === 2 ? 'x'.repeat(100) : 'ok') })], shuffle: false, maxLength: 24 });
  const [b] = await collect(L.batches());
  assert.equal(b.batch.batchSize, 4);
  const T = 24;
  assert.ok(Array.from(b.batch.targets.subarray(2 * T, 3 * T)).every((t) => t === IGNORE));
  assert.ok(Array.from(b.batch.targets.subarray(0, T)).some((t) => t !== IGNORE));
  assert.equal(L.stats().tooLong, 1);
  assert.equal(L.stats().skipped, 0);
});

test('stopping early closes the dataset iterators; processedSamples yields in order and reports bad ones', async () => {
  let closed = 0;
  const ds: Dataset = {
    name: 'c',
    size: async () => 100,
    async *samples() {
      try {
        for (let i = 0; i < 100; i++) yield { id: `c#${i}`, image: Uint8Array.of(1, 1), question: 'q', answer: 'a' };
      } finally {
        closed++;
      }
    },
  };
  for await (const _ of loader({ datasets: [ds] }).batches()) break;
  assert.equal(closed, 1);
  const bad: string[] = [];
  const out: string[] = [];
  for await (const { sample, pixels } of processedSamples(fake('e', 10, { bad: (i) => (i === 4 ? { image: Uint8Array.of(255, 255) } : {}) }), proc(), { onBad: (id) => bad.push(id), concurrency: 3 })) {
    out.push(sample.id);
    assert.equal(pixels.length, 12);
  }
  assert.deepEqual(out, ['e#0', 'e#1', 'e#2', 'e#3', 'e#5', 'e#6', 'e#7', 'e#8', 'e#9']);
  assert.deepEqual(bad, ['e#4']);
});
