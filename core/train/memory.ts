// Memory of one training step, estimated before the first step, and what to say when it does not
// fit. The estimate is the backend's peak (the tfjs tensors: for wasm, its heap):
//   parameters                      every parameter, float32
//   gradients                       trainable parameters (all present at the end of the backward pass;
//                                   twice with train.max_grad_norm: the clipped copies)
//   optimizer state                 AdamW exp_avg + exp_avg_sq of trainable parameters, unless
//                                   adamw host_state keeps them in host memory
//   activations                     what the gradient tape keeps for the backward pass, per block
//                                   (saved inputs/outputs of the linear maps, norms, activations
//                                   and the attention probabilities):
//                                     per token: ~20 x width + 12 x MLP width, per head: 6 x length^2
//                                   (4 x length^2 with the fused attention softmax of the native
//                                   addon: its tape keeps the scores and probabilities only, not the
//                                   scaled and masked scores of the tfjs chain)
//                                   (the tape's saved tensors and, at the peak of the backward pass,
//                                   the gradients flowing through them)
//                                   with train.activation_checkpointing only each block's input, plus
//                                   one block recomputed (and its gradients) at a time
//   head and loss                   logits, softmax and their gradient on the counted positions
//                                   (about half of the text positions of a nanoVLM batch)
// Image tokens as placeholders (nanoVLM HEAD): the image tokens are in the text (lm_max_length
// positions), and the vision encoder runs on every tile of the row: tilesPerRow (placeholderTiles:
// images a row can hold x the most tiles an image gives, at most one tile per mp_image_token_length
// text positions) instead of one image.
// The per-block constants were fitted to tf.profile peaks of the bench models (test/core/train/memory.test.ts
// checks the estimate against measured peaks); it is an estimate (within ~30%), used to refuse a
// run that cannot fit before it starts, and to explain an out-of-memory abort when one happens.
import { UserError } from '../errors.ts';
import { fusedAttentionActive } from '../kernels/native-direct.ts';
import type { Optimizer } from '../types.ts';

/** The wasm backend's heap limit: emscripten getHeapMax() of tfjs-backend-wasm 4.22 (4 GiB - 64 KiB). */
export const WASM_HEAP_LIMIT = 4294901760;

/** The model shapes the estimate needs, as nanoVLM's VLMConfig names them (VisionLanguageModel.nanovlmConfig()). */
export interface ShapeConfig {
  vit_hidden_dim: number;
  vit_inter_dim: number;
  vit_n_heads: number;
  vit_n_blocks: number;
  vit_img_size: number;
  vit_patch_size: number;
  mp_pixel_shuffle_factor: number;
  lm_hidden_dim: number;
  lm_inter_dim: number;
  lm_n_heads: number;
  lm_n_blocks: number;
  lm_vocab_size: number;
  lm_max_length: number;
}

export interface MemoryEstimate {
  parameters: number;
  gradients: number;
  optimizer: number;
  /** optimizer state kept in host memory instead (adamw host_state) */
  optimizerHost: number;
  activations: number;
  /** activations with the other setting of activation checkpointing, for the advice */
  activationsOther: number;
  headAndLoss: number;
  /** backend peak: the sum of the above except optimizerHost and activationsOther */
  total: number;
}

export interface EstimateOptions {
  batchSize: number;
  totalParams: number;
  trainableParams: number;
  /** the largest single trainable parameter (the optimizer's temporaries while updating it) */
  largestParam: number;
  checkpoint: boolean;
  /** train.max_grad_norm: clipping makes the clipped copy of every gradient */
  clipping?: boolean;
  /** optimizer state on the backend and in host memory, bytes */
  optimizerState: { backend: number; host: number };
  /** image tokens as placeholders: the tiles the vision encoder sees per row (placeholderTiles); absent: one image, its tokens before the text */
  tilesPerRow?: number;
  /** attention's softmax runs as one native pass (core/kernels/native-direct.ts fusedAttentionActive): 4 instead of 6 length^2 tensors a head */
  fusedAttention?: boolean;
}

const F32 = 4;

/** bytes the gradient tape keeps for one block over one sample of `tokens` positions */
function blockBytes(tokens: number, width: number, mlp: number, heads: number, perHead: number): number {
  return F32 * (tokens * (20 * width + 12 * mlp) + perHead * heads * tokens * tokens);
}

