// nanoVLM v0.1's VQACollator (data/collators.py at tag v0.1), on host arrays.
//   https://github.com/huggingface/nanoVLM/blob/v0.1/data/collators.py
//
// Tokenisation, as nanoVLM: the dataset makes text = "Question: {q} Answer:" and answer =
// assistant + eos_token; the collator tokenises the FULL string f"{text}{answer}" in one call
// (so BPE merges across the question/answer boundary are whatever the tokenizer does on the whole
// string), and the question length separately: len(encode(text)). Then:
//   input_ids      left-padded with pad (= eos) to max_length, truncated on the right;
//   attention_mask 0 on the padding, 1 elsewhere;
//   labels[:, :-1] = input_ids[:, 1:];  labels[:, -1] = -100
//   a sample whose un-truncated length > max_length: the whole row -100 (ignored; nanoVLM keeps
//     the row in the batch, so do we);
//   else labels[i, :first_token_pos + question_length - 1] = -100 (padding + question), with
//     Python slice semantics for that end index.
// The eos at the end of the answer IS a target.
import * as tf from '@tensorflow/tfjs';
import type { HostBatch, Tokenizer } from '../types.ts';

export const IGNORE = -100;

/** One sample ready for the collator: token ids of the whole sequence and of the question part. */
export interface EncodedSample {
  id: string;
  /** [3, S, S] float32 */
  pixels: Float32Array;
  /** encode(prompt + answer + eos), un-truncated */
  ids: number[];
  /** len(encode(prompt)) */
  questionLength: number;
}

/**
 * nanoVLM's text side of one sample: ids of f"{prompt}{answer}{eos_token}" and the question length.
 * A tokenizer that knows its eos text (`eosToken`, as ours do) gets the literal string, exactly as
 * nanoVLM; otherwise the eos id is appended (the same thing for tokenizers that split added
 * tokens out before the model runs, which Hugging Face tokenizers do).
 */
export function encodeSample(tokenizer: Tokenizer, prompt: string, answer: string): { ids: number[]; questionLength: number } {
  const eosText = (tokenizer as { eosToken?: string }).eosToken;
  const ids = eosText !== undefined ? tokenizer.encode(`${prompt}${answer}${eosText}`) : [...tokenizer.encode(`${prompt}${answer}`), tokenizer.eosTokenId];
  return { ids, questionLength: tokenizer.encode(prompt).length };
}

/** True when nanoVLM's collator would ignore the whole row (sequence longer than max_length). */
export function isTooLong(s: { ids: number[] }, maxLength: number): boolean {
  return s.ids.length > maxLength;
}

/** Python `labels[:end]` end index -> a JS exclusive end in [0, T] */
function pySliceEnd(end: number, T: number): number {
  if (end < 0) end += T;
  return Math.min(Math.max(end, 0), T);
}

/** Collate encoded samples into one HostBatch of B rows x max_length (VQACollator semantics). */
export function collate(samples: EncodedSample[], opts: { maxLength: number; padTokenId: number; imageSize: number }): HostBatch {
  const B = samples.length;
  const T = opts.maxLength;
  const S = opts.imageSize;
  const px = 3 * S * S;
  const inputIds = new Int32Array(B * T).fill(opts.padTokenId);
  const attentionMask = new Int32Array(B * T);
  const targets = new Int32Array(B * T).fill(IGNORE);
  const images = new Float32Array(B * px);
  samples.forEach((s, b) => {
    if (s.pixels.length !== px) throw new Error(`sample ${s.id}: image has ${s.pixels.length} values, expected 3x${S}x${S}`);
    images.set(s.pixels, b * px);
    const row = b * T;
    const kept = s.ids.slice(0, T); // truncation=True: cut on the right
    const first = T - kept.length; // padding_side="left"
    inputIds.set(kept, row + first);
    attentionMask.fill(1, row + first, row + T);
    if (s.ids.length > T || kept.length === 0) return; // whole row ignored
    for (let t = 0; t < T - 1; t++) targets[row + t] = inputIds[row + t + 1]; // labels[:, :-1] = ids[:, 1:]
    const end = pySliceEnd(first + s.questionLength - 1, T);
    targets.fill(IGNORE, row, row + end); // padding + question
  });
  return { batchSize: B, seqLen: T, images, imageSize: S, inputIds, attentionMask, targets, sampleIds: samples.map((s) => s.id) };
}

/** number of target positions that carry a loss (targets != -100), counted on the host */
export function countTargets(targets: Int32Array): number {
  let n = 0;
  for (let i = 0; i < targets.length; i++) if (targets[i] !== IGNORE) n++;
  return n;
}

/**
 * HostBatch -> tensors for one step (call inside tf.tidy, or dispose them). `segmentIds` (packed rows
 * with a block-diagonal mask) stays a host array: the decoder builds its mask and positions from it.
 */
export function toTensors(h: HostBatch): { images: tf.Tensor4D; inputIds: tf.Tensor2D; attentionMask: tf.Tensor2D; targets: tf.Tensor2D; segmentIds?: Int32Array } {
  return {
    images: tf.tensor4d(h.images, [h.imageCount ?? h.batchSize, 3, h.imageSize, h.imageSize]), // [B, 3, S, S] (HEAD: every tile [N, 3, S, S])
    inputIds: tf.tensor2d(h.inputIds, [h.batchSize, h.seqLen], 'int32'), // [B, T]
    attentionMask: tf.tensor2d(h.attentionMask, [h.batchSize, h.seqLen], 'int32'), // [B, T]
    targets: tf.tensor2d(h.targets, [h.batchSize, h.seqLen], 'int32'), // [B, T], -100 ignored
    ...(h.segmentIds ? { segmentIds: h.segmentIds } : {}),
  };
}
