// Packing several samples into one sequence, as nanoVLM HEAD's ConstantLengthDataset
// (4e0c096, data/advanced_datasets.py):
//   - each sample gets one separator appended: the pad id, attention 0, label -100;
//   - samples of max_sample_length tokens or more, or with more than max_images_per_example images,
//     are skipped;
//   - _balanced_greedy_knapsack: samples sorted by length (longest first, ties in input order), put
//     in ceil(total / L) + delta bins (delta 5), each into the least loaded bin (ties: the first)
//     that keeps its length <= L and its images <= max_images_per_knapsack, a new bin when none
//     does; the empty bins are dropped and the bins shuffled (HEAD: Python's random.shuffle; here
//     a seeded PRNG, so the bins are HEAD's but their order is not);
//   - _pack_one_group: the bin's samples concatenated in that order (ids, labels, attention mask,
//     images); the collator then pads the packed sequence like any other sample.
// In HEAD a packed sample attends to the samples before it in its bin and positions run on
// (0..T-1 over the whole sequence); `segments` gives each packed sequence's sample lengths, which a
// per-sample (block-diagonal) mask would need.
import { shuffleInPlace } from '../rng.ts';

export interface PackItem {
  length: number;
  images: number;
}

export interface KnapsackOptions {
  /** bins beyond ceil(total / L) (HEAD: 5) */
  delta?: number;
  /** HEAD TrainConfig.max_images_per_knapsack (18); null = no limit */
  maxImagesPerKnapsack?: number | null;
  /** shuffles the bins; absent = the order they were filled in */
  rng?: () => number;
}

/** _balanced_greedy_knapsack: the bins as lists of item indices (in packing order). */
export function balancedGreedyKnapsack(items: PackItem[], L: number, opts: KnapsackOptions = {}): number[][] {
  const delta = opts.delta ?? 5;
  const maxImages = opts.maxImagesPerKnapsack === undefined ? 18 : opts.maxImagesPerKnapsack;
  const order = items.map((_, i) => i).sort((a, b) => items[b].length - items[a].length || a - b);
  const total = items.reduce((s, x) => s + x.length, 0);
  const n0 = Math.floor((total + L - 1) / L) + delta;
  const load: number[] = new Array(n0).fill(0);
  const imgs: number[] = new Array(n0).fill(0);
  const groups: number[][] = Array.from({ length: n0 }, () => []);
  for (const i of order) {
    const { length, images } = items[i];
    const byLoad = load.map((_, k) => k).sort((a, b) => load[a] - load[b] || a - b);
    let bin = byLoad.find((k) => load[k] + length <= L && (maxImages === null || imgs[k] + images <= maxImages));
    if (bin === undefined) {
      bin = load.length;
      load.push(0);
      imgs.push(0);
      groups.push([]);
    }
    groups[bin].push(i);
    load[bin] += length;
    imgs[bin] += images;
  }
  if (opts.rng) shuffleInPlace(groups, opts.rng);
  return groups.filter((g) => g.length > 0);
}

export interface PackableSample {
  /** for messages: a packed sample's id is its samples' ids joined by + */
  id?: string;
  inputIds: number[];
  labels: number[];
  attentionMask: number[];
  /** the sample's images (any payload), kept in order */
  images: unknown[];
}

export interface PackOptions extends KnapsackOptions {
  /** the packed length L (HEAD: lm_max_length) */
  seqLength: number;
  padTokenId: number;
  /** HEAD TrainConfig.max_sample_length: longer samples are skipped */
  maxSampleLength?: number;
  /** HEAD: 4 */
  maxImagesPerExample?: number;
}

/** ConstantLengthDataset over one buffer of samples: separators, filters, knapsack, concatenation. */
export function packSamples<S extends PackableSample>(samples: S[], o: PackOptions): { packed: PackableSample[]; skipped: number; segments: number[][] } {
  const kept: PackableSample[] = [];
  let skipped = 0;
  for (const s of samples) {
    if (s.inputIds.length >= (o.maxSampleLength ?? Infinity) || s.images.length > (o.maxImagesPerExample ?? 4)) {
      skipped++;
      continue;
    }
    kept.push({
      id: s.id,
      inputIds: [...s.inputIds, o.padTokenId],
      labels: [...s.labels, -100],
      attentionMask: [...s.attentionMask, 0],
      images: s.images,
    });
  }
  const groups = balancedGreedyKnapsack(kept.map((s) => ({ length: s.inputIds.length, images: s.images.length })), o.seqLength, o);
  const packed = groups.map((g) => ({
    id: g.map((i) => kept[i].id ?? `#${i}`).join('+'),
    inputIds: g.flatMap((i) => kept[i].inputIds),
    labels: g.flatMap((i) => kept[i].labels),
    attentionMask: g.flatMap((i) => kept[i].attentionMask),
    images: g.flatMap((i) => kept[i].images),
  }));
  // each packed sequence's sample lengths (separator included), for a per-sample mask
  return { packed, skipped, segments: groups.map((g) => g.map((i) => kept[i].inputIds.length)) };
}
