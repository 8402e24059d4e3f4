// `vlm score --metric <name> --pairs <file.jsonl>`: score given predictions without a model, so a
// metric implementation can be checked against lmms-eval's on the same predictions. One JSON
// object per line: {"prediction": "...", "references": ["...", ...]} (multiple choice: the
// references hold the answer letter). Prints {"metric", "value", "n"} as one JSON line.
// The metrics are core/eval/score.ts PAIR_METRICS (docs/evaluation.md).
import { readFileSync, existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { CommandEnv } from '../cli.ts';
import { UserError } from '../errors.ts';
import { didYouMean } from '../recipe/did-you-mean.ts';
import { PAIR_METRICS, scorePairs } from '../eval/score.ts';

export const USAGE = `Usage: vlm score --metric <${Object.keys(PAIR_METRICS).join('|')}> --pairs <file.jsonl>

  --metric <name>   ${Object.entries(PAIR_METRICS)
    .map(([k, m]) => `${k}: ${m.describe}`)
    .join('\n                    ')}
  --pairs <file>    JSON Lines, one {"prediction": "...", "references": ["...", ...]} per line ("-" = stdin)
  --per-sample      also print each pair's score (one JSON line each, before the summary)`;

export async function main(argv: string[], env: CommandEnv): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        metric: { type: 'string' },
        pairs: { type: 'string' },
        'per-sample': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    throw new UserError(`vlm score: ${(e as Error).message}`, { hint: USAGE });
  }
  if (values.help) {
    env.stdout.write(USAGE + '\n');
    return 0;
  }
  if (!values.metric) throw new UserError('vlm score: --metric is required', { hint: USAGE });
  if (!values.pairs) throw new UserError('vlm score: --pairs is required', { hint: USAGE });
  const metric = PAIR_METRICS[values.metric];
  if (!metric) {
    throw new UserError(`vlm score: unknown metric "${values.metric}"${didYouMean(values.metric, Object.keys(PAIR_METRICS))}`, {
      hint: `one of ${Object.keys(PAIR_METRICS).join(', ')}`,
    });
  }
  const file = values.pairs;
  if (file !== '-' && !existsSync(file)) throw new UserError(`vlm score: ${file} does not exist`, { where: { file } });
  const text = readFileSync(file === '-' ? 0 : file, 'utf8');
  const pairs = readPairs(text, file);
  if (values['per-sample']) {
    for (const p of pairs) env.stdout.write(JSON.stringify({ ...p, score: metric.score(p.prediction, p.references) }) + '\n');
  }
  env.stdout.write(JSON.stringify(scorePairs(values.metric, pairs)) + '\n');
  return 0;
}

/** Parse the JSON Lines; every bad line is reported with its number (blank lines are skipped). */
export function readPairs(text: string, file: string): { prediction: string; references: string[] }[] {
  const out: { prediction: string; references: string[] }[] = [];
  const problems: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      problems.push(`line ${i + 1}: not JSON (${(e as Error).message})`);
      return;
    }
    const o = v as { prediction?: unknown; references?: unknown };
    let refs = o?.references;
    if (typeof refs === 'string') refs = [refs];
    if (!o || typeof o !== 'object' || typeof o.prediction !== 'string') problems.push(`line ${i + 1}: "prediction" must be a string`);
    else if (!Array.isArray(refs) || !refs.every((r) => typeof r === 'string')) problems.push(`line ${i + 1}: "references" must be a list of strings`);
    else out.push({ prediction: o.prediction, references: refs as string[] });
  });
  if (problems.length) {
    throw new UserError(`${file}: ${problems.length} bad line${problems.length > 1 ? 's' : ''}:\n  ${problems.slice(0, 10).join('\n  ')}${problems.length > 10 ? `\n  ... and ${problems.length - 10} more` : ''}`, {
      where: { file },
      hint: 'one JSON object per line: {"prediction": "...", "references": ["...", ...]}',
    });
  }
  return out;
}
