// Lin-Chen/MMStar layout: index, question (options inline: "...\nOptions: A: x, B: y, ..."),
// image struct<bytes, path>, answer letter, category, l2_category. For multiple-choice evaluation
// (nanoVLM v0.1 MMStarDataset: prompt "Question: {q} \nAnswer only with the letter! \nAnswer:").
import { datasetNameOption, shortName } from '../../core/data/name.ts';
import { definePlugin } from 'nanovlm-ts/plugin-api';
import { ParquetDataset, checkLeaves, imageBytes, text, type Leaf } from '../../core/data/parquet.ts';
import { parseOptions } from '../../core/data/prompt.ts';
import type { Sample } from 'nanovlm-ts/plugin-api';
import { LOCATION_OPTIONS, locateParquet } from './files.ts';

export const MMSTAR_LEAVES: Leaf[] = [
  { column: 'question', leaf: 'question', type: 'BYTE_ARRAY' },
  { column: 'image', leaf: 'bytes', type: 'BYTE_ARRAY' },
  { column: 'answer', leaf: 'answer', type: 'BYTE_ARRAY' },
];

export function mmstarSample(row: Record<string, any>, id: string): Sample {
  const question = text(row.question) ?? '';
  const s: Sample = {
    id: row.index != null ? `${id} (index ${text(row.index)})` : id,
    image: imageBytes(row.image),
    question,
    answer: (text(row.answer) ?? '').trim(),
  };
  const choices = parseOptions(question);
  if (choices) s.choices = choices;
  const category = text(row.category);
  if (category) s.category = category;
  const l2 = text(row.l2_category);
  if (l2) s.l2Category = l2;
  return s;
}

export default definePlugin({
  kind: 'dataset',
  name: 'mmstar',
  description: 'MMStar-layout Parquet (question with inline options, image, answer letter, category, l2_category) from a local file/folder or a Hub dataset repo, for multiple-choice evaluation',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      ...LOCATION_OPTIONS,
      name: datasetNameOption('the file or repo name, e.g. mmstar-style for data/mmstar-style.parquet, MMStar for Lin-Chen/MMStar'),
      limit: { type: ['integer', 'null'], minimum: 1, default: null, description: 'use at most this many samples (taken from a seeded shuffle)' },
      seed: { type: 'integer', minimum: 0, default: 0, description: 'seed of the shuffle that `limit` takes its samples from' },
      shuffle: { type: 'boolean', default: false, description: 'reshuffle every epoch (evaluation reads in file order by default)' },
      lazy: { type: 'boolean', default: false, description: 'read a Hub repo with HTTP range requests (only the row groups used) instead of downloading it' },
    },
  },
  async create(o, ctx) {
    const opt = o as typeof o & { path: string | null; repo: string | null; limit: number | null; name?: string };
    const files = await locateParquet(opt, ctx);
    for (const f of files) checkLeaves(f.pf, MMSTAR_LEAVES);
    const cols = ['index', 'question', 'image', 'answer', 'category', 'l2_category'];
    return new ParquetDataset({
      name: opt.name ?? shortName(opt.repo ?? opt.path ?? 'mmstar'),
      orderKey: `mmstar:${opt.repo ?? opt.path}`,
      files,
      columns: cols.filter((c) => files.every((f) => f.pf.metadata.schema.some((s) => s.name === c))),
      toSample: mmstarSample,
      selectSeed: o.seed,
      orderSeed: ctx.seed ?? 0,
      shuffle: o.shuffle,
      skip: 0,
      limit: opt.limit,
      valRatio: 0,
      split: 'train',
    });
  },
});
