// The vision-language model of nanoVLM v0.1 (models/vision_language_model.py):
//   image -> vision encoder -> projector = image embeddings [B, Ni, C]; prepended to the token
//   embeddings; the decoder runs over [image ; text] with a mask of 1s for the image tokens; logits
//   of the text part; loss = cross-entropy with ignore index -100, mean over counted tokens.
// With `imageTokenId` set, nanoVLM HEAD's (4e0c096) instead: the image embeddings of all tiles of the
// batch replace the `<|image|>` placeholders of the text (_replace_img_tokens_with_embd), no prefix.
// Parameters are keyed by nanoVLM's full state-dict names: "vision_encoder.", "MP.", "decoder." + the
// component's local name.
import * as tf from '@tensorflow/tfjs';
import type { Adapter, Decoder, Module, Projector, VisionEncoder } from '../types.ts';
import { UserError } from '../errors.ts';
import { crossEntropyIgnore } from '../ops.ts';
import { hostValues } from '../host.ts';
import { toHeadVLMConfig, toVLMConfig } from './config.ts';
import { replaceImageTokens } from './image-placeholders.ts';

export const PREFIX = { vision: 'vision_encoder.', projector: 'MP.', decoder: 'decoder.' } as const;

export interface TrainBatch {
  images: tf.Tensor4D;
  inputIds: tf.Tensor2D;
  attentionMask: tf.Tensor2D | null;
  targets: tf.Tensor2D;
  /** packed rows with a block-diagonal mask: [B, T] sample ids (HostBatch.segmentIds) */
  segmentIds?: Int32Array;
}

/** training: dropout on; checkpoint: activation checkpointing per block (train.activation_checkpointing) */
export interface ForwardOptions {
  training?: boolean;
  checkpoint?: boolean;
  /** packed rows with a block-diagonal mask: [B, T] sample ids on the host (0 = padding); HEAD layout only */
  segments?: Int32Array | null;
}

export class VisionLanguageModel {
  readonly vision: VisionEncoder;
  readonly projector: Projector;
  readonly decoder: Decoder;
  /** all trainable parameters by full nanoVLM name (the tied head is the embedding, listed once) */
  readonly params: Map<string, tf.Variable>;
  /** non-trainable state-dict tensors by full name (decoder.rotary_embd.inv_freq) */
  readonly buffers: Map<string, tf.Tensor>;
  readonly numImageTokens: number;
  readonly imageSize: number;
  readonly maxLength: number;
  /** VLMConfig fields to record as they were loaded (string fields such as lm_tokenizer) */
  configOverrides: Record<string, unknown> = {};
  /**
   * nanoVLM HEAD's input format: the id of `<|image|>`, whose positions in the text take the image
   * embeddings in order (core/model/image-placeholders.ts). null = v0.1: the image embeddings are
   * prefixed to the text, one image per row.
   */
  imageTokenId: number | null = null;
  /** model.adapters (addAdapter): their parameters are in `params`, the base model's are frozen */
  readonly adapters: Adapter[] = [];

  constructor(parts: { vision: VisionEncoder; projector: Projector; decoder: Decoder }) {
    this.vision = parts.vision;
    this.projector = parts.projector;
    this.decoder = parts.decoder;
    this.numImageTokens = this.projector.outTokens(this.vision.numTokens);
    this.imageSize = this.vision.imageSize;
    this.maxLength = this.decoder.maxLength;
    this.params = new Map();
    this.buffers = new Map();
    for (const [key, mod] of [
      ['vision', this.vision],
      ['projector', this.projector],
      ['decoder', this.decoder],
    ] as const) {
      for (const [n, v] of mod.params) this.params.set(PREFIX[key] + n, v);
      for (const [n, t] of mod.buffers ?? []) this.buffers.set(PREFIX[key] + n, t);
    }
  }

  /**
   * Attach an adapter (model.adapters[i]): each of its layers gets its LinearAdapter (the module's
   * adaptedLinear adds it), its parameters join the module's and the model's (full names), and
   * every base parameter is frozen (tf.Variable.trainable false), as PEFT's get_peft_model does.
   */
  addAdapter(adapter: Adapter, yamlPath = 'model.adapters'): void {
    for (const v of this.params.values()) if (!this.adapterParams().has(v)) v.trainable = false;
    const moduleOf = (full: string): [Module, string] => {
      for (const key of ['vision', 'projector', 'decoder'] as const) if (full.startsWith(PREFIX[key])) return [this[key], full.slice(PREFIX[key].length)];
      throw new UserError(`adapter "${adapter.name}": "${full}" is in no module of the model`, { where: { yamlPath } });
    };
    for (const layer of adapter.layers) {
      const [mod, local] = moduleOf(layer);
      const taken = mod.adapters?.has(local);
      if (taken) throw new UserError(`layer "${layer}" is adapted twice`, { where: { yamlPath }, hint: 'each linear layer may be a target of one model.adapters entry only' });
      (mod.adapters ??= new Map()).set(local, adapter.linear(layer));
    }
    for (const [name, v] of adapter.params) {
      if (this.params.has(name)) throw new UserError(`adapter parameter "${name}" already exists`, { where: { yamlPath } });
      const [mod, local] = moduleOf(name);
      mod.params.set(local, v); // the module's blocks see it (activation checkpointing recomputes with it)
      this.params.set(name, v);
    }
    this.adapters.push(adapter);
  }

