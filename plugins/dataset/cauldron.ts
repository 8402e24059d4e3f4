// HuggingFaceM4/the_cauldron layout: `images` list<struct<bytes, path>>, `texts` list<struct<user,
// assistant, source>>, one folder per subset. As nanoVLM v0.1's VQADataset (data/datasets.py):
// the FIRST image and the FIRST turn of `texts` make the sample (question = user, answer =
// assistant; nanoVLM HEAD's chat samples use every image and turn: Sample.images, Sample.turns);
// train.py's split: shuffle(seed=0), optional cut-off, the last val_ratio part is validation. Read row group by row group (core/data/parquet.ts).
import { datasetNameOption, shortName } from '../../core/data/name.ts';
import { definePlugin } from 'nanovlm-ts/plugin-api';
import { UserError } from 'nanovlm-ts/plugin-api';
import { ParquetDataset, checkLeaves, imageBytes, text, type Leaf } from '../../core/data/parquet.ts';
import { formatOptions } from '../../core/data/prompt.ts';
import { mixSeed, mulberry32, shuffleInPlace } from 'nanovlm-ts/plugin-api';
import type { Sample } from 'nanovlm-ts/plugin-api';
import { LOCATION_OPTIONS, locateParquet } from './files.ts';

export const CAULDRON_LEAVES: Leaf[] = [
  { column: 'images', leaf: 'bytes', type: 'BYTE_ARRAY' },
  { column: 'texts', leaf: 'user', type: 'BYTE_ARRAY' },
  { column: 'texts', leaf: 'assistant', type: 'BYTE_ARRAY' },
];

function firstTurn(row: Record<string, any>): { user?: string; assistant?: string } {
  const texts = row?.texts;
  const turn = (Array.isArray(texts) ? texts[0] : texts) ?? {};
  return { user: text(turn.user), assistant: text(turn.assistant) };
}

/**
 * one the_cauldron row -> a Sample (missing parts stay empty: the loader counts them as bad). v0.1
 * reads `image`, `question`, `answer` (the first image and turn); nanoVLM HEAD's chat samples read
 * `images` and `turns` (every image and turn, as HEAD's VQADataset).
 */
export function cauldronSample(row: Record<string, any>, id: string): Sample {
  const images = row.images == null ? [] : Array.isArray(row.images) ? row.images : [row.images];
  const texts = row.texts == null ? [] : Array.isArray(row.texts) ? row.texts : [row.texts];
  const turn = firstTurn(row);
  return {
    id,
    image: imageBytes(images[0]),
    question: turn.user ?? '',
    answer: turn.assistant ?? '',
    images: images.map(imageBytes),
    turns: texts.map((t: any) => ({ user: text(t?.user) ?? '', assistant: text(t?.assistant) ?? '' })),
  };
}

// distinct answers per question text among rows read together (cached per row-group span)
const pools = new WeakMap<object, Map<string, string[]>>();
function answerPool(rows: Record<string, any>[], question: string): string[] {
  let m = pools.get(rows);
  if (!m) {
    m = new Map();
    for (const r of rows) {
      const t = firstTurn(r);
      if (!t.user || !t.assistant?.trim()) continue;
      const list = m.get(t.user) ?? m.set(t.user, []).get(t.user)!;
      if (!list.includes(t.assistant)) list.push(t.assistant);
    }
    pools.set(rows, m);
  }
  return m.get(question) ?? [];
}

/**
 * Our extension (not in nanoVLM): turn an open sample into an MMStar-style 4-option question,
 * distractors = 3 other answers given to the SAME question text among the rows of its row group
 * span; the correct letter's position is seeded by the row. Samples with fewer than 3 alternative
 * answers stay open.
 */
export function asMultipleChoice(s: Sample, rows: Record<string, any>[], seed: number, target: 'letter' | 'letter-option' = 'letter'): Sample {
  const others = answerPool(rows, s.question).filter((a) => a !== s.answer);
  if (others.length < 3 || !s.answer.trim()) return s;
  const rand = mulberry32(seed);
  const picks = [...others];
  shuffleInPlace(picks, rand);
  const choices = picks.slice(0, 3);
  const at = Math.floor(rand() * 4);
  choices.splice(at, 0, s.answer);
  const letter = String.fromCharCode(65 + at);
  const out: Sample = { ...s, question: `${s.question}\n${formatOptions(choices)}`, answer: letter, choices, turns: undefined }; // chat samples: the one turn of question/target
  if (target === 'letter-option') out.target = `${letter}: ${s.answer}`;
  return out;
}

