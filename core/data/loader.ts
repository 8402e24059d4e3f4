// The batch loader: datasets -> (image processing, tokenisation, collation) -> HostBatch, prepared
// ahead of the training step. nanoVLM v0.1 uses a torch DataLoader (shuffle, 8 workers,
// drop_last) over VQADataset + VQACollator; this is the same pipeline in one process:
//   - order: each dataset yields its own seeded order for the epoch; several datasets are mixed by
//     a seeded shuffle of "which dataset comes next" (proportional to their sizes), so the result
//     is a pure function of (seed, epoch) and batch k is always samples [k*B, (k+1)*B) of it;
//   - resuming: skipping k batches skips k*B samples, split per dataset without decoding anything;
//   - prefetch: `prefetch` batches are in preparation while the consumer computes; image decoding
//     runs in sharp's thread pool (all images of those batches concurrently);
//   - the text trained on is `sample.target ?? sample.answer` (after the prompt, then eos);
//   - bad samples (no/empty image, undecodable or oversized image, missing question, empty
//     answer) are dropped from their batch (the batch gets smaller), counted and reported; above
//     `badSampleRatio` of the samples seen (once `minSamples` have been seen) a UserError names
//     examples. A text longer than maxLength is NOT dropped: as in nanoVLM its row stays in the
//     batch with every label -100; it is counted in stats().tooLong.
// With `chat` (a model with image tokens as placeholders: nanoVLM HEAD 4e0c096, data/datasets.py,
// data/collators.py), each sample is HEAD's chat sample instead (core/data/chat.ts: every image
// split into tiles, every turn, ChatML through the tokenizer's chat template, loss on the assistant
// tokens) and the batch is HEAD's VQACollator's (core/data/chat-collator.ts: a too long sample is
// dropped from its batch, as HEAD; images one flat tile tensor). Samples with more than
// max_images_per_example images are left out (HEAD's ConstantLengthDataset).
// With `packing` (chat only; HEAD's ConstantLengthDataset, data/advanced_datasets.py): prepared
// samples are buffered until they hold ~ bufferSequences x maxLength tokens, packed by the
// balanced greedy knapsack (core/data/packing.ts; bins shuffled by a seeded PRNG), and the packed
// rows are batched batchSize at a time; resuming replays the epoch's packing up to the batch.
import { performance } from 'node:perf_hooks';
import { UserError } from '../errors.ts';
import type { Dataset, HostBatch, ImageProcessor, Logger, Sample, Tokenizer } from '../types.ts';
import { collate, encodeSample, type EncodedSample } from './collator.ts';
import { assistantPrefixLength, chatSampleProblem, prepareChatSample, type ChatDataOptions, type PreparedChat } from './chat.ts';
import { collateChat, type ChatSample } from './chat-collator.ts';
import { packSamples } from './packing.ts';
import { mmstarPrompt, vqaPrompt } from './prompt.ts';
import { mixSeed, mulberry32, shuffleInPlace } from '../rng.ts';

export interface BatchLoaderOptions {
  datasets: Dataset[];
  tokenizer: Tokenizer;
  imageProcessor: ImageProcessor;
  batchSize: number;
  /** lm_max_length: every row is padded / truncated to this */
  maxLength: number;
  seed: number;
  /** mix several datasets by a seeded shuffle (default true); false = one after the other */
  shuffle?: boolean;
  /** drop the last incomplete batch of an epoch (default true, as nanoVLM's train loader) */
  dropLast?: boolean;
  /** batches prepared ahead of the consumer (default 2) */
  prefetch?: number;
  /** stop with a UserError when more than this fraction of samples is bad (default 0.01) */
  badSampleRatio?: number;
  /** the ratio is checked once this many samples have been seen (default 100) */
  minSamples?: number;
  log?: Logger;
  /** prompt of a sample (default: the MMStar prompt when it has choices, else nanoVLM's VQA prompt) */
  prompt?: (s: Sample) => string;
  /** nanoVLM HEAD's chat samples and collator (a model with image tokens as placeholders); null: v0.1's */
  chat?: ChatDataOptions | null;
  /** HEAD's packing (needs `chat`); null: one sample per row */
  packing?: LoaderPacking | null;
}