  /** the adapters' parameters */
  adapterParams(): Set<tf.Variable> {
    return new Set(this.adapters.flatMap((a) => [...a.params.values()]));
  }

  /** [B, 3, S, S] -> [B, Ni, C] */
  embedImages(images: tf.Tensor4D, opts: ForwardOptions = {}): tf.Tensor3D {
    return this.projector.forward(this.vision.forward(images, opts));
  }

  /** Positions before the text in the decoder's input: Ni image tokens (v0.1), 0 with placeholders (HEAD). */
  get imagePrefix(): number {
    return this.imageTokenId === null ? this.numImageTokens : 0;
  }

  /** The decoder's mask, float32: [B, Ni] of ones + attention mask [B, T] -> [B, Ni + T] (v0.1), the mask itself (HEAD) */
  fullMask(attentionMask: tf.Tensor2D, batchSize: number): tf.Tensor2D {
    // built on the host from the text mask's host copy (core/host.ts), so that a decoder reading it
    // on the host (skip_padding positions) can, on GPU backends too
    const m = hostValues(attentionMask, 'attention mask');
    const T = attentionMask.shape[1];
    const Ni = this.imagePrefix;
    const full = new Float32Array(batchSize * (Ni + T)).fill(1); // [B, Ni + T]
    for (let b = 0; b < batchSize; b++) for (let t = 0; t < T; t++) full[b * (Ni + T) + Ni + t] = m[b * T + t];
    return tf.tensor2d(full, [batchSize, Ni + T]);
  }

  /**
   * The decoder's input embeddings [B, prefix + T, C]: v0.1 [image ; text] (images [B, 3, S, S], one
   * per row); HEAD the text with its `<|image|>` positions replaced by the image embeddings (images:
   * every tile of the batch [N, 3, S, S] in text order; N = 0 skips the vision encoder).
   */
  inputEmbeddings(inputIds: tf.Tensor2D, images: tf.Tensor4D | null, opts: ForwardOptions = {}): tf.Tensor3D {
    const tokenEmbd = this.decoder.embed(inputIds); // [B, T, C]
    if (this.imageTokenId !== null) {
      const imageEmbd = images && images.shape[0] > 0 ? this.embedImages(images, opts) : null; // [N, Ni, C]
      return replaceImageTokens(tokenEmbd, inputIds, imageEmbd, this.imageTokenId); // [B, T, C]
    }
    return tf.concat([this.embedImages(images!, opts), tokenEmbd], 1) as tf.Tensor3D; // [B, Ni + T, C]
  }

  /** Decoder hidden states after the final norm: [B, prefix + T, C]. */
  hidden(
    inputIds: tf.Tensor2D,
    images: tf.Tensor4D,
    attentionMask: tf.Tensor2D | null,
    opts: ForwardOptions = {},
  ): tf.Tensor3D {
    // adapters in training mode (their dropout on) for this pass only, as PyTorch's model.train()
    const dropping = this.adapters.find((a) => a.dropout > 0);
    if (opts.training && opts.checkpoint && dropping) {
      throw new UserError(`train.activation_checkpointing cannot recompute adapter "${dropping.name}": its dropout ${dropping.dropout} would draw other randomness`, {
        where: { yamlPath: 'train.activation_checkpointing' },
        hint: 'set the adapter\'s dropout to 0 (model.adapters[i].dropout) or train.activation_checkpointing: false',
      });
    }
    for (const a of this.adapters) a.training = !!opts.training;
    try {
      const x = this.inputEmbeddings(inputIds, images, opts); // [B, prefix + T, C]
      const mask = attentionMask ? this.fullMask(attentionMask, inputIds.shape[0]) : null;
      if (opts.segments && this.imagePrefix) throw new Error('packed segments need image tokens as placeholders (no image prefix)');
      return this.decoder.forward(x, { mask, training: opts.training, checkpoint: opts.checkpoint, ...(opts.segments ? { segments: opts.segments } : {}) });
    } finally {
      for (const a of this.adapters) a.training = false;
    }
  }

