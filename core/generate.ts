// Text generation for the VLM: nanoVLM v0.1 `VisionLanguageModel.generate` plus what it lacks
// (https://github.com/huggingface/nanoVLM/blob/v0.1/models/vision_language_model.py, generate):
//   - a KV cache: the image prefix and the prompt are run once (prefill), then one token per step;
//     `useCache: false` is nanoVLM's full recompute of [image; prompt; generated] at every step;
//   - greedy decoding or sampling with temperature / top-k / top-p from a seeded PRNG (reproducible,
//     one stream per row); nanoVLM v0.1 samples with torch.multinomial from the plain softmax;
//   - stopping at eos per sequence (`stopAtEos: false` reproduces v0.1, which never stops);
//   - batches of prompts left-padded to the same length (mask 0 = padding), as nanoVLM's collators do;
//   - streaming through `onToken`.
// Sampling runs on the host on one row of logits at a time ([V] floats per row and step).
import * as tf from '@tensorflow/tfjs';
import { UserError } from './errors.ts';
import type { ImageProcessor, KVCache, Tokenizer } from './types.ts';
import type { VisionLanguageModel } from './model/vlm.ts';
import { mixSeed, mulberry32 } from './rng.ts';

// ---- seeded PRNG -----------------------------------------------------------------------------

// mulberry32 (core/rng.ts) is the PRNG; re-exported for the sampling tests.
export { mulberry32 };

/** The PRNG of row `row` of a batch generated with `seed`: rows draw from independent streams. */
export function rowRng(seed: number, row: number): () => number {
  return mulberry32(mixSeed(seed, row));
}

// ---- sampling --------------------------------------------------------------------------------

export interface SamplingOptions {
  /** argmax (the first maximum on ties, like torch.argmax); ignores temperature/topK/topP */
  greedy?: boolean;
  /** logits are divided by it; 0 means greedy. Default 1 */
  temperature?: number;
  /** keep the k most likely tokens (ties with the k-th kept, as HF TopKLogitsWarper); 0/undefined = all */
  topK?: number;
  /** keep the smallest set of most likely tokens whose probability reaches topP (at least one); 1 = all */
  topP?: number;
  /**
   * 'hf' (default): temperature, then top-k, then top-p (Hugging Face's warper order).
   * 'nanovlm-head': nanoVLM HEAD's generate (models/utils.py top_k_top_p_filtering): top-k and top-p
   * on the raw logits, top-p dropping every token whose cumulative probability (itself included)
   * exceeds topP except the most likely one, then softmax(filtered / temperature).
   */
  order?: SamplingOrder;
}

export type SamplingOrder = 'hf' | 'nanovlm-head';
/** nanoVLM HEAD's VisionLanguageModel.generate defaults */
export const NANOVLM_HEAD_SAMPLING = { topK: 50, topP: 0.9, temperature: 0.5 } as const;

/** Index of the largest value (the first one on ties). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/**
 * The candidate tokens (in id order) and their probabilities after temperature, top-k, then
 * top-p (HF's warper order). Probabilities sum to 1. Filtering uses thresholds found with a native
 * typed-array sort, so a step costs O(V log V) without a JS comparator (~2 ms for V = 49152);
 * tokens tied exactly at a threshold are all kept.
 */
export function samplingDistribution(
  logits: ArrayLike<number>,
  opts: SamplingOptions = {},
): { ids: number[]; probs: number[] } {
  if (opts.order === 'nanovlm-head') return headSamplingDistribution(logits, opts);
  // top-k: keep every id whose logit is >= the k-th largest; softmax over them at the temperature
  let ids = topKIds(logits, opts.topK ?? 0);
  let probs = softmaxAt(logits, ids, opts.temperature ?? 1);
  // top-p: the most likely ids until their mass reaches topP (at least one), i.e. keep an id
  // while the mass of the more likely ones before it is < topP
  const topP = opts.topP ?? 1;
  if (topP < 1) {
    const sorted = Float64Array.from(probs).sort(); // ascending
    let cum = 0;
    let j = sorted.length - 1;
    while (j > 0 && cum + sorted[j] < topP) cum += sorted[j--];
    const threshold = sorted[j]; // the least likely id that is kept
    const keep = probs.map((p) => p >= threshold);
    ids = ids.filter((_, i) => keep[i]);
    probs = probs.filter((_, i) => keep[i]);
    const sum = probs.reduce((a, p) => a + p, 0);
    probs = probs.map((p) => p / sum);
  }
  return { ids, probs };
}

/** The ids whose logit is >= the k-th largest (ties kept), in id order; all when k is 0 or >= V. */
function topKIds(logits: ArrayLike<number>, k: number): number[] {
  const V = logits.length;
  if (!(k > 0 && k < V)) return Array.from({ length: V }, (_, i) => i);
  const kth = Float32Array.from(logits).sort()[V - k];
  const ids: number[] = [];
  for (let i = 0; i < V; i++) if (logits[i] >= kth) ids.push(i);
  return ids;
}

