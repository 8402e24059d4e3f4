// `vlm sample <recipe.yaml> [--data data.eval[0]] [--index N] [--out file]`: write one sample's image
// out of a recipe's dataset (Parquet datasets keep their images inside the file) and print its
// question, options and answer, with the `vlm generate` line that asks the model about it.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { CommandEnv } from '../cli.ts';
import { UserError } from '../errors.ts';
import { isOverride } from '../recipe/overrides.ts';
import { parsePath, formatPath } from '../recipe/positions.ts';
import { resolveRecipe } from '../recipe/index.ts';

export const USAGE = `Usage: vlm sample <recipe.yaml> [key.path=value ...] [--data <data.role[i]>] [--index <n>] [--out <file>]

Writes the image of one sample of a recipe's dataset to a file (for vlm generate --image) and prints
the sample's question, options and answer.
  --data <entry>   which dataset entry (default: data.eval[0], else data.val[0], else data.train[0])
  --index <n>      the n-th sample in the dataset's evaluation order (file order; default 0)
  --out <file>     where to write the image (default: sample-<index>.<png|jpg|webp|gif> here); the
                   bytes are written as stored, so the extension follows the image's format
Example: vlm sample recipes/digits-tiny.yaml --data data.eval[0] --index 3

Exit code 0: written; 1: a recipe, dataset or usage error.`;

/** the file extension of encoded image bytes (PNG, JPEG, WebP, GIF, BMP), or 'img' */
export function imageExtension(b: Uint8Array): string {
  const s = (i: number, t: string) => [...t].every((c, k) => b[i + k] === c.charCodeAt(0));
  if (b[0] === 0x89 && s(1, 'PNG')) return 'png';
  if (b[0] === 0xff && b[1] === 0xd8) return 'jpg';
  if (s(0, 'RIFF') && s(8, 'WEBP')) return 'webp';
  if (s(0, 'GIF8')) return 'gif';
  if (s(0, 'BM')) return 'bmp';
  return 'img';
}

export async function main(argv: string[], env: CommandEnv): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { data: { type: 'string' }, index: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (e) {
    throw new UserError(`vlm sample: ${(e as Error).message}`, { hint: USAGE.split('\n')[0] });
  }
  const { values, positionals } = parsed;
  if (values.help) {
    env.stdout.write(USAGE + '\n');
    return 0;
  }
  const files = positionals.filter((p) => !isOverride(p));
  if (files.length !== 1) throw new UserError('vlm sample needs one recipe file', { hint: `${USAGE.split('\n')[0]}   (vlm sample --help)` });
  const index = values.index === undefined ? 0 : Number(values.index);
  if (!Number.isInteger(index) || index < 0) throw new UserError(`--index ${values.index}: expected an integer >= 0`);

  // only the data is needed: no stage runs, so the model / optimizer sections are not required
  const r = await resolveRecipe(files[0], { registry: env.registry, overrides: ['stages=[]', ...positionals.filter(isOverride)] });
  const data = r.data.data ?? {};
  const which = values.data ?? (['eval', 'val', 'train'].map((k) => (data[k]?.length ? `data.${k}[0]` : null)).find(Boolean) as string | undefined);
  if (!which) throw new UserError(`${files[0]} has no datasets (data.train, data.val, data.eval are empty)`);
  const path = parsePath(which);
  const role = path?.[1];
  if (!path || path.length !== 3 || path[0] !== 'data' || (role !== 'train' && role !== 'val' && role !== 'eval') || typeof path[2] !== 'number') {
    throw new UserError(`--data ${which}: expected data.train[i], data.val[i] or data.eval[i]`);
  }
  const entry = data[role]?.[path[2]];
  if (!entry) throw new UserError(`--data ${which}: the recipe has ${data[role]?.length ?? 0} entries under data.${role}`);
  // read in evaluation order (no per-epoch shuffle), whatever the entry's role
  const ds = await env.registry.create('dataset', entry, { recipe: r.data, recipeDir: r.dir, yamlPath: formatPath(path), seed: r.data.runtime?.seed ?? 0, log: env.log, role: 'eval' });
  let i = 0;
  for await (const s of ds.samples({ epoch: 0 })) {
    if (i++ < index) continue;
    if (s.problem || !s.image?.length) throw new UserError(`${ds.name} sample ${index} (${s.id}) has no usable image: ${s.problem ?? 'empty image'}`);
    const out = values.out ?? `sample-${index}.${imageExtension(s.image)}`;
    writeFileSync(out, s.image);
    const lines = [
      `${out}: sample ${index} of ${ds.name} (${s.id}), ${s.image.length} bytes`,
      `question: ${s.question.replace(/\n/g, ' / ')}`,
      ...(s.choices?.length ? [`choices:  ${s.choices.map((c, k) => `${String.fromCharCode(65 + k)}: ${c}`).join(', ')}`] : []),
      `answer:   ${s.answer}`,
      '',
      `try: vlm generate --model <run dir> --image ${out} --prompt ${JSON.stringify(s.question.split('\n')[0])}`,
    ];
    env.stdout.write(lines.join('\n') + '\n');
    return 0;
  }
  throw new UserError(`--index ${index}: ${ds.name} has ${i} samples`, { hint: `choose an index below ${i}` });
}