/** train.packing (ConstantLengthDataset) */
export interface LoaderPacking {
  /** packed samples attend to each other with continuous positions (HEAD), or a block-diagonal mask with positions from 0 per sample */
  attention: 'nanovlm' | 'block-diagonal';
  /** HEAD max_sample_length: samples of this many tokens or more are left out */
  maxSampleLength: number;
  /** HEAD max_images_per_knapsack; null = no limit */
  maxImagesPerKnapsack: number | null;
  /** HEAD num_of_sequences: the buffer packed at once holds about this many rows' tokens (HEAD: 4 x batch size) */
  bufferSequences: number;
}

export interface LoadedBatch {
  batch: HostBatch;
  /** ms the consumer waited for this batch */
  waitMs: number;
  /** was the batch already prepared when the consumer asked for it */
  ready: boolean;
  /** index of the batch in the epoch (sample window); resume an epoch after it with skip = index + 1 */
  index: number;
}

export interface LoaderStats {
  seen: number;
  skipped: number;
  tooLong: number;
  /** chat: samples left out for having more than max_images_per_example images */
  tooManyImages: number;
  examples: { id: string; reason: string }[];
}

/** default prompt: nanoVLM's VQA prompt; multiple-choice samples get the MMStar prompt */
export function defaultPrompt(s: Sample): string {
  return s.choices && s.choices.length ? mmstarPrompt(s.question) : vqaPrompt(s.question);
}

/** what is wrong with a sample's fields, or null */
export function sampleProblem(s: Sample): string | null {
  if (s.problem) return s.problem;
  if (!(s.image instanceof Uint8Array)) return 'missing image';
  if (s.image.length === 0) return 'empty image (0 bytes)';
  if (typeof s.question !== 'string' || !s.question.trim()) return 'missing or empty question';
  if (typeof s.answer !== 'string') return 'missing answer';
  if (!s.answer.trim()) return 'empty answer';
  if (s.target !== undefined && (typeof s.target !== 'string' || !s.target.trim())) return 'empty target';
  return null;
}

interface Prepared {
  rows: EncodedSample[] | PreparedChat[];
  bad: { id: string; reason: string }[];
  tooLong: string[];
  total: number;
  index: number;
  done: boolean;
}

const MAX_EXAMPLES = 10;

export class BatchLoader {
  private o: Required<Omit<BatchLoaderOptions, 'log'>> & { log?: Logger };
  private st: LoaderStats = { seen: 0, skipped: 0, tooLong: 0, tooManyImages: 0, examples: [] };
  private prefixLen: number | null = null;

  constructor(opts: BatchLoaderOptions) {
    if (!opts.datasets.length) throw new UserError('the batch loader got no dataset', { hint: 'list at least one dataset in the recipe' });
    if (!(opts.batchSize >= 1)) throw new UserError(`batch size must be >= 1 (got ${opts.batchSize})`, { where: { yamlPath: 'train.batch_size' } });
    this.o = {
      shuffle: true,
      dropLast: true,
      prefetch: 2,
      badSampleRatio: 0.01,
      minSamples: 100,
      prompt: defaultPrompt,
      chat: null,
      packing: null,
      ...opts,
    } as BatchLoader['o'];
    if (this.o.packing && !this.o.chat) throw new UserError('packing needs chat samples (a model with image tokens as placeholders)', { where: { yamlPath: 'train.packing' }, hint: 'set model.image_tokens: placeholders, or train.packing: null' });
  }

  stats(): LoaderStats {
    return { ...this.st, examples: [...this.st.examples] };
  }

  async sizes(): Promise<number[]> {
    return Promise.all(this.o.datasets.map((d) => d.size()));
  }