/** softmax of logits[ids] / temperature (max-subtracted, float64) */
function softmaxAt(logits: ArrayLike<number>, ids: number[], temperature: number): number[] {
  let max = -Infinity;
  for (const i of ids) if (logits[i] > max) max = logits[i];
  const e = ids.map((i) => Math.exp((logits[i] - max) / temperature));
  const sum = e.reduce((a, p) => a + p, 0);
  return e.map((p) => p / sum);
}

/**
 * nanoVLM HEAD's order (see SamplingOptions.order): top-k on the raw logits; top-p over the
 * temperature-1 softmax of what is left, sorted by logit (ties by id), keeping the first token and
 * every token whose cumulative probability is <= topP; then softmax(kept / temperature).
 */
function headSamplingDistribution(logits: ArrayLike<number>, opts: SamplingOptions): { ids: number[]; probs: number[] } {
  let ids = topKIds(logits, opts.topK ?? 0);
  const topP = opts.topP ?? 1;
  if (topP < 1) {
    const p = softmaxAt(logits, ids, 1);
    const order = ids.map((_, j) => j).sort((a, b) => logits[ids[b]] - logits[ids[a]] || ids[a] - ids[b]); // descending
    const keep = new Array<boolean>(ids.length).fill(false);
    let cum = 0;
    for (let r = 0; r < order.length; r++) {
      cum += p[order[r]];
      if (r > 0 && cum > topP) break; // every later token has a larger cumulative mass
      keep[order[r]] = true;
    }
    ids = ids.filter((_, j) => keep[j]);
  }
  return { ids, probs: softmaxAt(logits, ids, opts.temperature ?? 1) };
}

/** Pick the next token from one row of logits [V]: one draw by cumulative mass over the candidates. */
export function sampleToken(logits: ArrayLike<number>, opts: SamplingOptions, rng: () => number): number {
  if (opts.greedy || opts.temperature === 0) return argmax(logits);
  const { ids, probs } = samplingDistribution(logits, opts);
  const r = rng();
  let cum = 0;
  for (let j = 0; j < ids.length; j++) {
    cum += probs[j];
    if (r < cum) return ids[j];
  }
  return ids[ids.length - 1]; // rounding: r just below 1
}

// ---- generation ------------------------------------------------------------------------------

export interface GenerateInputs {
  /** int32 [B, T] prompt ids, LEFT padded */
  inputIds: tf.Tensor2D;
  /** [B, T] 1 = real token, 0 = left padding; null/undefined = no padding */
  attentionMask?: tf.Tensor2D | null;
  /** float32 [B, 3, S, S] */
  images: tf.Tensor4D;
}

export interface GenerateOptions extends SamplingOptions {
  /** default 20 */
  maxNewTokens?: number;
  /** PRNG seed for sampling; row i uses rowRng(seed, i). Default 0 */
  seed?: number;
  /** KV cache (default true); false = nanoVLM v0.1's full recompute every step */
  useCache?: boolean;
  /** default: the decoder's eos id */
  eosTokenId?: number;
  /** stop a row at its eos (default true); false = always maxNewTokens tokens, like nanoVLM v0.1 */
  stopAtEos?: boolean;
  /** with stopAtEos false: every token after a row's first eos is returned as eos (nanoVLM HEAD's generate) */
  padAfterEos?: boolean;
  /** called for every generated token, eos included (row = batch index, step = 0-based position) */
  onToken?: (row: number, token: number, step: number) => void;
}


/** Read a small tensor to the host and dispose it (async: GPU backends cannot read synchronously). */
async function take(t: tf.Tensor): Promise<Float32Array> {
  try {
    return (await t.data()) as Float32Array;
  } finally {
    t.dispose();
  }
}

/**
 * Generate up to `maxNewTokens` tokens for each row. Returns the new token ids per row; with
 * `stopAtEos` a row ends before its eos (the eos itself is not returned, but is passed to onToken).
 * Every tensor created here is disposed before returning (the cache included).
 */
export async function generate(model: VisionLanguageModel, inputs: GenerateInputs, opts: GenerateOptions = {}): Promise<number[][]> {
  const steps = generateSteps(model, inputs, opts);
  for (;;) {
    const r = await steps.next();
    if (r.done) return r.value;
  }
}

/**
 * The same loop, one decoding step at a time: it yields the step index after each step's tokens
 * went to `onToken`, and returns what `generate` returns. `.return()` stops it early and frees
 * every tensor. A caller can do other work between steps (`vlm serve`: stream tokens, notice a
 * client that went away). Async: logits are read with `await data()` (GPU backends cannot read
 * synchronously).
 */
