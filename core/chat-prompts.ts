// Prompts in nanoVLM HEAD's format (4e0c096, generate.py and the lmms-eval wrapper): each image is
// split into tiles by an image processor with `processTiles` (plugins/image-processor/split.ts), the
// text gets get_image_string's tokens in front (core/data/image-string.ts), the user message goes
// through the tokenizer's chat template with the generation prompt, and the rows are left-padded.
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

export async function prepareChatPrompts(
  tokenizer: Tokenizer,
  imageProcessor: ImageProcessor,
  items: ChatPromptItem[],
  opts: { imageTokenLength: number },
): Promise<PromptBatch> {
  if (!imageProcessor.processTiles) {
    throw new UserError('this model takes images as tiles (nanoVLM HEAD), but its image processor makes one tile per image', {
      hint: 'use the split image processor (max_size, resize_to_max_side) for this model',
    });
  }
  if (!tokenizer.applyChatTemplate) {
    throw new UserError('this model takes chat prompts (nanoVLM HEAD), but its tokenizer has no chat template', { hint: "set the tokenizer's chat_template (lm_chat_template)" });
  }
  const S = imageProcessor.size;
  const px = 3 * S * S;
  const rows: number[][] = [];
  const tiles: Float32Array[] = [];
  let count = 0;
  for (const it of items) {
    const grids: [number, number][] = [];
    for (const [k, img] of it.images.entries()) {
      const t = await imageProcessor.processTiles(img, it.images.length > 1 ? `${it.id ?? 'image'} #${k}` : it.id);
      grids.push(t.grid);
      tiles.push(t.tiles);
      count += t.count;
    }
    const content = imageString(grids, opts.imageTokenLength) + it.prompt;
    rows.push(tokenizer.encode(tokenizer.applyChatTemplate([{ role: 'user', content }], { addGenerationPrompt: true })));
  }
  const B = items.length;
  const T = Math.max(1, ...rows.map((r) => r.length));
  const inputIds = new Int32Array(B * T).fill(tokenizer.padTokenId);
  const attentionMask = new Int32Array(B * T);
  rows.forEach((r, b) => {
    inputIds.set(r, b * T + T - r.length); // left padding
    attentionMask.fill(1, b * T + T - r.length, (b + 1) * T);
  });
  const images = new Float32Array(count * px);
  let at = 0;
  for (const t of tiles) {
    images.set(t, at);
    at += t.length;
  }
  return { inputIds, attentionMask, images, batchSize: B, seqLen: T, imageSize: S, imageCount: count };
}
