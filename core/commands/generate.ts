// `vlm generate`: nanoVLM's generate.py — load a model, print the input and N generations for one
// image and prompt, streaming the tokens as they come.
//   https://github.com/huggingface/nanoVLM/blob/v0.1/generate.py
// Default: one greedy answer (what a user trying a model expects). --sample samples as v0.1's
// script does (the full softmax at temperature 1, --num 5 answers); --temperature / --top-k /
// --top-p / --sampling also sample. Generation i uses seed S + i, so a run is reproducible.
import { readFileSync, existsSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UserError } from '../errors.ts';
import { loadModel } from '../load-model.ts';
import { checkPromptBatch, generateBatch, NANOVLM_HEAD_SAMPLING, preparePrompts, type GenerateOptions } from '../generate.ts';
import { vqaPrompt } from '../data/prompt.ts';
import { prepareChatPrompts } from '../chat-prompts.ts';
import { BadSampleError } from '../data/image.ts';
import type { CommandEnv } from '../cli.ts';
import { BACKEND_CHOICES, initRuntime, type BackendChoice } from '../runtime.ts';
import { loadPluginFlags } from '../registry.ts';

export const USAGE = `Usage: vlm generate --model <run dir | model folder | owner/name[@rev]> --image <file> [options]

  --prompt <text>          question (default "What is this?"), formatted as "Question: <text> Answer:"
  --max-new-tokens <n>     tokens per generation (default 20)
  --num <n>                number of generations (default 1; 5 with --sample, as nanoVLM v0.1's script)
  --greedy                 argmax decoding (the default, unless a sampling flag is given)
  --sample                 sample instead, as nanoVLM v0.1's generate.py (full softmax, temperature 1)
  --temperature <t>        sampling temperature (samples; default 1)
  --top-k <k>              keep the k most likely tokens (default: all)
  --top-p <p>              nucleus sampling mass (default 1 = all)
  --sampling <order>       hf (default: temperature, top-k, top-p) | nanovlm-head (nanoVLM HEAD's generate:
                           top-k and top-p on the raw logits, then temperature; defaults top-k 50,
                           top-p 0.9, temperature 0.5)
  --seed <s>               sampling seed; generation i uses s + i (default 0)
  --no-stop                do not stop at eos (nanoVLM v0.1 behaviour)
  --no-cache               full recompute each step instead of the KV cache
  --backend <b>            auto | webgpu | tensorflow | wasm | cpu (default auto)
  --plugins <file|pkg>     a plugin module the model needs (repeatable); the ones recorded in the model
                           folder's nanovlm-ts.json are loaded without it`;

function num(flag: string, v: string | undefined, opts: { int?: boolean; min?: number; max?: number } = {}): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x) || (opts.int && !Number.isInteger(x)) || (opts.min !== undefined && x < opts.min) || (opts.max !== undefined && x > opts.max)) {
    const range = [opts.min !== undefined ? `>= ${opts.min}` : '', opts.max !== undefined ? `<= ${opts.max}` : ''].filter(Boolean).join(' and ');
    throw new UserError(`${flag} ${v}: expected ${opts.int ? 'an integer' : 'a number'}${range ? ' ' + range : ''}`, { hint: USAGE.split('\n')[0] });
  }
  return x;
}