export async function* generateSteps(model: VisionLanguageModel, inputs: GenerateInputs, opts: GenerateOptions = {}): AsyncGenerator<number, number[][], void> {
  const decoder = model.decoder;
  const maxNewTokens = opts.maxNewTokens ?? 20;
  const useCache = opts.useCache ?? true;
  const stopAtEos = opts.stopAtEos ?? true;
  const eos = opts.eosTokenId ?? decoder.eosTokenId;
  const sampling: SamplingOptions = {
    greedy: opts.greedy ?? (opts.temperature === undefined && opts.topK === undefined && opts.topP === undefined),
    temperature: opts.temperature,
    topK: opts.topK,
    topP: opts.topP,
    order: opts.order,
  };
  const [B, T] = inputs.inputIds.shape;
  const V = decoder.vocabSize;
  const rngs = Array.from({ length: B }, (_, i) => rowRng(opts.seed ?? 0, i));
  const out: number[][] = Array.from({ length: B }, () => []);
  const done = new Array<boolean>(B).fill(false);
  const sawEos = new Array<boolean>(B).fill(false);
  if (maxNewTokens <= 0 || B === 0) return out;

  // host copy of the text mask; the full mask is [image 1s ; prompt mask ; 1 per generated token]
  const promptMask = inputs.attentionMask ? Array.from(await inputs.attentionMask.data()) : null;
  const padded = promptMask !== null && promptMask.some((m) => m === 0);

  // the prompt's embeddings, computed once: [image ; prompt] [B, Ni + T, C] (v0.1), or the prompt with
  // its <|image|> placeholders replaced by the images' embeddings [B, T, C] (HEAD: Ni = 0)
  const promptEmbd = tf.tidy(() => model.inputEmbeddings(inputs.inputIds, inputs.images));
  const Ni = model.imagePrefix;
  const C = promptEmbd.shape[2];

  /** the decoder mask for a sequence of `len` positions (host), or null when nothing is padded */
  const hostMask = (len: number): Int32Array | null => {
    if (!padded) return null;
    const m = new Int32Array(B * len).fill(1);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) m[b * len + Ni + t] = promptMask![b * T + t];
    return m;
  };
  const maskFor = (len: number): tf.Tensor2D | null => {
    const m = hostMask(len);
    return m && tf.tensor2d(m, [B, len], 'int32');
  };
  // a decoder may offer a host-side one-token step with the cache (Decoder.decodeNext, optional); it
  // pays off where tensors live in host memory and each kernel call has a fixed overhead (wasm,
  // cpu); a native/GPU backend ('tensorflow') keeps the all-tensor step (no device round trips)
  const hostBackend = ['wasm', 'cpu'].includes(tf.getBackend());
  const decodeNext = hostBackend ? decoder.decodeNext?.bind(decoder) : undefined;
  // a decoder may offer a faster head for inference (LlamaDecoder keeps a transposed copy of the weight)
  const inferenceHead = decoder.inferenceHead?.bind(decoder) ?? ((h: tf.Tensor3D) => decoder.head(h));
  /** hidden [B, L, C] -> logits of the last position [B, V] */
  const lastLogits = (hidden: tf.Tensor3D): tf.Tensor2D => {
    const L = hidden.shape[1];
    const last = hidden.slice([0, L - 1, 0], [B, 1, C]) as tf.Tensor3D; // [B, 1, C]
    return inferenceHead(last).reshape([B, V]) as tf.Tensor2D;
  };

  const cache = useCache ? decoder.newCache(B) : null;
  let seq: tf.Tensor3D | null = null; // no-cache path: the full [B, L, C] embedding sequence
  try {
    // prefill: [image; prompt] -> logits of the last prompt position
    let logits = await take(
      tf.tidy(() => {
        const x = promptEmbd; // [B, Ni+T, C]
        if (!cache) seq = tf.keep(x.clone());
        return lastLogits(decoder.forward(x, { mask: maskFor(Ni + T), cache: cache ?? undefined }));
      }),
    );
    for (let step = 0; step < maxNewTokens; step++) {
      const next = new Int32Array(B);
      for (let b = 0; b < B; b++) {
        if (done[b]) {
          next[b] = eos; // finished rows keep being fed (their output is ignored)
          continue;
        }
        const tok = sampleToken(logits.subarray(b * V, (b + 1) * V), sampling, rngs[b]);
        next[b] = tok;
        opts.onToken?.(b, tok, step);
        if (stopAtEos && tok === eos) done[b] = true;
        else {
          out[b].push(opts.padAfterEos && sawEos[b] ? eos : tok);
          if (tok === eos) sawEos[b] = true;
        }
      }
      if (step === maxNewTokens - 1 || done.every(Boolean)) break;
      yield step;
      // one more position: embed the chosen tokens and run the decoder on them
      const L = Ni + T + step + 1;
      if (cache && decodeNext) {
        logits = decodeNext(next, cache, hostMask(L));
        continue;
      }
      logits = await take(
        tf.tidy(() => {
          const e = decoder.embed(tf.tensor2d(next, [B, 1], 'int32')); // [B, 1, C]
          if (cache) return lastLogits(decoder.forward(e, { mask: maskFor(L), cache }));
          const x = tf.concat([seq!, e], 1) as tf.Tensor3D; // [B, L, C]
          seq!.dispose();
          seq = tf.keep(x);
          return lastLogits(decoder.forward(x, { mask: maskFor(L) }));
        }),
      );
    }
  } finally {
    promptEmbd.dispose();
    cache?.dispose();
    (seq as tf.Tensor3D | null)?.dispose();
  }
  return out;
}