  /** batches in one epoch (counting sample windows: a window may lose bad samples); null with packing (known only by packing) */
  async batchesPerEpoch(): Promise<number | null> {
    if (this.o.packing) return null;
    const n = (await this.sizes()).reduce((a, b) => a + b, 0);
    return this.o.dropLast ? Math.floor(n / this.o.batchSize) : Math.ceil(n / this.o.batchSize);
  }

  /** which dataset each position of the epoch's sample sequence comes from */
  private async sourceOrder(epoch: number): Promise<Uint16Array> {
    const sizes = await this.sizes();
    const total = sizes.reduce((a, b) => a + b, 0);
    const src = new Uint16Array(total);
    let k = 0;
    sizes.forEach((n, d) => src.fill(d, k, (k += n)));
    if (this.o.shuffle && sizes.length > 1) shuffleInPlace(src, mulberry32(mixSeed(this.o.seed, epoch, 0x6d6978)));
    return src;
  }

  /** the batches of one epoch (TRAIN's spelling); `skip` = batches already done in this epoch */
  epoch(epoch: number, opts: { skip?: number } = {}): AsyncIterable<LoadedBatch> {
    return this.batches({ epoch, skipBatches: opts.skip ?? 0 });
  }

  async *batches(opts: { epoch?: number; skipBatches?: number } = {}): AsyncGenerator<LoadedBatch> {
    const epoch = opts.epoch ?? 0;
    const B = this.o.batchSize;
    const src = await this.sourceOrder(epoch);
    const packing = this.o.packing;
    // packing: the packed batches of the epoch are made again up to `skipBatches` (their number is known only by packing)
    const skipSamples = packing ? 0 : Math.min(src.length, (opts.skipBatches ?? 0) * B);
    const perSkip = new Array(this.o.datasets.length).fill(0);
    for (let i = 0; i < skipSamples; i++) perSkip[src[i]]++;
    const iters = this.o.datasets.map((d, i) => d.samples({ epoch, skip: perSkip[i] })[Symbol.asyncIterator]());
    let pos = skipSamples;
    let index = packing ? 0 : (opts.skipBatches ?? 0);

    // reading is sequential (one chain); processing of a batch overlaps with reading the next
    const take = async (): Promise<Sample[]> => {
      const out: Sample[] = [];
      while (out.length < B && pos < src.length) {
        const d = src[pos++];
        const r = await iters[d].next();
        if (r.done) {
          throw new Error(`dataset ${this.o.datasets[d].name} ended before its size() (${await this.o.datasets[d].size()}) in epoch ${epoch}`);
        }
        out.push(r.value);
      }
      return out;
    };
    let chain: Promise<unknown> = Promise.resolve();
    const start = (): Promise<Prepared> => {
      const myIndex = index++;
      const samples = chain.then(take);
      chain = samples.catch(() => undefined);
      const p = samples.then((s) => this.prepare(s, myIndex));
      p.catch(() => undefined); // handled when awaited; avoid an unhandled rejection meanwhile
      return p;
    };

    const queue: { p: Promise<Prepared>; ready: boolean }[] = [];
    const enqueue = () => {
      const item = { p: start(), ready: false };
      item.p.then(
        () => (item.ready = true),
        () => undefined,
      );
      queue.push(item);
    };
    const packer = packing ? this.packer(epoch, opts.skipBatches ?? 0) : null;
    try {
      for (let i = 0; i <= Math.max(0, this.o.prefetch); i++) enqueue();
      while (queue.length) {
        const item = queue.shift()!;
        const t0 = performance.now();
        const ready = item.ready;
        const prep = await item.p;
        const waitMs = performance.now() - t0;
        if (packer) {
          // packing: buffer the prepared samples, pack a full buffer, batch the packed rows
          if (prep.total) this.account(prep);
          if (!prep.done && prep.total) enqueue();
          yield* packer.add(prep.rows as PreparedChat[], waitMs, ready, prep.done || prep.total === 0);
          if (prep.done || prep.total === 0) break;
          continue;
        }
        if (prep.total === 0) break;
        if (!prep.done) enqueue();
        this.account(prep);
        const partial = prep.total < B;
        if (partial && this.o.dropLast) break;
        if (prep.rows.length) {
          const shape = { maxLength: this.o.maxLength, padTokenId: this.o.tokenizer.padTokenId, imageSize: this.o.imageProcessor.size };
          const batch = this.o.chat ? collateChat(prep.rows as PreparedChat[], shape) : collate(prep.rows as EncodedSample[], shape);
          if (batch.batchSize) yield { batch, waitMs, ready, index: prep.index };
        }
        if (prep.done) break;
      }
    } finally {
      for (const q of queue) q.p.catch(() => undefined);
      await Promise.allSettled(iters.map((it) => it.return?.()));
      // also when the consumer stops early (max_steps, the last step of an epoch, Ctrl-C)
      if (this.st.skipped) this.o.log?.info(`data: ${this.st.skipped} of ${this.st.seen} samples skipped so far (${this.st.examples.map((e) => e.id).slice(0, 3).join(', ')}${this.st.skipped > 3 ? ', ...' : ''})`);
    }
  }