export default definePlugin({
  kind: 'dataset',
  name: 'cauldron',
  description: 'the_cauldron-layout Parquet (images + texts turns) from a local file/folder or a Hub dataset repo and subsets; nanoVLM v0.1 sample and split rules',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      ...LOCATION_OPTIONS,
      name: datasetNameOption('the file or repo name, its subsets joined by +, and -val / -train when val_ratio > 0 (e.g. the_cauldron-ai2d+vqav2-train)'),
      subsets: { type: ['array', 'null'], items: { type: 'string' }, default: null, description: 'subset folders to read (the_cauldron configs, e.g. [ai2d, vqav2]); null = every .parquet file' },
      limit: { type: ['integer', 'null'], minimum: 1, default: null, description: 'use at most this many samples (nanoVLM data_cutoff_idx), taken from the seeded shuffle' },
      skip: { type: 'integer', minimum: 0, default: 0, description: 'leave out the first N samples of the seeded shuffle' },
      val_ratio: { type: 'number', minimum: 0, maximum: 1, default: 0, description: 'fraction of the selected samples held out for validation (nanoVLM: 0.01)' },
      split: { type: 'string', enum: ['train', 'val'], description: 'which side of the val_ratio split this entry reads; default: val under data.val, else train' },
      seed: { type: 'integer', minimum: 0, default: 0, description: 'seed of the selection shuffle (nanoVLM: train_ds.shuffle(seed=0)); keep it equal in the train and val entries' },
      shuffle: { type: 'boolean', description: 'reshuffle every epoch (row groups, rows, subsets mixed; seeded by runtime.seed); default: true under data.train' },
      mc_target: { type: 'string', enum: ['letter', 'letter-option'], default: 'letter', description: 'with mc_ratio: train on the letter alone or on "B: <option>" (see docs/data.md on the length leak); evaluation checks the letter' },
      mc_ratio: { type: 'number', minimum: 0, maximum: 1, default: 0, description: 'not in nanoVLM: this fraction of samples (seeded per row) becomes a 4-option MMStar-style question, distractors = other answers to the same question in the row group; teaches a model trained from scratch to answer with a letter' },
    },
  },
  async create(o, ctx) {
    const opt = o as typeof o & { path: string | null; repo: string | null; subsets: string[] | null; limit: number | null; name?: string };
    const split = o.split ?? (ctx.role === 'val' ? 'val' : 'train');
    if (split === 'val' && o.val_ratio === 0)
      throw new UserError('split: val needs val_ratio > 0 (the validation part is val_ratio of the selected samples)', { where: { yamlPath: `${ctx.yamlPath}.val_ratio` }, hint: 'set the same val_ratio (e.g. 0.01) in the train and val entries' });
    const files = await locateParquet(opt, ctx);
    for (const f of files) checkLeaves(f.pf, CAULDRON_LEAVES);
    const where = opt.repo ?? opt.path ?? '';
    return new ParquetDataset({
      name: opt.name ?? `${shortName(where || 'cauldron')}${opt.subsets ? `-${opt.subsets.join('+')}` : ''}${o.val_ratio > 0 ? `-${split}` : ''}`,
      orderKey: `cauldron:${where}${opt.subsets ? `[${opt.subsets.join(',')}]` : ''}${o.val_ratio > 0 ? `/${split}` : ''}`,
      files,
      columns: ['images', 'texts'],
      toSample:
        o.mc_ratio > 0
          ? (row, id, near) => {
              const s = cauldronSample(row, id);
              const h = mixSeed(o.seed, near.globalRow, 0x6d63);
              return h / 4294967296 < o.mc_ratio ? asMultipleChoice(s, near.rows, h, o.mc_target ?? 'letter') : s;
            }
          : cauldronSample,
      selectSeed: o.seed,
      orderSeed: ctx.seed ?? 0,
      shuffle: o.shuffle ?? ctx.role === 'train',
      skip: o.skip,
      limit: opt.limit,
      valRatio: o.val_ratio,
      split,
    });
  },
});