// ---- from text and image bytes ---------------------------------------------------------------

export interface PromptBatch {
  inputIds: Int32Array; // [B, T] left padded with the tokenizer's pad id
  attentionMask: Int32Array; // [B, T]
  images: Float32Array; // [B, 3, S, S], or [imageCount, 3, S, S] tiles (nanoVLM HEAD, core/chat-prompts.ts)
  batchSize: number;
  seqLen: number;
  imageSize: number;
  /** number of images (tiles) in `images` when it is not one per row (HEAD's placeholder mode) */
  imageCount?: number;
}

/** Tokenise prompts (already formatted) and preprocess images into one left-padded batch. */
export async function preparePrompts(
  tokenizer: Tokenizer,
  imageProcessor: ImageProcessor,
  items: { prompt: string; image: Uint8Array | Float32Array; id?: string }[],
): Promise<PromptBatch> {
  const B = items.length;
  const S = imageProcessor.size;
  const ids = items.map((it) => tokenizer.encode(it.prompt));
  const T = Math.max(1, ...ids.map((x) => x.length));
  const inputIds = new Int32Array(B * T).fill(tokenizer.padTokenId);
  const attentionMask = new Int32Array(B * T);
  const images = new Float32Array(B * 3 * S * S);
  for (let b = 0; b < B; b++) {
    const off = T - ids[b].length; // left padding
    inputIds.set(ids[b], b * T + off);
    attentionMask.fill(1, b * T + off, (b + 1) * T);
    const img = items[b].image;
    const pixels = img instanceof Float32Array ? img : await imageProcessor.process(img, items[b].id);
    images.set(pixels, b * 3 * S * S);
  }
  return { inputIds, attentionMask, images, batchSize: B, seqLen: T, imageSize: S };
}

/** A UserError when a prepared batch does not fit the model (foreign tokenizer, wrong image size). */
export function checkPromptBatch(model: VisionLanguageModel, batch: PromptBatch): void {
  const V = model.decoder.vocabSize;
  const bad = batch.inputIds.find((id) => id < 0 || id >= V);
  if (bad !== undefined) {
    throw new UserError(`the prompt has token id ${bad}, outside the model's vocabulary of ${V} tokens`, {
      hint: 'the tokenizer does not belong to this model: use the tokenizer it was trained with (its folder or nanovlm-ts.json sidecar)',
    });
  }
  if (batch.imageSize !== model.imageSize) {
    throw new UserError(`images are ${batch.imageSize}px but the vision encoder takes ${model.imageSize}px`, {
      hint: "set the image processor's size to the model's image size",
    });
  }
}

/** Generate for a prepared batch (tensors are created and disposed here). */
export async function generateBatch(model: VisionLanguageModel, batch: PromptBatch, opts: GenerateOptions = {}): Promise<number[][]> {
  checkPromptBatch(model, batch);
  const { batchSize: B, seqLen: T, imageSize: S } = batch;
  const inputIds = tf.tensor2d(batch.inputIds, [B, T], 'int32');
  const attentionMask = tf.tensor2d(batch.attentionMask, [B, T], 'int32');
  const images = tf.tensor4d(batch.images, [batch.imageCount ?? B, 3, S, S]);
  try {
    return await generate(model, { inputIds, attentionMask, images }, opts);
  } finally {
    tf.dispose([inputIds, attentionMask, images]);
  }
}

/** Prompts + encoded images -> decoded answers (special tokens skipped). */
export async function generateText(
  model: VisionLanguageModel,
  tokenizer: Tokenizer,
  imageProcessor: ImageProcessor,
  items: { prompt: string; image: Uint8Array | Float32Array; id?: string }[],
  opts: GenerateOptions = {},
): Promise<string[]> {
  const batch = await preparePrompts(tokenizer, imageProcessor, items);
  const tokens = await generateBatch(model, batch, { eosTokenId: tokenizer.eosTokenId, ...opts });
  return tokens.map((t) => tokenizer.decode(t, { skipSpecialTokens: true }));
}