  /**
   * ConstantLengthDataset for one epoch: `add` takes the prepared samples of the next window and
   * yields the batches that became complete (`end`: the epoch's last window; its incomplete batch is
   * yielded unless dropLast). The first `skip` batches are made but not yielded (resume).
   */
  private packer(epoch: number, skip: number) {
    const o = this.o;
    const p = o.packing!;
    const B = o.batchSize;
    const limit = p.bufferSequences * o.maxLength;
    let buffer: PreparedChat[] = [];
    let tokens = 0;
    let rows: ChatSample[] = [];
    let made = 0;
    let bufferIndex = 0;
    let waited = 0;
    const pack = () => {
      const { packed, segments } = packSamples(
        buffer.map((s) => ({ id: s.id, inputIds: s.inputIds, labels: s.labels, attentionMask: new Array<number>(s.inputIds.length).fill(1), images: s.perImage })),
        {
          seqLength: o.maxLength,
          padTokenId: o.tokenizer.padTokenId,
          maxSampleLength: p.maxSampleLength,
          maxImagesPerExample: o.chat!.maxImagesPerExample,
          maxImagesPerKnapsack: p.maxImagesPerKnapsack,
          rng: mulberry32(mixSeed(o.seed, epoch, 0x7061636b + bufferIndex++)),
        },
      );
      packed.forEach((q, i) => {
        const images = q.images as Float32Array[];
        const n = images.reduce((a, t) => a + t.length, 0);
        const tiles = new Float32Array(n);
        let at = 0;
        for (const t of images) tiles.set(t, (at += t.length) - t.length);
        const S = o.imageProcessor.size;
        rows.push({ id: q.id!, inputIds: q.inputIds, labels: q.labels, attentionMask: q.attentionMask, tiles, tileCount: n / (3 * S * S), imageCount: images.length, segments: segments[i] });
      });
      buffer = [];
      tokens = 0;
    };
    const collateRows = (take: ChatSample[]) =>
      collateChat(take, { maxLength: o.maxLength, padTokenId: o.tokenizer.padTokenId, imageSize: o.imageProcessor.size, blockDiagonal: p.attention === 'block-diagonal' });
    const self = this;
    return {
      async *add(prepared: PreparedChat[], waitMs: number, ready: boolean, end: boolean): AsyncGenerator<LoadedBatch> {
        waited += waitMs;
        for (const s of prepared) {
          buffer.push(s);
          tokens += s.inputIds.length + 1; // + the separator
        }
        if (tokens >= limit || (end && buffer.length)) pack();
        while (rows.length >= B || (end && rows.length && !o.dropLast)) {
          const batch = collateRows(rows.splice(0, B));
          if (batch.dropped.length) self.st.tooLong += batch.dropped.length;
          if (!batch.batchSize) continue; // every row longer than max_length (dropped, as HEAD): not a batch
          if (made++ >= skip) {
            yield { batch, waitMs: waited, ready, index: made - 1 };
            waited = 0;
          }
        }
      },
    };
  }

