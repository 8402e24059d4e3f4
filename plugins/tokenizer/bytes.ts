// A byte-level tokenizer for tiny from-scratch models: every UTF-8 byte is one token.
//   id 0          <|endoftext|>  (eos = pad, as nanoVLM: lm_eos_token_id 0 and pad_token = eos_token)
//   id 1 + b      the byte b (0..255)
// vocabSize = 257. The literal text `<|endoftext|>` inside a string encodes to id 0, like an added
// special token of a Hugging Face tokenizer, so `answer + eos_token` behaves as in nanoVLM.
import { definePlugin } from 'nanovlm-ts/plugin-api';
import type { Tokenizer } from 'nanovlm-ts/plugin-api';

export const EOS_TOKEN = '<|endoftext|>';
const OFFSET = 1;

export class BytesTokenizer implements Tokenizer {
  readonly vocabSize = 256 + OFFSET;
  readonly eosTokenId = 0;
  readonly padTokenId = 0;
  readonly eosToken = EOS_TOKEN;
  private enc = new TextEncoder();
  private dec = new TextDecoder('utf-8'); // invalid sequences become U+FFFD

  encode(text: string): number[] {
    const ids: number[] = [];
    const parts = text.split(EOS_TOKEN);
    parts.forEach((part, i) => {
      if (i > 0) ids.push(this.eosTokenId);
      for (const b of this.enc.encode(part)) ids.push(b + OFFSET);
    });
    return ids;
  }

  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    let out = '';
    let bytes: number[] = [];
    const flush = () => {
      if (bytes.length) out += this.dec.decode(new Uint8Array(bytes));
      bytes = [];
    };
    for (const id of ids) {
      if (id >= OFFSET && id < this.vocabSize) bytes.push(id - OFFSET);
      else {
        flush();
        if (id === this.eosTokenId && !opts.skipSpecialTokens) out += EOS_TOKEN;
      }
    }
    flush();
    return out;
  }

  files(): Record<string, string> {
    const spec = { type: 'bytes', offset: OFFSET, vocab_size: this.vocabSize, special_tokens: { [EOS_TOKEN]: 0 }, eos_token: EOS_TOKEN, pad_token: EOS_TOKEN };
    return { 'tokenizer_bytes.json': JSON.stringify(spec, null, 2) + '\n' };
  }
}

export default definePlugin({
  kind: 'tokenizer',
  name: 'bytes',
  description: 'Byte-level tokenizer (UTF-8 bytes at ids 1..256, <|endoftext|> = 0 = eos = pad; 257 ids) for tiny models trained from scratch',
  options: { type: 'object', additionalProperties: false, properties: {} },
  create: () => new BytesTokenizer(),
});