export function estimateTrainingMemory(c: ShapeConfig, o: EstimateOptions): MemoryEstimate {
  const B = o.batchSize;
  const Tv = (c.vit_img_size / c.vit_patch_size) ** 2;
  const Ni = Tv / c.mp_pixel_shuffle_factor ** 2;
  const placeholders = o.tilesPerRow !== undefined;
  const Tl = placeholders ? c.lm_max_length : Ni + c.lm_max_length;
  const tiles = B * (placeholders ? o.tilesPerRow! : 1); // images through the vision encoder
  const perHead = o.fusedAttention ? 4 : 6; // length^2 tensors the tape keeps per attention head
  const vBlock = tiles * blockBytes(Tv, c.vit_hidden_dim, c.vit_inter_dim, c.vit_n_heads, perHead);
  const lBlock = B * blockBytes(Tl, c.lm_hidden_dim, c.lm_inter_dim, c.lm_n_heads, perHead);
  const full = c.vit_n_blocks * vBlock + c.lm_n_blocks * lBlock;
  // checkpointed: each block's input, plus one block's tape and its gradients during the recomputation
  const inputs = F32 * (tiles * c.vit_n_blocks * Tv * c.vit_hidden_dim + B * c.lm_n_blocks * Tl * c.lm_hidden_dim);
  const checkpointed = inputs + 2 * Math.max(vBlock, lBlock);
  const headAndLoss = 6 * F32 * B * Math.ceil(c.lm_max_length / 2) * c.lm_vocab_size;
  const parameters = F32 * o.totalParams;
  const gradients = F32 * o.trainableParams * (o.clipping ? 2 : 1);
  const optimizer = o.optimizerState.backend + 3 * F32 * o.largestParam;
  const activations = o.checkpoint ? checkpointed : full;
  return {
    parameters,
    gradients,
    optimizer,
    optimizerHost: o.optimizerState.host,
    activations,
    activationsOther: o.checkpoint ? full : checkpointed,
    headAndLoss,
    total: parameters + gradients + optimizer + activations + headAndLoss,
  };
}

/**
 * Image tokens as placeholders: the most tiles one row can bring to the vision encoder, `imagesPerRow`
 * images (train.max_images_per_example; packed: max_images_per_knapsack) of at most `maxTiles` tiles
 * each, and never more than the text holds (each tile is `imageTokens` placeholder tokens of the
 * lm_max_length).
 */
