// HuggingFaceM4/the_cauldron layout: `images` list<struct<bytes, path>>, `texts` list<struct<user,
// assistant, source>>, one folder per subset. As nanoVLM v0.1's VQADataset (data/datasets.py):
// the FIRST image and the FIRST turn of `texts` make the sample (question = user, answer =
// assistant); train.py's split: shuffle(seed=0), optional cut-off, the last val_ratio part is
// validation. Read row group by row group (core/data/parquet.ts).
import { definePlugin } from '../../core/plugin.ts';
import { UserError } from '../../core/errors.ts';
import { ParquetDataset, checkLeaves, imageBytes, text, type Leaf } from '../../core/data/parquet.ts';
import type { Sample } from '../../core/types.ts';
import { LOCATION_OPTIONS, locateParquet } from './files.ts';

export const CAULDRON_LEAVES: Leaf[] = [
  { column: 'images', leaf: 'bytes', type: 'BYTE_ARRAY' },
  { column: 'texts', leaf: 'user', type: 'BYTE_ARRAY' },
  { column: 'texts', leaf: 'assistant', type: 'BYTE_ARRAY' },
];

/** one the_cauldron row -> a Sample (missing parts stay empty: the loader counts them as bad) */
export function cauldronSample(row: Record<string, any>, id: string): Sample {
  const images = row.images;
  const first = Array.isArray(images) ? images[0] : images;
  const texts = row.texts;
  const turn = (Array.isArray(texts) ? texts[0] : texts) ?? {};
  return { id, image: imageBytes(first), question: text(turn.user) ?? '', answer: text(turn.assistant) ?? '' };
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
      subsets: { type: ['array', 'null'], items: { type: 'string' }, default: null, description: 'subset folders to read (the_cauldron configs, e.g. [ai2d, vqav2]); null = every .parquet file' },
      limit: { type: ['integer', 'null'], minimum: 1, default: null, description: 'use at most this many samples (nanoVLM data_cutoff_idx), taken from the seeded shuffle' },
      skip: { type: 'integer', minimum: 0, default: 0, description: 'leave out the first N samples of the seeded shuffle' },
      val_ratio: { type: 'number', minimum: 0, maximum: 1, default: 0, description: 'fraction of the selected samples held out for validation (nanoVLM: 0.01)' },
      split: { type: 'string', enum: ['train', 'val'], description: 'which side of the val_ratio split this entry reads; default: val under data.val, else train' },
      seed: { type: 'integer', minimum: 0, default: 0, description: 'seed of the selection shuffle (nanoVLM: train_ds.shuffle(seed=0)); keep it equal in the train and val entries' },
      shuffle: { type: 'boolean', description: 'reshuffle every epoch (row groups, rows, subsets mixed; seeded by runtime.seed); default: true under data.train' },
    },
  },
  async create(o, ctx) {
    const opt = o as typeof o & { path: string | null; repo: string | null; subsets: string[] | null; limit: number | null };
    const split = o.split ?? (ctx.role === 'val' ? 'val' : 'train');
    if (split === 'val' && o.val_ratio === 0)
      throw new UserError('split: val needs val_ratio > 0 (the validation part is val_ratio of the selected samples)', { where: { yamlPath: `${ctx.yamlPath}.val_ratio` }, hint: 'set the same val_ratio (e.g. 0.01) in the train and val entries' });
    const files = await locateParquet(opt, ctx);
    for (const f of files) checkLeaves(f.pf, CAULDRON_LEAVES);
    const where = opt.repo ?? opt.path ?? '';
    return new ParquetDataset({
      name: `cauldron:${where}${opt.subsets ? `[${opt.subsets.join(',')}]` : ''}${o.val_ratio > 0 ? `/${split}` : ''}`,
      files,
      columns: ['images', 'texts'],
      toSample: cauldronSample,
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
