// Prompts in nanoVLM HEAD's format (4e0c096, generate.py and the lmms-eval wrapper): each image is
// split into tiles by an image processor with `processTiles` (plugins/image-processor/split.ts), the
// text gets get_image_string's tokens in front (core/data/image-string.ts), the user message goes
// through the tokenizer's chat template with the generation prompt, and the rows are left-padded.
// `vlm generate` and the evaluators (plugins/evaluator/common.ts) build HEAD prompts here.
// The batch's images are every tile of every row, in order (N >= 0), as the model's placeholder mode
// takes them (VisionLanguageModel.imageTokenId).
import { UserError } from './errors.ts';
import type { ImageProcessor, Tokenizer } from './types.ts';
import type { PromptBatch } from './generate.ts';
import { imageString } from './data/image-string.ts';

export interface ChatPromptItem {
  /** the user's text, without image tokens */
  prompt: string;
  /** encoded images (PNG, JPEG, ...), in the order the text refers to them */
  images: Uint8Array[];
  id?: string;
}

/** One prompt row: its token ids and the tiles of its images ([count, 3, S, S], in order). */
export interface ChatPromptRow {
  ids: number[];
  tiles: Float32Array;
  count: number;
}

/**
 * One user message in HEAD's format (generate.py; the lmms-eval wrapper's generate_until, one item):
 * each image through `processTiles`, get_image_string in front of the text, the chat template with
 * the generation prompt, then `assistantPrefix` (the wrapper's per-benchmark "Answer:", default none).
 * (generate.py has one image; the wrapper calls get_image_string once per image: `indexTags: false`.)
 * Image errors throw (BadSampleError), so that a caller can skip the item.
 */
export async function chatPromptRow(
  tokenizer: Tokenizer,
  imageProcessor: ImageProcessor,
  item: ChatPromptItem,
  opts: {
    imageTokenLength: number;
    assistantPrefix?: string;
    /** `<image: k>` before each image of a multi-image prompt (get_image_string over the list, as training); false = one call per image, as the lmms-eval wrapper (default true) */
    indexTags?: boolean;
  },
): Promise<ChatPromptRow> {
  if (!imageProcessor.processTiles) {
    throw new UserError('this model takes images as tiles (nanoVLM HEAD), but its image processor makes one tile per image', {
      hint: 'use the split image processor (max_size, resize_to_max_side) for this model',
    });
  }
  if (!tokenizer.applyChatTemplate) {
    throw new UserError('this model takes chat prompts (nanoVLM HEAD), but its tokenizer has no chat template', { hint: "set the tokenizer's chat_template (lm_chat_template)" });
  }
  const grids: [number, number][] = [];
  const parts: Float32Array[] = [];
  let count = 0;
  for (const [k, img] of item.images.entries()) {
    const t = await imageProcessor.processTiles(img, item.images.length > 1 ? `${item.id ?? 'image'} #${k}` : item.id);
    grids.push(t.grid);
    parts.push(t.tiles);
    count += t.count;
  }
  // indexTags false: get_image_string per image, as the lmms-eval wrapper calls it (no `<image: k>` tags)
  const content = (opts.indexTags === false ? grids.map((g) => imageString([g], opts.imageTokenLength)).join('') : imageString(grids, opts.imageTokenLength)) + item.prompt;
  const ids = tokenizer.encode(tokenizer.applyChatTemplate([{ role: 'user', content }], { addGenerationPrompt: true }) + (opts.assistantPrefix ?? ''));
  const tiles = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) tiles.set(p, (at += p.length) - p.length);
  return { ids, tiles, count };
}

/**
 * Rows -> one batch: ids left-padded to the longest row (at least `padTo`), the tiles of every row
 * in order. With one tile per row (nanoVLM v0.1's prompts) this is the [B, 3, S, S] batch.
 */
export function batchPromptRows(rows: ChatPromptRow[], padTokenId: number, imageSize: number, padTo = 0): PromptBatch {
  const B = rows.length;
  const T = Math.max(1, padTo, ...rows.map((r) => r.ids.length));
  const inputIds = new Int32Array(B * T).fill(padTokenId);
  const attentionMask = new Int32Array(B * T);
  rows.forEach((r, b) => {
    inputIds.set(r.ids, b * T + T - r.ids.length); // left padding
    attentionMask.fill(1, b * T + T - r.ids.length, (b + 1) * T);
  });
  const count = rows.reduce((n, r) => n + r.count, 0);
  const images = new Float32Array(rows.reduce((n, r) => n + r.tiles.length, 0));
  let at = 0;
  for (const r of rows) images.set(r.tiles, (at += r.tiles.length) - r.tiles.length);
  return { inputIds, attentionMask, images, batchSize: B, seqLen: T, imageSize, imageCount: count };
}

/** HEAD generate.py's prompts for `vlm generate`: chatPromptRow for each item, one left-padded batch. */
export async function prepareChatPrompts(
  tokenizer: Tokenizer,
  imageProcessor: ImageProcessor,
  items: ChatPromptItem[],
  opts: { imageTokenLength: number },
): Promise<PromptBatch> {
  const rows: ChatPromptRow[] = [];
  for (const it of items) rows.push(await chatPromptRow(tokenizer, imageProcessor, it, opts));
  return batchPromptRows(rows, tokenizer.padTokenId, imageProcessor.size);
}