export async function main(argv: string[], env: CommandEnv): Promise<number> {
  const out = env.stdout ?? process.stdout;
  let args;
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: false,
      options: {
        model: { type: 'string' },
        image: { type: 'string' },
        prompt: { type: 'string', default: 'What is this?' },
        'max-new-tokens': { type: 'string' },
        num: { type: 'string' },
        greedy: { type: 'boolean', default: false },
        sample: { type: 'boolean', default: false },
        temperature: { type: 'string' },
        'top-k': { type: 'string' },
        'top-p': { type: 'string' },
        sampling: { type: 'string' },
        seed: { type: 'string' },
        'no-stop': { type: 'boolean', default: false },
        'no-cache': { type: 'boolean', default: false },
        backend: { type: 'string', default: 'auto' },
        plugins: { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (e) {
    throw new UserError(`vlm generate: ${(e as Error).message}`, { hint: USAGE });
  }
  if (args.help) {
    out.write(USAGE + '\n');
    return 0;
  }
  if (!args.model) throw new UserError('vlm generate: --model is required', { hint: USAGE });
  if (!args.image) throw new UserError('vlm generate: --image is required', { hint: USAGE });
  if (!existsSync(args.image) || !statSync(args.image).isFile()) {
    throw new UserError(`--image ${args.image}: ${existsSync(args.image) ? 'not a file' : 'no such file'}`, { hint: 'give the path of an image file (PNG, JPEG, WebP, ...)' });
  }
  if (args.sampling !== undefined && args.sampling !== 'hf' && args.sampling !== 'nanovlm-head') {
    throw new UserError(`--sampling ${args.sampling}: expected hf or nanovlm-head`, { hint: USAGE.split('\n')[0] });
  }
  const head = args.sampling === 'nanovlm-head';
  const sampling = args.sample || args.temperature !== undefined || args['top-k'] !== undefined || args['top-p'] !== undefined || args.sampling !== undefined;
  if (args.greedy && sampling) {
    throw new UserError('vlm generate: --greedy cannot be combined with --sample/--temperature/--top-k/--top-p/--sampling', { hint: 'choose one' });
  }
  const maxNewTokens = num('--max-new-tokens', args['max-new-tokens'], { int: true, min: 1 }) ?? 20;
  const n = num('--num', args.num, { int: true, min: 1 }) ?? (args.sample ? 5 : 1);
  if (!sampling && n > 1) env.log?.warn(`--num ${n} without sampling: greedy decoding gives ${n} identical answers (add --sample for different ones)`);
  const seed = num('--seed', args.seed, { int: true, min: 0 }) ?? 0;
  const base: GenerateOptions = {
    maxNewTokens,
    greedy: !sampling,
    temperature: num('--temperature', args.temperature, { min: 0 }) ?? (head ? NANOVLM_HEAD_SAMPLING.temperature : 1),
    topK: num('--top-k', args['top-k'], { int: true, min: 0 }) ?? (head ? NANOVLM_HEAD_SAMPLING.topK : undefined),
    topP: num('--top-p', args['top-p'], { min: 0, max: 1 }) ?? (head ? NANOVLM_HEAD_SAMPLING.topP : undefined),
    order: head ? 'nanovlm-head' : 'hf',
    useCache: !args['no-cache'],
    stopAtEos: !args['no-stop'],
  };

  if (!BACKEND_CHOICES.includes(args.backend as BackendChoice)) throw new UserError(`--backend ${args.backend}: expected one of ${BACKEND_CHOICES.join(', ')}`);
  await initRuntime(args.backend as BackendChoice, { log: env.log?.debug });
  await loadPluginFlags(env.registry, args.plugins);
  const { model, tokenizer, imageProcessor, folder } = await loadModel(args.model, { registry: env.registry, log: env.log });
  try {
    out.write(`Loading weights from: ${folder}\n`);
    const image = new Uint8Array(readFileSync(args.image));
    // nanoVLM HEAD (placeholder image tokens): its generate.py's prompt, the chat template over the
    // image string + the question, the image split into tiles; v0.1: "Question: ... Answer:"
    const batch = await (model.imageTokenId !== null
      ? prepareChatPrompts(tokenizer, imageProcessor, [{ prompt: args.prompt, images: [image], id: args.image }], { imageTokenLength: model.numImageTokens })
      : preparePrompts(tokenizer, imageProcessor, [{ prompt: vqaPrompt(args.prompt), image, id: args.image }])
    ).catch((e: unknown) => {
      // an image that cannot be used (empty, undecodable, above the pixel cap): the user's input, not a bug
      if (e instanceof BadSampleError) throw new UserError(`--image ${e.message}`, { hint: 'give a PNG, JPEG, WebP, ... image file that opens in an image viewer' });
      throw e;
    });
    checkPromptBatch(model, batch);
    out.write(`\nInput:\n  ${args.prompt}\n\nOutputs:\n`);
    for (let i = 0; i < n; i++) {
      out.write(`  >> Generation ${i + 1}: `);
      // stream: decode everything so far and print what is new. A trailing U+FFFD may be an
      // incomplete UTF-8 / BPE piece that the next token completes, so it waits until the end.
      const tokens: number[] = [];
      let printed = '';
      const show = (text: string) => {
        if (text.startsWith(printed)) out.write(text.slice(printed.length));
        else out.write(`\r  >> Generation ${i + 1}: ${text}`); // an earlier piece changed: rewrite the line
        printed = text;
      };
      const decode = () => tokenizer.decode(tokens, { skipSpecialTokens: true }).replace(/\n/g, ' ');
      await generateBatch(model, batch, {
        ...base,
        eosTokenId: tokenizer.eosTokenId,
        seed: seed + i,
        onToken: (_row, tok) => {
          if (base.stopAtEos && tok === tokenizer.eosTokenId) return;
          tokens.push(tok);
          show(decode().replace(/\uFFFD+$/, ''));
        },
      });
      show(decode());
      out.write('\n');
    }
  } finally {
    model.dispose();
  }
  return 0;
}
