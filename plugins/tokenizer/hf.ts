// A Hugging Face tokenizer: tokenizer.json (+ tokenizer_config.json) from a folder or a Hub repo,
// run by @huggingface/tokenizers (tokenizers.js). As nanoVLM's get_tokenizer (data/processors.py):
// pad = eos. The optional chat template is rendered with @huggingface/jinja.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { definePlugin } from 'nanovlm-ts/plugin-api';
import { UserError } from 'nanovlm-ts/plugin-api';
import { resolveSource } from 'nanovlm-ts/plugin-api';
import type { Tokenizer } from 'nanovlm-ts/plugin-api';

const FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

function tokenText(t: unknown): string | undefined {
  if (typeof t === 'string') return t;
  if (t && typeof t === 'object' && typeof (t as any).content === 'string') return (t as any).content;
  return undefined;
}

function readJson(path: string, where: string): any {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UserError(`cannot read ${path}: ${(e as Error).message}`, { where: { file: path, yamlPath: where }, hint: 'point `from` at a folder with a valid tokenizer.json', cause: e });
  }
}

export class HFTokenizerAdapter implements Tokenizer {
  readonly vocabSize: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly eosToken: string;
  private tok: HFTokenizer;
  private template?: Template;
  private raw: Record<string, string | Uint8Array>;

  /** extra special tokens (nanoVLM HEAD's vlm_extra_tokens): key -> id */
  readonly extraTokenIds: Record<string, number> = {};