  /** validate, decode and tokenise the samples of one batch (images concurrently) */
  private async prepare(samples: Sample[], index: number): Promise<Prepared> {
    if (this.o.chat) return this.prepareChat(samples, index);
    const bad: Prepared['bad'] = [];
    const tooLong: string[] = [];
    const results = await Promise.all(
      samples.map(async (s, i): Promise<EncodedSample | null> => {
        const id = s?.id ?? `sample ${index * this.o.batchSize + i}`;
        const problem = s ? sampleProblem(s) : 'missing sample';
        if (problem) {
          bad.push({ id, reason: problem });
          return null;
        }
        let pixels: Float32Array;
        try {
          pixels = await this.o.imageProcessor.process(s.image, id);
        } catch (e) {
          bad.push({ id, reason: String((e as Error)?.message ?? e).replace(`${id}: `, '') });
          return null;
        }
        const { ids, questionLength } = encodeSample(this.o.tokenizer, this.o.prompt(s), s.target ?? s.answer);
        if (ids.length > this.o.maxLength) tooLong.push(id);
        return { id, pixels, ids, questionLength };
      }),
    );
    // in batch order (image errors arrive asynchronously), so stats and messages are deterministic
    const pos = new Map(samples.map((s, i) => [s?.id ?? `sample ${index * this.o.batchSize + i}`, i]));
    bad.sort((a, b) => (pos.get(a.id) ?? 0) - (pos.get(b.id) ?? 0));
    tooLong.sort((a, b) => (pos.get(a) ?? 0) - (pos.get(b) ?? 0));
    return { rows: results.filter((r): r is EncodedSample => r !== null), bad, tooLong, total: samples.length, index, done: samples.length < this.o.batchSize };
  }

  /** prepare(), chat format: HEAD's chat samples (core/data/chat.ts) */
  private async prepareChat(samples: Sample[], index: number): Promise<Prepared> {
    const chat = this.o.chat!;
    const prefixLen = (this.prefixLen ??= assistantPrefixLength(this.o.tokenizer));
    const bad: Prepared['bad'] = [];
    const tooLong: string[] = [];
    const tooMany: string[] = [];
    const idOf = (s: Sample | undefined, i: number) => s?.id ?? `sample ${index * this.o.batchSize + i}`;
    const results = await Promise.all(
      samples.map(async (s, i): Promise<PreparedChat | null> => {
        const id = idOf(s, i);
        const problem = s ? chatSampleProblem(s) : 'missing sample';
        if (problem) {
          bad.push({ id, reason: problem });
          return null;
        }
        if ((s.images?.length ?? 1) > chat.maxImagesPerExample) {
          tooMany.push(id);
          return null;
        }
        try {
          const r = await prepareChatSample({ ...s, id }, this.o.tokenizer, this.o.imageProcessor, { ...chat, prefixLen });
          if (!this.o.packing && r.inputIds.length > this.o.maxLength) tooLong.push(id);
          return r;
        } catch (e) {
          if (e instanceof UserError) throw e;
          bad.push({ id, reason: String((e as Error)?.message ?? e).replace(`${id}: `, '') });
          return null;
        }
      }),
    );
    const pos = new Map(samples.map((s, i) => [idOf(s, i), i]));
    bad.sort((a, b) => (pos.get(a.id) ?? 0) - (pos.get(b.id) ?? 0));
    tooLong.sort((a, b) => (pos.get(a) ?? 0) - (pos.get(b) ?? 0));
    if (tooMany.length) {
      if (!this.st.tooManyImages) this.o.log?.warn(`data: ${tooMany[0]} has more than max_images_per_example ${chat.maxImagesPerExample} images: left out (as nanoVLM HEAD)`);
      this.st.tooManyImages += tooMany.length;
    }
    return { rows: results.filter((r): r is PreparedChat => r !== null), bad, tooLong, total: samples.length, index, done: samples.length < this.o.batchSize };
  }

