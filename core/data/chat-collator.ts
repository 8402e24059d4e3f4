// nanoVLM HEAD's VQACollator (4e0c096, data/collators.py) for chat samples (core/data/chat.ts) with
// any number of images each: samples longer than max_length are dropped (HEAD discards them), the
// rest are LEFT-padded to max_length (ids: pad, labels: -100, attention: 0); the images of the batch
// are one flat tile tensor [N, 3, S, S] in sample order (VisionLanguageModel._process_images), with
// the tile and image counts per sample. A batch without images has N = 0 (the vision encoder is
// skipped).
import type { HostBatch } from '../types.ts';
import { IGNORE } from './collator.ts';

export interface ChatSample {
  id: string;
  inputIds: number[];
  /** already shifted (chatInputs) */
  labels: number[];
  /** default: all 1 (a packed sample has 0 at its separators) */
  attentionMask?: number[];
  /** [tileCount, 3, S, S] */
  tiles: Float32Array;
  tileCount: number;
  /** images of the sample (each gives one or more tiles) */
  imageCount: number;
  /** a packed sample: the lengths of the samples it holds, each ending with its separator (packSamples) */
  segments?: number[];
}

export interface ChatBatch extends HostBatch {
  /** tiles in `images` (N) */
  imageCount: number;
  tilesPerSample: number[];
  imagesPerSample: number[];
  /** ids of the samples dropped for being longer than maxLength */
  dropped: string[];
}

/**
 * `blockDiagonal` (train.packing.attention: block-diagonal): also the batch's segmentIds, 1, 2, ...
 * for the samples of each row (a row that is not packed is one sample), 0 on padding and separators.
 */
export function collateChat(samples: ChatSample[], opts: { maxLength: number; padTokenId: number; imageSize: number; blockDiagonal?: boolean }): ChatBatch {
  const T = opts.maxLength;
  const px = 3 * opts.imageSize * opts.imageSize;
  const kept = samples.filter((s) => s.inputIds.length <= T);
  const dropped = samples.filter((s) => s.inputIds.length > T).map((s) => s.id);
  const B = kept.length;
  const N = kept.reduce((n, s) => n + s.tileCount, 0);
  const inputIds = new Int32Array(B * T).fill(opts.padTokenId);
  const attentionMask = new Int32Array(B * T);
  const targets = new Int32Array(B * T).fill(IGNORE);
  const images = new Float32Array(N * px);
  const segmentIds = opts.blockDiagonal ? new Int32Array(B * T) : undefined;
  let tile = 0;
  kept.forEach((s, b) => {
    if (s.tiles.length !== s.tileCount * px) throw new Error(`sample ${s.id}: ${s.tiles.length} pixel values for ${s.tileCount} tiles of 3x${opts.imageSize}x${opts.imageSize}`);
    if (s.labels.length !== s.inputIds.length) throw new Error(`sample ${s.id}: ${s.labels.length} labels for ${s.inputIds.length} ids`);
    const first = b * T + T - s.inputIds.length; // left padding
    inputIds.set(s.inputIds, first);
    targets.set(s.labels, first);
    if (s.attentionMask) attentionMask.set(s.attentionMask, first);
    else attentionMask.fill(1, first, (b + 1) * T);
    if (segmentIds) {
      let at = first;
      (s.segments ?? [s.inputIds.length]).forEach((len, k) => {
        segmentIds.fill(k + 1, at, at + len - (s.segments ? 1 : 0)); // the separator (last of a packed segment) stays 0
        at += len;
      });
    }
    images.set(s.tiles, tile * px);
    tile += s.tileCount;
  });
  return {
    batchSize: B,
    seqLen: T,
    images,
    imageSize: opts.imageSize,
    inputIds,
    attentionMask,
    targets,
    sampleIds: kept.map((s) => s.id),
    imageCount: N,
    tilesPerSample: kept.map((s) => s.tileCount),
    imagesPerSample: kept.map((s) => s.imageCount),
    dropped,
    ...(segmentIds ? { segmentIds } : {}),
  };
}
