// The head-tiny fixture (test/core/model/fixtures/head-tiny, made by nanoVLM HEAD's own code through
// bench/reference/nanovlm_head.py) as a user would have its pieces: the tokenizer its vocabulary was
// made with (SmolLM2's truncated to lm_base_vocab_size ids: the reference script's stand-in rule,
// merges whose parts and result are kept, + SmolLM2-Instruct's tokenizer_config.json), its raw
// pictures as PNG, and its two chat samples (turns without the image string, images).
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { DATA } from './shared.ts';
import { readSafetensors } from '../../core/weights/safetensors.ts';

export const HEAD_TINY = join(import.meta.dirname, '..', 'core', 'model', 'fixtures', 'head-tiny');
export const headTinyConfig = () => JSON.parse(readFileSync(join(HEAD_TINY, 'config.json'), 'utf8'));
export const headTinyTokenization = () => JSON.parse(readFileSync(join(HEAD_TINY, 'tokenization.json'), 'utf8'));

/** writes tokenizer.json + tokenizer_config.json of the fixture's vocabulary into `dir` (made if needed); returns dir */
export function writeHeadTinyTokenizer(dir: string): string {
  if (existsSync(join(dir, 'tokenizer.json'))) return dir;
  mkdirSync(dir, { recursive: true });
  const SMOLLM2 = join(DATA, 'tokenizers', 'smollm2');
  const base = headTinyConfig().lm_base_vocab_size as number;
  const tj = JSON.parse(readFileSync(join(SMOLLM2, 'tokenizer.json'), 'utf8'));
  const vocab = Object.fromEntries(Object.entries(tj.model.vocab as Record<string, number>).filter(([, id]) => id < base));
  tj.model.vocab = vocab;
  tj.model.merges = (tj.model.merges as string[]).filter((m) => {
    const [a, b] = m.split(' ');
    return a + b in vocab && a in vocab && b in vocab;
  });
  tj.added_tokens = (tj.added_tokens as { id: number }[]).filter((t) => t.id < base);
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tj));
  copyFileSync(join(SMOLLM2, 'instruct', 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  return dir;
}

/** raw_image.k of inputs.safetensors (the picture before HEAD's image processor) as PNG bytes */
export async function headTinyPng(k: number): Promise<Uint8Array> {
  const t = readSafetensors(join(HEAD_TINY, 'inputs.safetensors')).tensors.get(`raw_image.${k}`)!;
  const [H, W] = t.shape;
  return new Uint8Array(await sharp(Uint8Array.from(t.data as Int32Array), { raw: { width: W, height: H, channels: 3 } }).png().toBuffer());
}

/** the fixture's two samples: their turns (the image string taken off the first user text) and images (PNG) */
export async function headTinySamples(): Promise<{ turns: { user: string; assistant: string }[]; images: Uint8Array[] }[]> {
  const tz = headTinyTokenization();
  const images = [[await headTinyPng(0), await headTinyPng(1)], [await headTinyPng(2)]];
  return tz.samples.map((s: { messages: { role: string; content: string }[] }, i: number) => {
    const turns: { user: string; assistant: string }[] = [];
    for (let k = 0; k < s.messages.length; k += 2) turns.push({ user: s.messages[k].content, assistant: s.messages[k + 1].content });
    turns[0].user = turns[0].user.replace(/^(<image: \d+>)?(.*<\|image\|>)?/s, ''); // the image string HEAD put in front
    return { turns, images: images[i] };
  });
}

/**
 * the `model:` section of a small model in nanoVLM HEAD's format (image tokens as placeholders,
 * split tiles of 32 px up to a 64 px side, the head-tiny tokenizer with HEAD's extra tokens and chat
 * template, written to a fresh temp folder), with the given sizes
 */
export function headFormatModel(size: { hidden_dim: number; inter_dim: number; patch_size: number; n_blocks: number; max_length: number }) {
  const cfg = headTinyConfig();
  const tok = writeHeadTinyTokenizer(join(mkdtempSync(join(tmpdir(), 'vlm-head-tok-')), 'tok'));
  const { hidden_dim, inter_dim, patch_size, n_blocks, max_length } = size;
  return {
    vision: { use: 'siglip-vit', hidden_dim, inter_dim, patch_size, image_size: 32, n_heads: 4, n_blocks },
    projector: { use: 'pixel-shuffle', factor: 2 },
    decoder: { use: 'llama', hidden_dim, inter_dim, n_heads: 4, n_kv_heads: 2, n_blocks, vocab_size: 578, max_length },
    tokenizer: { use: 'hf', from: tok, chat_template: cfg.lm_chat_template, extra_special_tokens: cfg.vlm_extra_tokens },
    image_processor: { use: 'split', max_size: 64 },
    image_tokens: 'placeholders',
  };
}

/**
 * a recipe that trains a tiny HEAD-format model (headFormatModel) on the digits' first `trainRows`
 * rows of train.parquet and validates on the `valRows` after them; `train` options on top of
 * batch 4, no evaluators, stages load + train
 */
export function headDigitsRecipe(name: string, trainRows: number, valRows: number, train: Record<string, unknown>) {
  const digits = join(DATA, 'digits', 'train.parquet');
  return {
    name,
    runtime: { backend: 'wasm', seed: 0, out_dir: mkdtempSync(join(tmpdir(), 'vlm-head-runs-')) },
    model: headFormatModel({ hidden_dim: 32, inter_dim: 64, patch_size: 8, n_blocks: 1, max_length: 160 }),
    data: {
      train: [{ use: 'cauldron', path: digits, limit: trainRows }],
      val: [{ use: 'cauldron', path: digits, split: 'train', skip: trainRows, limit: valRows }], // rows after the training ones
    },
    optimizer: { use: 'adamw', lr: 3e-3 },
    schedule: { use: 'constant' },
    train: { batch_size: 4, log_every: 100, ...train },
    eval: { evaluators: [] },
    stages: ['load', 'train'],
  };
}
