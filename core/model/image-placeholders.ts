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
