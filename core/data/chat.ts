// nanoVLM HEAD's chat samples (4e0c096, data/datasets.py BaseDataset / VQADataset):
//   _get_messages: each {user, assistant} turn -> two ChatML messages; the image string
//     (core/data/image-string.ts) goes before the first message's text;
//   _prepare_inputs_and_loss_mask: the whole conversation through the tokenizer's chat template,
//     then each message templated alone to find its span: an assistant message's span after the
//     template's prefix ("<|im_start|>assistant\n", `prefixLen` tokens) is the loss mask, so the
//     answer, `<|im_end|>` and the "\n" after it are trained on;
//   _get_labels: ids where the mask is set, -100 elsewhere, shifted left by one (the last is -100);
//   _process_data (prepareChatSample): a dataset Sample (its `images` and `turns`, or the one image
//     and question/answer) -> tiles of every image + the above.
import { UserError } from '../errors.ts';
import type { ImageProcessor, Sample, Tokenizer } from '../types.ts';
import type { ChatSample } from './chat-collator.ts';
import { HEAD_IMAGE_TOKENS, imageString } from './image-string.ts';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatTurn {
  user: string;
  assistant: string;
}

export interface ChatInputs {
  inputIds: number[];
  /** 1 where the token is trained on (assistant spans) */
  lossMask: number[];
  /** next-token targets: -100 where not trained on */
  labels: number[];
}

function template(tokenizer: Tokenizer): (messages: ChatMessage[], addGenerationPrompt?: boolean) => string {
  if (!tokenizer.applyChatTemplate) {
    throw new UserError('this tokenizer has no chat template, which chat samples need', {
      hint: "set chat_template in the tokenizer entry (nanoVLM HEAD's lm_chat_template)",
    });
  }
  return (m, g = false) => tokenizer.applyChatTemplate!(m, { addGenerationPrompt: g });
}

/** _get_messages: turns -> messages, the image string in front of the first one (texts' own image tokens removed, as HEAD) */
export function chatMessages(turns: ChatTurn[], imageString = '', imageToken = '<|image|>'): ChatMessage[] {
  const messages: ChatMessage[] = [];
  for (const t of turns) {
    messages.push({ role: 'user', content: t.user.split(imageToken).join('') });
    messages.push({ role: 'assistant', content: t.assistant.split(imageToken).join('') });
  }
  if (messages.length && imageString) messages[0] = { ...messages[0], content: imageString + messages[0].content };
  return messages;
}

/** _get_prefix_len: the number of tokens the template puts before an assistant message's content */
export function assistantPrefixLength(tokenizer: Tokenizer): number {
  const marker = 'xzyvd';
  const text = template(tokenizer)([{ role: 'assistant', content: marker }]);
  return tokenizer.encode(text.slice(0, text.indexOf(marker))).length;
}

/** _prepare_inputs_and_loss_mask + _get_labels */
export function chatInputs(tokenizer: Tokenizer, messages: ChatMessage[], prefixLen = assistantPrefixLength(tokenizer)): ChatInputs {
  const render = template(tokenizer);
  const inputIds = tokenizer.encode(render(messages));
  const lossMask = new Array<number>(inputIds.length).fill(0);
  let cursor = 0;
  for (const m of messages) {
    const len = tokenizer.encode(render([m])).length;
    if (m.role === 'assistant') for (let i = cursor + prefixLen; i < Math.min(cursor + len, inputIds.length); i++) lossMask[i] = 1;
    cursor += len;
  }
  const labels = inputIds.map((id, i) => (lossMask[i] ? id : -100));
  labels.push(labels.shift()!); // roll(-1)
  if (labels.length) labels[labels.length - 1] = -100;
  return { inputIds, lossMask, labels };
}

// ---- one dataset sample -> a chat sample (HEAD VQADataset._process_data) ----------------------------

export interface ChatDataOptions {
  /** mp_image_token_length: `<|image|>` tokens per tile (the projector's output tokens) */
  imageTokenLength: number;
  /** HEAD TrainConfig.max_images_per_example (4): samples with more images are left out */
  maxImagesPerExample: number;
}

/** A sample in HEAD's chat format, ready for collateChat (core/data/chat-collator.ts) or packing. */
export interface PreparedChat extends ChatSample {
  /** the tiles of each image [count_k, 3, S, S], in order (packing keeps them per image) */
  perImage: Float32Array[];
}

/** what is wrong with a sample for the chat format, or null (a sample without images is fine) */
export function chatSampleProblem(s: Sample): string | null {
  if (s.problem) return s.problem;
  const turns = sampleTurns(s);
  if (!turns.length) return 'no conversation turn';
  if (turns.some((t) => typeof t.user !== 'string' || typeof t.assistant !== 'string')) return 'a turn without user or assistant text';
  if (!turns.some((t) => t.assistant.trim())) return 'empty answer';
  if (sampleImages(s).some((im) => !(im instanceof Uint8Array) || im.length === 0)) return 'empty image (0 bytes)';
  return null;
}

/** the sample's images: `images`, else `image` when it has bytes, else none */
export function sampleImages(s: Sample): Uint8Array[] {
  if (s.images) return s.images;
  return s.image instanceof Uint8Array && s.image.length ? [s.image] : [];
}

/** the sample's turns: `turns`, else one turn (question -> target ?? answer) */
export function sampleTurns(s: Sample): ChatTurn[] {
  if (s.turns) return s.turns;
  return typeof s.question === 'string' ? [{ user: s.question, assistant: s.target ?? s.answer }] : [];
}

/**
 * HEAD's VQADataset._process_data: every image through the image processor (tiles and grid; a
 * processor without `processTiles` gives one tile, grid 1 x 1), get_image_string before the first
 * user message, the conversation through the chat template, loss mask and shifted labels. Image
 * errors throw (the loader counts the sample as bad).
 */
export async function prepareChatSample(
  s: Sample,
  tokenizer: Tokenizer,
  imageProcessor: ImageProcessor,
  o: ChatDataOptions & { prefixLen: number },
): Promise<PreparedChat> {
  const images = sampleImages(s);
  const globalToken = tokenizer.tokenToId?.(HEAD_IMAGE_TOKENS.global!) !== undefined;
  const perImage: Float32Array[] = [];
  const grids: [number, number][] = [];
  const px = 3 * imageProcessor.size * imageProcessor.size;
  for (const [k, img] of images.entries()) {
    const id = images.length > 1 ? `${s.id} image ${k}` : s.id;
    let { tiles, count, grid } = imageProcessor.processTiles ? await imageProcessor.processTiles(img, id) : { tiles: await imageProcessor.process(img, id), count: 1, grid: [1, 1] as [number, number] };
    // HEAD: a tokenizer without a global-image token gets no global view
    if (!globalToken && count === grid[0] * grid[1] + 1) [tiles, count] = [tiles.subarray(px), count - 1];
    perImage.push(tiles);
    grids.push(grid);
  }
  const tokens = globalToken ? HEAD_IMAGE_TOKENS : { ...HEAD_IMAGE_TOKENS, global: null };
  const messages = chatMessages(sampleTurns(s), images.length ? imageString(grids, o.imageTokenLength, tokens) : '', HEAD_IMAGE_TOKENS.image);
  const { inputIds, labels } = chatInputs(tokenizer, messages, o.prefixLen);
  const tileCount = perImage.reduce((n, t) => n + t.length / px, 0);
  const tiles = new Float32Array(tileCount * px);
  let at = 0;
  for (const t of perImage) tiles.set(t, (at += t.length) - t.length);
  return { id: s.id, inputIds, labels, tiles, tileCount, imageCount: images.length, perImage };
}
