// Benchmark task results in lmms-eval's layout, a Markdown table and a bar chart.
//   results.json  {results: {<task>: {alias, "<metric>,<filter>": value, "<metric>_stderr,<filter>": "N/A"}},
//                  configs: {<task>: {...}}, versions: {<task>: 0}, "n-shot": {<task>: 0},
//                  "higher_is_better": {<task>: {<metric>: true}}, "n-samples": {<task>: {original, effective}},
//                  samples?: {<task>: [...]}, config: {model, ...}}
//   as lmms_eval/evaluator.py `simple_evaluate` returns it (lmms-eval 75571cfe), so files written by
//   lmms-eval itself can be read back here (`vlm eval --compare`).
// The chart is an SVG rasterised with sharp (as core/train/plot.ts).
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import sharp from 'sharp';
import { UserError } from '../errors.ts';
import type { EvalResult, TaskReport } from '../types.ts';

export interface LmmsResults {
  results: Record<string, Record<string, number | string>>;
  configs: Record<string, Record<string, unknown>>;
  versions: Record<string, number>;
  'n-shot': Record<string, number>;
  higher_is_better: Record<string, Record<string, boolean>>;
  'n-samples': Record<string, { original: number; effective: number }>;
  samples?: Record<string, Record<string, unknown>[]>;
  config?: Record<string, unknown>;
}

/** lmms-eval's results layout for the task results among `results` (others are left out). */
export function lmmsResults(results: EvalResult[], config: Record<string, unknown> = {}): LmmsResults {
  const out: LmmsResults = { results: {}, configs: {}, versions: {}, 'n-shot': {}, higher_is_better: {}, 'n-samples': {}, config };
  for (const r of results) {
    const t = r.task;
    if (!t) continue;
    const row: Record<string, number | string> = { alias: t.name };
    for (const [k, v] of Object.entries(t.metrics)) {
      row[`${k},${t.filter}`] = v;
      row[`${k}_stderr,${t.filter}`] = 'N/A';
    }
    out.results[t.name] = row;
    out.configs[t.name] = t.config;
    out.versions[t.name] = t.version;
    out['n-shot'][t.name] = 0;
    out.higher_is_better[t.name] = t.higherIsBetter;
    out['n-samples'][t.name] = t.nSamples;
    if (t.samples) (out.samples ??= {})[t.name] = t.samples;
  }
  return out;
}

/** One model's figures per task: task -> metric -> value (the lmms-eval metric names, filter dropped). */
export interface ModelColumn {
  label: string;
  tasks: Record<string, Record<string, number>>;
  /** task -> its headline metric (our configs say `primary_metric`; else the first metric) */
  primary: Record<string, string>;
}

/** Read an lmms-eval results layout into a column (metric keys "name,filter" -> name; stderr and alias dropped). */
export function columnOf(label: string, data: LmmsResults): ModelColumn {
  const tasks: Record<string, Record<string, number>> = {};
  const primary: Record<string, string> = {};
  for (const [task, row] of Object.entries(data.results ?? {})) {
    const p = data.configs?.[task]?.primary_metric;
    if (typeof p === 'string') primary[task] = p;
    for (const [k, v] of Object.entries(row)) {
      if (k === 'alias' || typeof v !== 'number') continue;
      const [name] = k.split(',');
      if (name.endsWith('_stderr')) continue;
      (tasks[task] ??= {})[name] = v;
    }
  }
  return { label, tasks, primary };
}

/** the headline metric of a task in these columns */
function headline(columns: ModelColumn[], task: string): string {
  for (const c of columns) if (c.primary[task] && c.tasks[task]?.[c.primary[task]] !== undefined) return c.primary[task];
  return Object.keys(columns.find((c) => c.tasks[task])?.tasks[task] ?? {})[0] ?? '';
}

const fmt = (v: number | undefined) => (v === undefined ? '–' : Math.abs(v) >= 10 ? v.toFixed(2) : v.toFixed(4));

