// The eval stage: runs the recipe's `eval.evaluators` (each on every dataset of its `data` list,
// `eval` by default), writes <runDir>/eval/results.json and eval/results.md (Markdown tables),
// prints the table and appends the results to ctx.evalResults (the model card reads them).
// `runEvaluators` is exported for the train stage (evaluation every N steps).
import { existsSync, mkdirSync, writeFileSync, renameSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { definePlugin } from 'nanovlm-ts/plugin-api';
import { UserError } from 'nanovlm-ts/plugin-api';
import type { Evaluator, EvalResult, RunContext, Stage } from 'nanovlm-ts/plugin-api';
import { progressReporter } from '../../core/eval/progress.ts';
import { TASKS_DIR, writeTaskReport } from '../../core/eval/report.ts';

type Entry = { use: string; data?: 'val' | 'eval'; [k: string]: unknown };

/** Build every evaluator of `entries` (default: recipe eval.evaluators) and run it on its datasets. */
export async function runEvaluators(
  ctx: RunContext,
  opts: {
    entries?: Entry[];
    report?: (line: string) => void;
    yamlPath?: string;
    /** samples answered so far by evaluator `use` (a progress bar) */
    progress?: (use: string, done: number, total: number | null) => void;
    /** leave out the evaluators for which it returns true (the train stage: those that measure its validation loss) */
    skip?: (evaluator: Evaluator) => boolean;
  } = {},
): Promise<EvalResult[]> {
  const entries: Entry[] = opts.entries ?? ctx.recipe?.eval?.evaluators ?? [];
  const base = opts.yamlPath ?? 'eval.evaluators';
  const results: EvalResult[] = [];
  // eval.max_samples: the limit of every evaluator that sets none of its own
  const stageMax = (ctx.recipe?.eval?.max_samples as number | null | undefined) ?? null;
  for (let i = 0; i < entries.length; i++) {
    const entry = stageMax !== null && (entries[i].max_samples ?? null) === null ? { ...entries[i], max_samples: stageMax } : entries[i];
    const yamlPath = `${base}[${i}]`;
    const evaluator = (await ctx.registry.create('evaluator', entry, {
      recipe: ctx.recipe,
      recipeDir: ctx.recipeDir,
      yamlPath,
      seed: ctx.seed,
      log: ctx.log,
      positions: ctx.positions,
      built: { tokenizer: ctx.tokenizer, 'image-processor': ctx.imageProcessor },
    })) as Evaluator & { data?: 'val' | 'eval' };
    if (opts.skip?.(evaluator)) continue;
    const list = evaluator.data ?? entry.data ?? 'eval';
    // a benchmark task brings its own data; other evaluators read the recipe's data lists
    const datasets = evaluator.dataset ? [await evaluator.dataset(ctx)] : (ctx.datasets?.[list] ?? []);
    if (!datasets.length) {
      throw new UserError(`evaluator ${entry.use} evaluates data.${list}, but the recipe has no data.${list} datasets`, {
        where: { yamlPath },
        hint: `add datasets under data.${list}, or set ${yamlPath}.data to the list that has them`,
      });
    }
    for (const ds of datasets) {
      opts.report?.(`${entry.use} on ${ds.name}`);
      const t0 = Date.now();
      const r = await evaluator.evaluate(ctx, ds, opts.progress && ((done, total) => opts.progress!(entry.use, done, total)));
      ctx.log.debug(`${entry.use} on ${ds.name}: ${JSON.stringify(r.metrics)} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      results.push(r);
    }
  }
  return results;
}

/** metrics that count things (printed as integers); every other metric is a rate or a loss */
const COUNTS = new Set(['n', 'unparseable', 'ambiguous', 'empty', 'skipped', 'tokens']);

function fmt(v: number, key = ''): string {
  if (COUNTS.has(key) && Number.isInteger(v)) return String(v);
  return Number.isFinite(v) ? v.toFixed(4) : String(v);
}

/** Markdown: one row per (evaluator, dataset, metric), then a per-category table per result. */
export function resultsMarkdown(results: EvalResult[]): string {
  const lines = ['| evaluator | dataset | metric | value |', '|---|---|---|---|'];
  for (const r of results) {
    for (const [k, v] of Object.entries(r.metrics)) lines.push(`| ${r.evaluator} | ${r.dataset} | ${k} | ${fmt(v, k)} |`);
  }
  for (const r of results) {
    const groups = Object.entries(r.breakdown ?? {});
    if (groups.length === 0) continue;
    const cols = [...new Set(groups.flatMap(([, m]) => Object.keys(m)))];
    lines.push('', `${r.evaluator} on ${r.dataset}, per category:`, '');
    lines.push(`| category | ${cols.join(' | ')} |`, `|---|${cols.map(() => '---|').join('')}`);
    for (const [g, m] of groups) lines.push(`| ${g} | ${cols.map((c) => (m[c] === undefined ? '' : fmt(m[c], c))).join(' | ')} |`);
  }
  return lines.join('\n') + '\n';
}

/** Write eval/results.json and eval/results.md under runDir (each to a temp name, then renamed). */
export function writeResults(runDir: string, results: EvalResult[]): { json: string; md: string } {
  const dir = join(runDir, 'eval');
  mkdirSync(dir, { recursive: true });
  const json = join(dir, 'results.json');
  const md = join(dir, 'results.md');
  writeFileSync(json + '.tmp', JSON.stringify({ results }, null, 2) + '\n');
  renameSync(json + '.tmp', json);
  writeFileSync(md + '.tmp', resultsMarkdown(results));
  renameSync(md + '.tmp', md);
  return { json, md };
}

export default definePlugin({
  kind: 'stage',
  name: 'eval',
  evaluates: true, // vlm eval --model runs it
  description: "Runs the evaluators of the recipe's eval: section; writes eval/results.json and eval/results.md in the run directory.",
  // the recipe's `eval:` section
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      evaluators: { type: 'array', default: [], items: { type: 'object', 'x-plugin': 'evaluator', required: ['use'], properties: { use: { type: 'string', minLength: 1 } } }, description: 'Evaluator plugin entries, run in order.' },
      max_samples: { type: ['integer', 'null'], minimum: 1, default: null, description: "Evaluate at most this many samples per dataset with every evaluator whose own max_samples is null (null = all)." },
    },
  } as const,
  create(): Stage {
    return {
      title: 'eval',
      async run(ctx, report) {
        // the train stage just evaluated these very weights with these evaluators: reuse, not recompute
        const reused = ctx.finalTrainEval;
        ctx.finalTrainEval = undefined;
        if (reused) ctx.log.info("eval: the train stage's final evaluation is of the same weights; reporting it (not evaluating twice)");
        // a progress bar with an ETA per evaluator (benchmark tasks report their progress)
        const bars = new Map<string, (done: number, total: number | null) => void>();
        const progress = (use: string, done: number, total: number | null) => {
          if (!bars.has(use) || done === 0) bars.set(use, progressReporter(use, report));
          bars.get(use)!(done, total);
        };
        const results = reused ?? (await runEvaluators(ctx, { report, progress }));
        writeResults(ctx.runDir, results);
        // benchmark tasks: lmms-eval's results layout, a table and a chart in eval/tasks/
        // a local model folder is labelled by its name, a Hub model by its id
        const source = String(ctx.facts.model_source ?? ctx.recipe?.name ?? 'model');
        const label = existsSync(source) ? basename(resolve(source)) : source;
        const written = await writeTaskReport(join(ctx.runDir, TASKS_DIR), results, { model: label, recipe: ctx.recipe?.name }, label);
        if (written.length) ctx.artifacts.tasks = join(TASKS_DIR, 'results.md');
        ctx.evalResults.push(...results);
        ctx.artifacts.eval = 'eval/results.md';
        for (const r of results) ctx.metrics({ stage: 'eval', evaluator: r.evaluator, dataset: r.dataset, ...r.metrics });
        const table = resultsMarkdown(results);
        for (const line of table.trimEnd().split('\n')) ctx.log.info(line);
        const first = results[0];
        if (first) report(`${first.evaluator}: ${Object.entries(first.metrics).slice(0, 2).map(([k, v]) => `${k} ${fmt(v, k)}`).join(', ')}`);
      },
    };
  },
});
