// Image tokens as placeholders in the text (nanoVLM HEAD 4e0c096,
// models/vision_language_model.py `_replace_img_tokens_with_embd`): the projector's output rows
// replace, in order, the token embeddings at the `<|image|>` positions of the batch (row-major over
// [B, T]), instead of being prefixed to the text as in v0.1.
//
//   token_embd [B, T, C], input_ids [B, T], image_embd [N_tiles, L, C] -> [B, T, C]
//
// `updated[mask] = image_embd.view(-1, C)`: the k-th `<|image|>` position of the flattened batch
// takes row k of the flattened image embeddings. Written as one gather from
// [token rows ; image rows], so the gradient flows to both (the embedding rows of the `<|image|>`
// token itself get none, as in PyTorch, where the assignment overwrites them).
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import { hostValues } from '../host.ts';
import { NANOVLM_HEAD_EXTRA_TOKENS } from '../data/image-string.ts';
import type { Tokenizer } from '../types.ts';
import type { VisionLanguageModel } from './vlm.ts';

/** Flat indices into [token rows (B*T) ; image rows (N*L)] for each position of [B, T]. */
export function placeholderIndex(ids: ArrayLike<number>, imageTokenId: number, imageRows: number): Int32Array {
  const idx = new Int32Array(ids.length);
  let k = 0;
  for (let i = 0; i < ids.length; i++) idx[i] = ids[i] === imageTokenId ? ids.length + k++ : i;
  if (k !== imageRows) {
    throw new UserError(
      `the batch has ${k} image placeholder tokens (id ${imageTokenId}) but the images give ${imageRows} embeddings`,
      { hint: 'each image tile needs exactly mp_image_token_length <|image|> tokens in the text (get_image_string)' },
    );
  }
  return idx;
}

/** token_embd [B, T, C] with the `<|image|>` positions replaced by image_embd [N, L, C], in order. */
export function replaceImageTokens(tokenEmbd: tf.Tensor3D, inputIds: tf.Tensor2D, imageEmbd: tf.Tensor3D | null, imageTokenId: number): tf.Tensor3D {
  const [B, T, C] = tokenEmbd.shape;
  const rows = imageEmbd ? imageEmbd.shape[0] * imageEmbd.shape[1] : 0;
  const idx = placeholderIndex(hostValues(inputIds, 'input ids') as Int32Array, imageTokenId, rows); // host: ids are small (GPU backends: toHost first, core/host.ts)
  if (!imageEmbd) return tokenEmbd.clone();
  return tf.tidy(() => {
    const table = tf.concat([tokenEmbd.reshape([B * T, C]), imageEmbd.reshape([rows, C])], 0); // [B*T + N*L, C]
    return tf.gather(table, tf.tensor1d(idx, 'int32')).reshape([B, T, C]) as tf.Tensor3D;
  });
}

/**
 * model.image_tokens: placeholders for a model built from a recipe: the `<|image|>` id comes from the
 * tokenizer, which must hold HEAD's vlm_extra_tokens as consecutive ids after its base vocabulary
 * (HEAD's get_tokenizer), and the VLMConfig fields HEAD saves are recorded so that the checkpoint's
 * config.json describes this model to nanoVLM HEAD (`imageProcessorConfig`: HEAD fields the image
 * processor's plugin maps, e.g. max_img_size).
 */
export function usePlaceholderTokens(model: VisionLanguageModel, tokenizer: Tokenizer, imageProcessorConfig: Record<string, unknown> = {}): void {
  const extras = Object.entries(NANOVLM_HEAD_EXTRA_TOKENS).filter(([, t]) => tokenizer.tokenToId?.(t) !== undefined);
  const imageId = tokenizer.tokenToId?.(NANOVLM_HEAD_EXTRA_TOKENS.image_token);
  if (imageId === undefined || extras[0]?.[0] !== 'image_token') {
    throw new UserError('model.image_tokens: placeholders needs a tokenizer with nanoVLM HEAD\'s image tokens (<|image|>, <|global_image|>, <row_i_col_j>)', {
      where: { yamlPath: 'model.tokenizer' },
      hint: "give the tokenizer HEAD's vlm_extra_tokens (e.g. the hf tokenizer's extra_special_tokens) and its chat template",
    });
  }
  const base = imageId;
  extras.forEach(([key, t], i) => {
    if (tokenizer.tokenToId!(t) !== base + i) {
      throw new UserError(`the tokenizer's ${t} (${key}) is id ${tokenizer.tokenToId!(t)}, but nanoVLM HEAD's extra tokens are consecutive ids after the base vocabulary (expected ${base + i})`, {
        where: { yamlPath: 'model.tokenizer' },
        hint: "list the extra tokens in HEAD's order (vlm_extra_tokens)",
      });
    }
  });
  if (model.decoder.vocabSize < base + extras.length) {
    throw new UserError(`model.decoder.vocab_size ${model.decoder.vocabSize} cannot hold the tokenizer's ${base} base tokens + ${extras.length} image tokens`, {
      where: { yamlPath: 'model.decoder.vocab_size' },
      hint: `set vocab_size to at least ${base + extras.length} (nanoVLM HEAD: lm_base_vocab_size + extra_token_amount)`,
    });
  }
  model.imageTokenId = imageId;
  Object.assign(model.configOverrides, {
    lm_base_vocab_size: base,
    extra_token_amount: extras.length,
    vlm_extra_tokens: Object.fromEntries(extras),
    mp_image_token_length: model.numImageTokens,
    ...imageProcessorConfig,
  });
}