export function placeholderTiles(o: { imagesPerRow: number; maxTiles: number; imageTokens: number; maxLength: number }): number {
  return Math.max(1, Math.min(o.imagesPerRow * o.maxTiles, Math.floor(o.maxLength / o.imageTokens)));
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++;
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** "parameters 847 MiB + gradients ... = 5.1 GiB" */
export function describeEstimate(e: MemoryEstimate): string {
  const parts = [
    `parameters ${formatBytes(e.parameters)}`,
    `gradients ${formatBytes(e.gradients)}`,
    `optimizer ${formatBytes(e.optimizer)}`,
    `activations ${formatBytes(e.activations)}`,
    `head and loss ${formatBytes(e.headAndLoss)}`,
  ];
  return `${parts.join(' + ')} = ${formatBytes(e.total)}`;
}

/** What to change, most effective first, for a step that needs `e` on a backend limited to `limit`. */
export function memoryAdvice(e: MemoryEstimate, o: { batchSize: number; checkpoint: boolean; backend: string; limit: number }): string[] {
  const out: string[] = [];
  if (!o.checkpoint && e.activationsOther < e.activations)
    out.push(`train.activation_checkpointing: true (activations ${formatBytes(e.activations)} -> ${formatBytes(e.activationsOther)})`);
  if (e.optimizer > 3 * e.parameters / 8 && e.optimizerHost === 0) out.push(`optimizer.host_state: true (keeps the AdamW moments, ${formatBytes(e.optimizer)}, in host memory)`);
  if (o.batchSize > 1) {
    const perSample = (e.activations + e.headAndLoss) / o.batchSize;
    const fixed = e.total - e.activations - e.headAndLoss;
    const fits = Math.max(0, Math.floor((o.limit * 0.9 - fixed) / perSample));
    if (fits >= 1) out.push(`a smaller train.batch_size with train.grad_accum (the same effective batch): about ${Math.min(fits, o.batchSize - 1)} fits, e.g. batch_size ${pow2(Math.min(fits, o.batchSize - 1))} x grad_accum ${Math.ceil(o.batchSize / pow2(Math.min(fits, o.batchSize - 1)))}`);
  }
  out.push('fewer trainable parameters: optimizer.freeze (e.g. [vision_encoder]) or LoRA adapters (model.adapters)');
  if (o.backend === 'wasm') out.push('another backend without the 4 GiB heap limit: runtime.backend: tensorflow (npm install @tensorflow/tfjs-node)');
  return out;
}

const pow2 = (n: number) => 2 ** Math.floor(Math.log2(Math.max(1, n)));

/**
 * The limit of the backend's memory, or null where none is known (cpu / tensorflow: the machine's).
 * VLM_MEMORY_LIMIT_MIB sets a lower one (a memory budget), for any backend.
 */
export function backendLimit(backend: string, env: NodeJS.ProcessEnv = process.env): number | null {
  const budget = Number(env.VLM_MEMORY_LIMIT_MIB);
  const own = backend === 'wasm' ? WASM_HEAP_LIMIT : null;
  if (env.VLM_MEMORY_LIMIT_MIB && budget > 0) return Math.min(own ?? Infinity, budget * 2 ** 20);
  return own;
}

/** The UserError of a step that does not fit (estimated before it, or an abort during it). */
export function outOfMemoryError(what: string, e: MemoryEstimate, o: { batchSize: number; checkpoint: boolean; backend: string; limit: number }): UserError {
  const advice = memoryAdvice(e, o);
  return new UserError(`${what}: one training step at batch size ${o.batchSize} needs about ${formatBytes(e.total)} on the ${o.backend} backend (${describeEstimate(e)}), its limit is ${formatBytes(o.limit)}${o.limit === WASM_HEAP_LIMIT ? ' (the wasm heap)' : o.limit !== WASM_HEAP_LIMIT && process.env.VLM_MEMORY_LIMIT_MIB ? ' (VLM_MEMORY_LIMIT_MIB)' : ''}`, {
    where: { yamlPath: 'train.batch_size' },
    hint: `to fit, change: ${advice.map((a, i) => `(${i + 1}) ${a}`).join('; ')}`,
  });
}

/** true for the abort tfjs-backend-wasm raises when its heap cannot grow (or any emscripten abort) */
export function isWasmAbort(e: unknown): boolean {
  return e instanceof Error && e.name === 'RuntimeError' && /Aborted\(|out of memory|Cannot enlarge memory/i.test(e.message);
}

/** What the check needs of the model (core/model/vlm.ts VisionLanguageModel fits). */
export interface SizedModel {
  params: Map<string, { size: number }>;
  nanovlmConfig(): Record<string, unknown>;
}

/**
 * The estimate for training `model` with `optimizer` (its trainable parameters and state) at
 * `batchSize`, and whether it fits the backend's limit (null: no known limit).
 */
export function trainingMemory(
  model: SizedModel,
  optimizer: Pick<Optimizer, 'groups' | 'stateBytes'>,
  o: { batchSize: number; checkpoint: boolean; backend: string; clipping?: boolean; tilesPerRow?: number },
): { estimate: MemoryEstimate; limit: number | null; fits: boolean } {
  const sizes = [...model.params.values()].map((p) => p.size);
  const trainableSizes = optimizer.groups.flatMap((g) => g.params).map((n) => model.params.get(n)?.size ?? 0);
  const trainable = trainableSizes.reduce((s, n) => s + n, 0);
  const estimate = estimateTrainingMemory(model.nanovlmConfig() as unknown as ShapeConfig, {
    batchSize: o.batchSize,
    totalParams: sizes.reduce((a, b) => a + b, 0),
    trainableParams: trainable,
    largestParam: Math.max(0, ...trainableSizes), // the optimizer updates (and makes temporaries for) trainable ones only
    checkpoint: o.checkpoint,
    clipping: o.clipping,
    optimizerState: optimizer.stateBytes?.() ?? { backend: 8 * trainable, host: 0 },
    tilesPerRow: o.tilesPerRow,
    fusedAttention: o.backend === 'wasm' && fusedAttentionActive(),
  });
  const limit = backendLimit(o.backend);
  return { estimate, limit, fits: limit === null || estimate.total <= limit };
}

/** An abort of the wasm module during `what`, reported as the out-of-memory it is (never "a bug"). */
export function wasmAbortError(what: string, cause: Error, mem: { estimate: MemoryEstimate; batchSize: number; checkpoint: boolean } | null, after = ''): UserError {
  if (mem) {
    const e = outOfMemoryError(`the wasm backend ran out of memory during ${what} (${cause.message.split('\n')[0]})`, mem.estimate, { ...mem, backend: 'wasm', limit: WASM_HEAP_LIMIT });
    return new UserError(e.message + after, { where: e.where, hint: e.hint, cause });
  }
  return new UserError(`the wasm backend ran out of memory during ${what} (${cause.message.split('\n')[0]}): its heap is limited to ${formatBytes(WASM_HEAP_LIMIT)}${after}`, {
    hint: 'use a smaller batch (train.batch_size with train.grad_accum), train.activation_checkpointing: true, optimizer host_state: true, fewer trainable parameters (optimizer.freeze, LoRA adapters), or runtime.backend: tensorflow',
    cause,
  });
}

/** f(), with an abort of the wasm module turned into the UserError `onAbort` makes (any other error passes through) */
export function guardWasmAbort<T>(f: () => T, onAbort: (e: Error) => UserError): T {
  const rethrow = (e: unknown): never => {
    if (isWasmAbort(e)) throw onAbort(e as Error);
    throw e;
  };
  try {
    const r = f();
    return (r instanceof Promise ? r.catch(rethrow) : r) as T; // an async step (reads are async on GPU backends)
  } catch (e) {
    return rethrow(e);
  }
}