/** Markdown: one row per (task, metric), one column per model. */
export function tasksMarkdown(columns: ModelColumn[]): string {
  const tasks = [...new Set(columns.flatMap((c) => Object.keys(c.tasks)))];
  const lines = [`| task | metric | ${columns.map((c) => c.label.replaceAll('|', '\\|')).join(' | ')} |`, `|---|---|${columns.map(() => '---:|').join('')}`];
  for (const t of tasks) {
    const first = headline(columns, t);
    const metrics = [...new Set([first, ...columns.flatMap((c) => Object.keys(c.tasks[t] ?? {}))])].filter(Boolean);
    for (const m of metrics) lines.push(`| ${t} | ${m} | ${columns.map((c) => fmt(c.tasks[t]?.[m])).join(' | ')} |`);
  }
  return lines.join('\n') + '\n';
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const COLORS = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2', '#eeca3b', '#9d755d'];

/**
 * A grouped bar chart of each task's headline metric (one bar per model), as SVG. Values in [0, 1]
 * are drawn as percentages; larger scores (MME's out of 2000) are scaled to the largest of their task
 * and labelled with their value.
 */
export function tasksChartSvg(columns: ModelColumn[], title = 'benchmark results'): string {
  const tasks = [...new Set(columns.flatMap((c) => Object.keys(c.tasks)))];
  const metricOf = (t: string) => headline(columns, t);
  const W = Math.max(480, 90 + tasks.length * Math.max(60, 26 * columns.length + 24));
  const H = 360;
  const m = { l: 50, r: 20, t: 40, b: 90 };
  const plotW = W - m.l - m.r;
  const plotH = H - m.t - m.b;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${esc(title)}</text>`,
  ];
  for (const p of [0, 25, 50, 75, 100]) {
    const y = m.t + plotH - (p / 100) * plotH;
    parts.push(`<line x1="${m.l}" x2="${m.l + plotW}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`, `<text x="${m.l - 6}" y="${y + 4}" text-anchor="end">${p}%</text>`);
  }
  const groupW = plotW / Math.max(1, tasks.length);
  const barW = Math.min(28, (groupW - 12) / Math.max(1, columns.length));
  tasks.forEach((t, ti) => {
    const metric = metricOf(t);
    const values = columns.map((c) => c.tasks[t]?.[metric]);
    const max = Math.max(...values.filter((v): v is number => v !== undefined));
    const scale = max > 1 ? max : 1; // fractions as %, other scores relative to the task's best
    const x0 = m.l + ti * groupW + (groupW - barW * columns.length) / 2;
    values.forEach((v, ci) => {
      if (v === undefined || !Number.isFinite(v)) return;
      const h = (Math.max(0, v) / scale) * plotH;
      const x = x0 + ci * barW;
      parts.push(`<rect x="${x}" y="${m.t + plotH - h}" width="${barW - 2}" height="${h}" fill="${COLORS[ci % COLORS.length]}"/>`);
      const label = scale === 1 ? (v * 100).toFixed(1) : v.toFixed(0);
      parts.push(`<text x="${x + (barW - 2) / 2}" y="${m.t + plotH - h - 3}" text-anchor="middle" font-size="9">${label}</text>`);
    });
    const cx = m.l + ti * groupW + groupW / 2;
    parts.push(`<text x="${cx}" y="${m.t + plotH + 16}" text-anchor="middle">${esc(t)}</text>`);
    parts.push(`<text x="${cx}" y="${m.t + plotH + 30}" text-anchor="middle" fill="#666" font-size="9">${esc(metric)}${scale === 1 ? '' : ' (score)'}</text>`);
  });
  parts.push(`<line x1="${m.l}" x2="${m.l + plotW}" y1="${m.t + plotH}" y2="${m.t + plotH}" stroke="#444"/>`);
  columns.forEach((c, ci) => {
    const y = H - 34 + Math.floor(ci / 3) * 14;
    const x = m.l + (ci % 3) * (plotW / 3);
    parts.push(`<rect x="${x}" y="${y - 9}" width="10" height="10" fill="${COLORS[ci % COLORS.length]}"/>`, `<text x="${x + 14}" y="${y}">${esc(c.label)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export async function writeChartPng(file: string, columns: ModelColumn[], title?: string): Promise<void> {
  await sharp(Buffer.from(tasksChartSvg(columns, title))).png().toFile(file + '.tmp');
  renameSync(file + '.tmp', file);
}

function writeAtomic(file: string, text: string): void {
  writeFileSync(file + '.tmp', text);
  renameSync(file + '.tmp', file);
}

/**
 * Write <dir>/results.json (lmms-eval layout, samples left out), samples_<task>.jsonl (per-sample
 * logs, when kept), results.md and results.png. Returns the paths written.
 */
export async function writeTaskReport(dir: string, results: EvalResult[], config: Record<string, unknown>, label: string): Promise<string[]> {
  const data = lmmsResults(results, config);
  if (!Object.keys(data.results).length) return [];
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  const { samples, ...rest } = data;
  writeAtomic(join(dir, 'results.json'), JSON.stringify(rest, null, 2) + '\n');
  written.push(join(dir, 'results.json'));
  for (const [task, rows] of Object.entries(samples ?? {})) {
    const f = join(dir, `samples_${task}.jsonl`);
    writeAtomic(f, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    written.push(f);
  }
  const col = columnOf(label, rest);
  writeAtomic(join(dir, 'results.md'), tasksMarkdown([col]));
  await writeChartPng(join(dir, 'results.png'), [col], label);
  written.push(join(dir, 'results.md'), join(dir, 'results.png'));
  return written;
}

/** the report folder of a run directory */
export const TASKS_DIR = join('eval', 'tasks');

/**
 * A results file for `vlm eval --compare`: a results.json (ours or lmms-eval's), or a run
 * directory holding eval/tasks/results.json. The label is the run's folder name (or the file's).
 */
export function readResults(source: string): ModelColumn {
  let file = source;
  if (existsSync(source) && statSync(source).isDirectory()) {
    const candidates = [join(source, TASKS_DIR, 'results.json'), join(source, 'results.json')];
    const found = candidates.find((c) => existsSync(c));
    if (!found) {
      throw new UserError(`${source} has no benchmark results (looked for ${candidates.join(', ')})`, {
        hint: 'run `vlm eval <model> --tasks ...` first, or pass a results.json (ours or lmms-eval\'s)',
      });
    }
    file = found;
  }
  if (!existsSync(file)) throw new UserError(`${file} does not exist`, { hint: 'pass a run directory or a results.json' });
  let data: LmmsResults;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file} is not JSON (${(e as Error).message})`, { where: { file } });
  }
  if (!data || typeof data.results !== 'object' || Array.isArray(data.results)) {
    throw new UserError(`${file} is not a benchmark results file (no "results" object keyed by task, as lmms-eval writes)`, {
      where: { file },
      hint: 'pass <run>/eval/tasks/results.json or an lmms-eval results.json (a run\'s eval/results.json holds the recipe evaluators, not tasks)',
    });
  }
  const dir = dirname(file);
  const label =
    basename(dir) === 'tasks' && basename(dirname(dir)) === 'eval' ? basename(dirname(dirname(dir))) : String((data.config as { model?: unknown })?.model ?? basename(file));
  return columnOf(label, data);
}

export type { TaskReport };
