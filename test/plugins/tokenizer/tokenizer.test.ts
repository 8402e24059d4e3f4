// Tokenizer plugins: hf (real SmolLM2 tokenizer, README reference ids, chat template) and bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DATA, needsShared } from '../../helpers/shared.ts';
import hfPlugin, { HFTokenizerAdapter } from '../../../plugins/tokenizer/hf.ts';
import bytesPlugin, { BytesTokenizer } from '../../../plugins/tokenizer/bytes.ts';
import { UserError } from '../../../core/errors.ts';

const SMOL = join(DATA, 'tokenizers', 'smollm2');
const NANOVLM_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const ctx = (over: object = {}) => ({ recipe: {}, recipeDir: process.cwd(), yamlPath: 'model.tokenizer', seed: 0, log: console, registry: {} as any, ...over }) as any;

test('hf: SmolLM2 reference ids from the data README, eos = pad = 0, vocab 49152', needsShared('data', 'tokenizers', 'smollm2'), async () => {
  const tok = (await hfPlugin.create({ from: SMOL, chat_template: null, eos_token: null } as any, ctx())) as HFTokenizerAdapter;
  assert.equal(tok.vocabSize, 49152);
  assert.equal(tok.eosTokenId, 0);
  assert.equal(tok.padTokenId, 0);
  const ref: [string, number[]][] = [
    ['Question: What is this? Answer:', [17872, 42, 1812, 314, 451, 47, 19842, 42]],
    ['a cat on 12 mats', [81, 2644, 335, 216, 33, 34, 30486]],
    ['<|im_start|>user\nWhat is this?<|im_end|>\n<|im_start|>assistant\n', [1, 4093, 198, 1780, 314, 451, 47, 2, 198, 1, 520, 9531, 198]],
    ['Ünïcödé 🐱 naïve — 日本語\nsecond line\n\ttabbed  end', [142, 246, 94, 25972, 83, 7466, 84, 2756, 15107, 234, 126, 15486, 46494, 1841, 17097, 241, 115, 40993, 179, 120, 248, 198, 12247, 1761, 198, 197, 15999, 5776, 216, 1112]],
    ['Hello, world!', [19556, 28, 905, 17]],
    ['The year 2026 had 365 days.', [504, 713, 216, 34, 32, 34, 38, 761, 216, 35, 38, 37, 2009, 30]],
    ['Once upon a time', [6403, 1980, 253, 655]],
  ];
  for (const [s, ids] of ref) {
    assert.deepEqual(tok.encode(s), ids, s);
    assert.equal(tok.decode(ids), s);
  }
  assert.equal(tok.decode([1, 4093, 198, 26843, 2], { skipSpecialTokens: true }), 'user\nHi');
  const files = tok.files();
  assert.deepEqual(Object.keys(files).sort(), ['special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
  assert.equal((files['tokenizer.json'] as Uint8Array).length, 2104556); // byte-identical to the original
});

test('hf: chat template from the recipe (nanoVLM template) and from tokenizer_config.json (Instruct)', needsShared('data', 'tokenizers', 'smollm2', 'instruct'), () => {
  const tok = new HFTokenizerAdapter(SMOL, { chatTemplate: NANOVLM_TEMPLATE });
  const s = tok.applyChatTemplate([{ role: 'user', content: 'What is this?' }], { addGenerationPrompt: true });
  assert.equal(s, '<|im_start|>user\nWhat is this?<|im_end|>\n<|im_start|>assistant\n');
  assert.deepEqual(tok.encode(s), [1, 4093, 198, 1780, 314, 451, 47, 2, 198, 1, 520, 9531, 198]);
  assert.match(String(tok.files()['tokenizer_config.json']), /im_start/); // published with the template
  // the Instruct config carries its own template and eos <|im_end|> (= pad)
  const dir = mkdtempSync(join(tmpdir(), 'tok-'));
  try {
    copyFileSync(join(SMOL, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    copyFileSync(join(SMOL, 'instruct', 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
    const inst = new HFTokenizerAdapter(dir);
    assert.equal(inst.eosTokenId, 2);
    assert.equal(inst.padTokenId, 2);
    assert.equal(
      inst.applyChatTemplate([{ role: 'user', content: 'Hi' }]),
      '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.throws(() => new HFTokenizerAdapter(SMOL).applyChatTemplate([{ role: 'user', content: 'x' }]), UserError);
});

test('hf: a folder without tokenizer.json is a UserError naming the YAML path', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tok-'));
  try {
    await assert.rejects(hfPlugin.create({ from: dir } as any, ctx()) as Promise<unknown>, (e: any) => e instanceof UserError && /no tokenizer\.json/.test(e.message) && e.where.yamlPath === 'model.tokenizer.from');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bytes: utf-8 round trip, eos literal = id 0, 257 ids', async () => {
  const tok = (await bytesPlugin.create({} as any, ctx())) as BytesTokenizer;
  assert.equal(tok.vocabSize, 257);
  assert.equal(tok.eosTokenId, 0);
  assert.equal(tok.padTokenId, 0);
  for (const s of ['Answer:red', 'naïve 東京 🙂', '']) assert.equal(tok.decode(tok.encode(s)), s);
  assert.deepEqual(tok.encode('A<|endoftext|>'), [66, 0]);
  assert.equal(tok.decode([66, 0]), 'A<|endoftext|>');
  assert.equal(tok.decode([66, 0, 67], { skipSpecialTokens: true }), 'AB');
  assert.ok(Math.max(...tok.encode('ÿ\u{10FFFF}')) <= 256);
  assert.ok('tokenizer_bytes.json' in tok.files());
});
