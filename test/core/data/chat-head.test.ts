// nanoVLM HEAD's chat samples (core/data/chat.ts) and tokenizer (the `hf` tokenizer with HEAD's
// extra special tokens and chat template) against HEAD's own output for the head-tiny fixture
// (tokenization.json: the texts, ids, loss masks and labels with the full SmolLM2 vocabulary).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DATA, needsShared } from '../../helpers/shared.ts';
import { HFTokenizerAdapter } from '../../../plugins/tokenizer/hf.ts';
import { assistantPrefixLength, chatInputs, chatMessages } from '../../../core/data/chat.ts';
import { imageString, NANOVLM_HEAD_EXTRA_TOKENS } from '../../../core/data/image-string.ts';
import { UserError } from '../../../core/errors.ts';

const HEAD = join(import.meta.dirname, '..', 'model', 'fixtures', 'head-tiny');
const cfg = JSON.parse(readFileSync(join(HEAD, 'config.json'), 'utf8'));
const tz = JSON.parse(readFileSync(join(HEAD, 'tokenization.json'), 'utf8'));
const SMOLLM2 = join(DATA, 'tokenizers', 'smollm2');
const skip = needsShared('data', 'tokenizers', 'smollm2', 'tokenizer.json');

const headTokenizer = () =>
  new HFTokenizerAdapter(SMOLLM2, { chatTemplate: cfg.lm_chat_template, eosToken: '<|im_end|>', extraSpecialTokens: NANOVLM_HEAD_EXTRA_TOKENS });

test("hf tokenizer + HEAD's extra tokens and chat template: HEAD's texts and ids (full SmolLM2 vocabulary)", skip, () => {
  const tok = headTokenizer();
  assert.equal(tok.vocabSize, 49152 + 66);
  assert.equal(tok.extraTokenIds.image_token, 49152);
  assert.equal(tok.extraTokenIds.global_image_token, 49153);
  assert.equal(tok.extraTokenIds.r8c8, 49217);
  assert.equal(tok.tokenToId('<row_2_col_3>'), 49152 + 2 + 8 + 2);
  assert.equal(tok.eosTokenId, 2);
  for (const s of tz.samples) {
    assert.equal(tok.applyChatTemplate(s.messages), s.text);
    assert.deepEqual(tok.encode(s.text), s.input_ids_full_vocab);
    assert.equal(tok.applyChatTemplate(s.messages.slice(0, 1), { addGenerationPrompt: true }), s.generation_prompt);
  }
  // skip_special_tokens drops the image tokens on decode
  assert.equal(tok.decode([49152, 49153, ...tok.encode('Hi')], { skipSpecialTokens: true }), 'Hi');
});

test("chatInputs: HEAD's loss mask (assistant spans incl. <|im_end|>\\n) and shifted labels", skip, () => {
  const tok = headTokenizer();
  assert.equal(assistantPrefixLength(tok), tz.prefix_len_full_vocab);
  for (const s of tz.samples) {
    const r = chatInputs(tok, s.messages);
    assert.deepEqual(r.inputIds, s.input_ids_full_vocab);
    assert.deepEqual(r.lossMask, s.loss_mask_full_vocab);
    assert.deepEqual(r.labels, s.labels_full_vocab);
  }
  // the trained tokens end with <|im_end|> and "\n"
  const r = chatInputs(tok, [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Yo' }]);
  const trained = r.inputIds.filter((_, i) => r.lossMask[i]);
  assert.equal(tok.decode(trained), 'Yo<|im_end|>\n');
});

test("chatMessages: turns -> ChatML messages with the image string first (HEAD's _get_messages)", () => {
  const grids: [number, number][] = [[1, 1], [1, 1]];
  const turns = tz.samples[0].messages.filter((m: { role: string }) => m.role === 'user').map((m: { content: string }, i: number) => ({
    user: i === 0 ? m.content.slice(imageString(grids, cfg.mp_image_token_length).length) : m.content,
    assistant: tz.samples[0].messages[2 * i + 1].content,
  }));
  assert.deepEqual(chatMessages(turns, imageString(grids, cfg.mp_image_token_length)), tz.samples[0].messages);
  // image tokens typed in the text are removed (HEAD warns and strips them)
  assert.deepEqual(chatMessages([{ user: 'a<|image|>b', assistant: 'c' }]), [{ role: 'user', content: 'ab' }, { role: 'assistant', content: 'c' }]);
  assert.throws(() => chatInputs({ vocabSize: 1, eosTokenId: 0, padTokenId: 0, encode: () => [], decode: () => '', files: () => ({}) }, []), UserError);
});