  constructor(
    folder: string,
    opts: { chatTemplate?: string | null; eosToken?: string | null; extraSpecialTokens?: Record<string, string> | null; yamlPath?: string } = {},
  ) {
    const tjPath = join(folder, 'tokenizer.json');
    if (!existsSync(tjPath))
      throw new UserError(`no tokenizer.json in ${folder}`, { where: { yamlPath: opts.yamlPath }, hint: 'the `from` folder / repo must contain a Hugging Face fast-tokenizer file tokenizer.json' });
    const tj = readJson(tjPath, opts.yamlPath ?? '');
    const cfgPath = join(folder, 'tokenizer_config.json');
    const cfg = existsSync(cfgPath) ? readJson(cfgPath, opts.yamlPath ?? '') : {};
    this.raw = {};
    for (const f of FILES) if (existsSync(join(folder, f))) this.raw[f] = new Uint8Array(readFileSync(join(folder, f))); // published byte-identical
    // extra special tokens (transformers' `extra_special_tokens`, as nanoVLM HEAD's get_tokenizer):
    // appended after the vocabulary in the given order, matched before the BPE like added tokens
    if (opts.extraSpecialTokens) {
      const known = new Map<string, number>(Object.entries((tj.model?.vocab ?? {}) as Record<string, number>));
      for (const t of (tj.added_tokens ?? []) as { id: number; content: string }[]) known.set(t.content, t.id);
      let next = Math.max(-1, ...known.values()) + 1;
      tj.added_tokens = [...(tj.added_tokens ?? [])];
      for (const [key, token] of Object.entries(opts.extraSpecialTokens)) {
        if (!known.has(token)) {
          tj.added_tokens.push({ id: next, content: token, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
          known.set(token, next++);
        }
        this.extraTokenIds[key] = known.get(token)!;
      }
    }
    this.tok = new HFTokenizer(tj, cfg);
    const eos = opts.eosToken ?? tokenText(cfg.eos_token) ?? '<|endoftext|>';
    const eosId = this.tok.token_to_id(eos);
    if (eosId === undefined)
      throw new UserError(`eos token ${JSON.stringify(eos)} is not in the vocabulary of ${tjPath}`, { where: { yamlPath: opts.yamlPath }, hint: 'set eos_token to a token of this tokenizer' });
    this.eosToken = eos;
    this.eosTokenId = eosId;
    this.padTokenId = eosId; // nanoVLM: tokenizer.pad_token = tokenizer.eos_token
    let maxId = -1;
    for (const id of Object.values((tj.model?.vocab ?? {}) as Record<string, number>)) if (id > maxId) maxId = id;
    for (const t of (tj.added_tokens ?? []) as { id: number }[]) if (t.id > maxId) maxId = t.id;
    this.vocabSize = maxId + 1;
    const template = opts.chatTemplate ?? (typeof cfg.chat_template === 'string' ? cfg.chat_template : undefined);
    if (template) {
      try {
        this.template = new Template(template);
      } catch (e) {
        throw new UserError(`the chat template does not parse: ${(e as Error).message}`, { where: { yamlPath: opts.yamlPath }, cause: e });
      }
      if (opts.chatTemplate) {
        const c = this.raw['tokenizer_config.json'] ? JSON.parse(Buffer.from(this.raw['tokenizer_config.json']).toString('utf8')) : {};
        c.chat_template = opts.chatTemplate;
        this.raw['tokenizer_config.json'] = JSON.stringify(c, null, 2) + '\n';
      }
    }
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  encode(text: string): number[] {
    return this.tok.encode(text).ids;
  }

  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    return this.tok.decode(ids, { skip_special_tokens: !!opts.skipSpecialTokens });
  }

  applyChatTemplate(messages: { role: string; content: string }[], opts: { addGenerationPrompt?: boolean } = {}): string {
    if (!this.template) throw new UserError('this tokenizer has no chat template', { hint: 'set chat_template in the tokenizer entry of the recipe' });
    return this.template.render({ messages, add_generation_prompt: !!opts.addGenerationPrompt, eos_token: this.eosToken });
  }

  files(): Record<string, string | Uint8Array> {
    return { ...this.raw };
  }
}

export default definePlugin({
  kind: 'tokenizer',
  name: 'hf',
  // nanoVLM v0.1 loads lm_tokenizer with AutoTokenizer; a model folder's own tokenizer.json wins
  // nanoVLM v0.1's get_tokenizer(lm_tokenizer); HEAD's adds the extra tokens and the chat template
  nanovlm: {
    config: { lm_tokenizer: 'from' },
    folderFile: { file: 'tokenizer.json', option: 'from' },
    head: { config: { lm_tokenizer: 'from', lm_chat_template: 'chat_template', vlm_extra_tokens: 'extra_special_tokens' } },
  },
  description: 'Hugging Face tokenizer.json (+ tokenizer_config.json) from a folder or Hub repo, run by @huggingface/tokenizers; pad = eos as nanoVLM',
  options: {
    type: 'object',
    additionalProperties: false,
    required: ['from'],
    properties: {
      from: { type: 'string', description: 'folder with tokenizer.json, or a Hub repo id owner/name[@revision] (e.g. HuggingFaceTB/cosmo2-tokenizer)' },
      chat_template: { type: ['string', 'null'], default: null, description: 'Jinja chat template; null = the one in tokenizer_config.json, if any' },
      eos_token: { type: ['string', 'null'], default: null, description: 'eos (= pad) token text; null = eos_token of tokenizer_config.json, else <|endoftext|>' },
      extra_special_tokens: {
        type: ['object', 'null'],
        additionalProperties: { type: 'string', minLength: 1 },
        default: null,
        description: "special tokens added after the vocabulary, in order, as name: text (nanoVLM HEAD's vlm_extra_tokens: image_token: '<|image|>', ...)",
      },
    },
  },
  async create(o, ctx) {
    const folder = await resolveSource(o.from, { baseDir: ctx.recipeDir ?? '.', repoType: 'model', files: (p) => FILES.includes(p) });
    return new HFTokenizerAdapter(folder, {
      chatTemplate: o.chat_template as string | null,
      eosToken: o.eos_token as string | null,
      extraSpecialTokens: o.extra_special_tokens as Record<string, string> | null,
      yamlPath: `${ctx.yamlPath}.from`,
    });
  },
});
