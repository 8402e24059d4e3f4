// nanoVLM HEAD's chat samples (4e0c096, data/datasets.py BaseDataset / VQADataset):
//   _get_messages: each {user, assistant} turn -> two ChatML messages; the image string
//     (core/data/image-string.ts) goes before the first message's text;
//   _prepare_inputs_and_loss_mask: the whole conversation through the tokenizer's chat template,
//     then each message templated alone to find its span: an assistant message's span after the
//     template's prefix ("<|im_start|>assistant\n", `prefixLen` tokens) is the loss mask, so the
//     answer, `<|im_end|>` and the "\n" after it are trained on;
//   _get_labels: ids where the mask is set, -100 elsewhere, shifted left by one (the last is -100).
import { UserError } from '../errors.ts';
import type { Tokenizer } from '../types.ts';

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
