// The benchmark side of `vlm eval` (core/commands/eval.ts):
//   --tasks a,b [--task-data a=<parquet or folder>] [--limit N] [--batch-size B] [--log-samples] [--prompt style]
//     -> one recipe override `eval.evaluators=[{use: a, ...}, ...]` (+ empty data lists: a task
//        brings its own data), so the eval stage runs the tasks like any evaluator;
//   --compare <run dir | results.json> ...  -> one Markdown table and one bar chart, side by side.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UserError } from '../errors.ts';
import { didYouMean } from '../recipe/did-you-mean.ts';
import type { Registry } from '../registry.ts';
import { readResults, tasksMarkdown, writeChartPng } from './report.ts';

export const TASK_OPTIONS = {
  tasks: { type: 'string' },
  'task-data': { type: 'string', multiple: true },
  limit: { type: 'string' },
  'batch-size': { type: 'string' },
  'log-samples': { type: 'boolean' },
  prompt: { type: 'string' },
  compare: { type: 'boolean' },
  output: { type: 'string' },
} as const;

export const TASK_USAGE = `
Benchmarks (lmms-eval tasks, docs/evaluation.md):
  --tasks a,b,...       benchmark tasks to run instead of the recipe's evaluators (vlm plugins evaluator lists them)
  --task-data t=<path>  read task t from a local .parquet file or folder in its Hub layout (repeatable;
                        default: the task's Hub dataset, read lazily with HTTP range requests)
  --limit N             the first N samples of each task (lmms-eval --limit)
  --batch-size B        samples per generation batch (default 8)
  --prompt <style>      nanovlm (v0.1's "Question: ... Answer:"), chat (tokenizer chat template), raw;
                        default: the model's format (chat for a nanoVLM HEAD model, else nanovlm)
  --log-samples         keep per-sample logs (eval/tasks/samples_<task>.jsonl)
  --output <dir>        the run directory (as --out); results in <dir>/eval/tasks/: results.json (lmms-eval
                        layout), results.md, results.png
  vlm eval --compare <run dir | results.json> ... [--output <dir>]
                        several models side by side: a Markdown table (printed, and <dir>/compare.md) and a bar
                        chart (<dir>/compare.png, default the current directory)`;

type Values = { tasks?: string; 'task-data'?: string[]; limit?: string; 'batch-size'?: string; 'log-samples'?: boolean; prompt?: string };

function positiveInt(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UserError(`vlm eval: ${flag} ${v}: expected a positive integer`);
  return n;
}

/** The recipe overrides for --tasks (empty when no --tasks). Unknown tasks and bad --task-data are UserErrors. */
export function taskOverrides(values: Values, registry: Registry): string[] {
  const data = values['task-data'] ?? [];
  if (!values.tasks) {
    for (const f of ['task-data', 'limit', 'batch-size', 'log-samples', 'prompt'] as const) {
      if (values[f] !== undefined && !(Array.isArray(values[f]) && !values[f].length)) throw new UserError(`vlm eval: --${f} goes with --tasks`, { hint: 'e.g. vlm eval --model <model> --tasks mmstar,textvqa --limit 100' });
    }
    return [];
  }
  const tasks = values.tasks.split(',').map((t) => t.trim()).filter(Boolean);
  if (!tasks.length) throw new UserError('vlm eval: --tasks is empty', { hint: 'e.g. --tasks mmstar,textvqa' });
  const known = taskNames(registry);
  for (const t of tasks) {
    if (!known.includes(t)) {
      throw new UserError(`vlm eval: unknown task "${t}"${didYouMean(t, known)}`, { hint: `tasks: ${known.join(', ')}` });
    }
  }
  const paths: Record<string, string> = {};
  for (const d of data) {
    const eq = d.indexOf('=');
    const task = d.slice(0, eq).trim();
    if (eq <= 0 || !d.slice(eq + 1).trim()) throw new UserError(`vlm eval: --task-data ${d}: expected <task>=<path>`, { hint: 'e.g. --task-data mmstar=data/mmstar.parquet' });
    if (!tasks.includes(task)) throw new UserError(`vlm eval: --task-data names task "${task}", which is not in --tasks (${tasks.join(', ')})`);
    paths[task] = resolve(d.slice(eq + 1).trim());
  }
  const limit = positiveInt('--limit', values.limit);
  const batch = positiveInt('--batch-size', values['batch-size']);
  const entries = tasks.map((use) => ({
    use,
    ...(paths[use] ? { path: paths[use] } : {}),
    ...(limit ? { max_samples: limit } : {}),
    ...(batch ? { batch_size: batch } : {}),
    ...(values['log-samples'] ? { log_samples: true } : {}),
    ...(values.prompt ? { prompt: values.prompt } : {}),
  }));
  // a task brings its own data: the recipe's data lists are not opened
  return [`eval.evaluators=${JSON.stringify(entries)}`, 'data.train=[]', 'data.val=[]', 'data.eval=[]'];
}

/** evaluator plugins that are benchmark tasks: those with a dataset plugin of the same name, and mmstar */
export function taskNames(registry: Registry): string[] {
  const datasets = new Set(registry.names('dataset'));
  return registry.names('evaluator').filter((n) => datasets.has(n));
}

/** `vlm eval --compare a b ...`: the table on stdout, compare.md + compare.png in `output`. */
export async function compareMain(sources: string[], output: string | undefined, env: { stdout: { write(s: string): unknown }; log: { info(m: string): void } }): Promise<number> {
  if (sources.length < 1) throw new UserError('vlm eval --compare: give one or more run directories or results.json files');
  const columns = sources.map(readResults);
  // two runs of the same folder name: keep them apart
  const seen = new Map<string, number>();
  for (const c of columns) {
    const k = (seen.get(c.label) ?? 0) + 1;
    seen.set(c.label, k);
    if (k > 1) c.label = `${c.label} (${k})`;
  }
  const md = tasksMarkdown(columns);
  env.stdout.write(md);
  const dir = output ?? '.';
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'compare.md'), md);
  await writeChartPng(join(dir, 'compare.png'), columns, 'benchmark results');
  env.log.info(`wrote ${join(dir, 'compare.md')} and ${join(dir, 'compare.png')}`);
  return 0;
}