  /** Logits of the text part [B, T, V]. */
  forward(
    inputIds: tf.Tensor2D,
    images: tf.Tensor4D,
    attentionMask: tf.Tensor2D | null,
    opts: ForwardOptions = {},
  ): tf.Tensor3D {
    return tf.tidy(() => {
      const h = this.hidden(inputIds, images, attentionMask, opts); // [B, prefix + T, C]
      const text = h.slice([0, this.imagePrefix, 0], [-1, -1, -1]) as tf.Tensor3D; // [B, T, C]
      return this.decoder.head(text); // [B, T, V]
    });
  }

  /** F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100) */
  loss(logits: tf.Tensor3D, targets: tf.Tensor2D): tf.Scalar {
    return tf.tidy(() => crossEntropyIgnore(logits, targets));
  }

  /**
   * loss(forward(...), targets) with training on, computing the head only on the text positions
   * whose target is counted (not -100): the ignored ones add nothing to the loss nor to any
   * gradient, and on nanoVLM batches they are about half of the positions (the prompt and
   * padding), so the largest product of the step (hidden x the vocabulary) and the log-softmax
   * over the vocabulary shrink accordingly. The counted rows are found on the host (targets are small).
   * Its gradients: core/train/grads.ts lossAndGrads (training depends on the model, not the reverse).
   */
  trainingLoss(batch: TrainBatch, checkpoint = false): tf.Scalar {
    const [B, T] = batch.targets.shape;
    const targets = hostValues(batch.targets, 'targets'); // GPU backends: the caller awaited toHost(batch.targets)
    const rows: number[] = [];
    for (let i = 0; i < B * T; i++) if (targets[i] !== -100) rows.push(i);
    if (rows.length === 0) {
      return crossEntropyIgnore(this.forward(batch.inputIds, batch.images, batch.attentionMask, { training: true, checkpoint, segments: batch.segmentIds }), batch.targets); // NaN, as F.cross_entropy
    }
    return tf.tidy(() => {
      const logits = this.logitsAt(batch.inputIds, batch.images, batch.attentionMask, rows, { training: true, checkpoint, segments: batch.segmentIds }); // [N, V]
      const picked = tf.gather(batch.targets.reshape([B * T]), tf.tensor1d(rows, 'int32')).reshape([1, rows.length]) as tf.Tensor2D; // [1, N]
      return crossEntropyIgnore(logits.reshape([1, rows.length, -1]) as tf.Tensor3D, picked);
    });
  }

  /**
   * The logits [N, V] of the text positions `rows` only (flat indices b * T + t into [B, T]): the
   * head, the largest product of the model ([positions, C] x [C, vocab]), runs on those rows alone.
   * Used for the training loss (the counted targets) and for scoring answers (evaluators).
   */
  logitsAt(inputIds: tf.Tensor2D, images: tf.Tensor4D, attentionMask: tf.Tensor2D | null, rows: number[], opts: ForwardOptions = {}): tf.Tensor2D {
    return tf.tidy(() => {
      const [B, T] = inputIds.shape;
      const h = this.hidden(inputIds, images, attentionMask, opts); // [B, prefix + T, C]
      const C = h.shape[2];
      const text = h.slice([0, this.imagePrefix, 0], [-1, -1, -1]).reshape([B * T, C]); // [B*T, C]
      const counted = tf.gather(text, tf.tensor1d(rows, 'int32')).reshape([1, rows.length, C]) as tf.Tensor3D; // [1, N, C]
      const logits = this.decoder.head(counted); // [1, N, V]
      return logits.reshape([rows.length, logits.shape[2]]) as tf.Tensor2D;
    });
  }

  /** Exactly nanoVLM VLMConfig's fields, in order. */
  nanovlmConfig(): Record<string, unknown> {
    const parts = {
      ...this.vision.nanovlmConfig(),
      ...this.projector.nanovlmConfig(),
      ...this.decoder.nanovlmConfig(),
      vlm_load_backbone_weights: false,
      ...this.configOverrides,
    };
    // HEAD's VLMConfig (without lm_eos_token_id, which it rejects) for a placeholder-token model
    return this.imageTokenId !== null ? toHeadVLMConfig(parts) : toVLMConfig(parts);
  }

  parameterCounts(): { vision_encoder: number; MP: number; decoder: number; total: number } {
    const adapterVars = this.adapterParams(); // the base model's counts
    const count = (m: { params: Map<string, tf.Variable> }) => [...m.params.values()].reduce((a, v) => a + (adapterVars.has(v) ? 0 : v.size), 0);
    const vision_encoder = count(this.vision);
    const MP = count(this.projector);
    const decoder = count(this.decoder);
    return { vision_encoder, MP, decoder, total: vision_encoder + MP + decoder };
  }

  dispose(): void {
    this.vision.dispose();
    this.projector.dispose();
    this.decoder.dispose(); // the adapters' parameters are the modules' too
    for (const a of this.adapters) a.dispose();
  }
}