  /** count a batch's bad samples (in batch order, so the counts are deterministic) and check the ratio */
  private account(p: Prepared): void {
    this.st.seen += p.total;
    this.st.skipped += p.bad.length;
    if (p.tooLong.length && this.st.tooLong === 0)
      this.o.log?.warn(
        this.o.chat
          ? `data: ${p.tooLong[0]} is longer than max_length ${this.o.maxLength} tokens: left out of its batch, as nanoVLM HEAD's collator`
          : `data: ${p.tooLong[0]} is longer than max_length ${this.o.maxLength} tokens: its row is ignored (all labels -100), as in nanoVLM`,
      );
    this.st.tooLong += p.tooLong.length;
    for (const b of p.bad) {
      if (this.st.examples.length < MAX_EXAMPLES) {
        this.st.examples.push(b);
        this.o.log?.warn(`data: skipped ${b.id}: ${b.reason}`);
      }
    }
    const { seen, skipped } = this.st;
    if (seen >= this.o.minSamples && skipped / seen > this.o.badSampleRatio) {
      const ex = this.st.examples.slice(0, 5).map((e) => `${e.id} (${e.reason})`).join('; ');
      throw new UserError(`${skipped} of ${seen} samples are bad (${((100 * skipped) / seen).toFixed(1)}%), above bad_sample_ratio ${this.o.badSampleRatio}: ${ex}`, {
        where: { yamlPath: 'train.bad_sample_ratio' },
        hint: 'fix or remove these samples, or raise train.bad_sample_ratio if losing them is acceptable',
      });
    }
  }
}

/**
 * Samples of one dataset in its order with their processed image, for evaluators. Samples whose
 * image cannot be used (or with missing fields) are passed to `onBad` and left out.
 */
export async function* processedSamples(
  dataset: Dataset,
  imageProcessor: ImageProcessor,
  opts: { epoch?: number; concurrency?: number; onBad?: (id: string, reason: string) => void } = {},
): AsyncGenerator<{ sample: Sample; pixels: Float32Array }> {
  const conc = Math.max(1, opts.concurrency ?? 16);
  const pending: Promise<{ sample: Sample; pixels?: Float32Array; reason?: string }>[] = [];
  const it = dataset.samples({ epoch: opts.epoch ?? 0 })[Symbol.asyncIterator]();
  let ended = false;
  const pull = async () => {
    const r = await it.next();
    if (r.done) {
      ended = true;
      return;
    }
    const s = r.value;
    const problem = sampleProblem(s);
    const p = problem
      ? Promise.resolve({ sample: s, reason: problem })
      : imageProcessor.process(s.image, s.id).then(
          (pixels) => ({ sample: s, pixels }),
          (e) => ({ sample: s, reason: String((e as Error)?.message ?? e) }),
        );
    pending.push(p);
  };
  try {
    while (!ended && pending.length < conc) await pull();
    while (pending.length) {
      const r = await pending.shift()!;
      if (!ended) await pull();
      if (r.pixels) yield { sample: r.sample, pixels: r.pixels };
      else opts.onBad?.(r.sample.id, r.reason ?? 'bad sample');
    }
  } finally {
    await it.return?.();
  }
}

/**
 * How many of a dataset's first `limit` samples are longer than `maxLength` tokens (prompt + answer
 * + eos, as the loader encodes them): such rows are ignored in training, so a large share of them
 * is worth a warning before training starts. `longest` is the max_length that keeps them all.
 */
export async function surveyLengths(
  dataset: Dataset,
  tokenizer: Tokenizer,
  maxLength: number,
  limit = 256,
): Promise<{ surveyed: number; tooLong: number; longest: number }> {
  let surveyed = 0;
  let tooLong = 0;
  let longest = 0;
  for await (const s of dataset.samples({ epoch: 0 })) {
    if (surveyed >= limit) break;
    if (sampleProblem(s)) continue;
    surveyed++;
    const n = encodeSample(tokenizer, defaultPrompt(s), s.target ?? s.answer).ids.length;
    longest = Math.max(longest, n);
    if (n > maxLength) tooLong++;
  }
  return { surveyed, tooLong, longest };
}
