// A benchmark task as lmms-eval defines it, made into two plugins of the same name:
//   - a dataset plugin reading the benchmark's Hub Parquet layout (a local file/folder, or the Hub
//     repo, read lazily with HTTP range requests: plugins/dataset/files.ts);
//   - an evaluator plugin that brings that dataset itself (Evaluator.dataset), formats each row
//     into lmms-eval's prompt (the task's doc_to_text with its default lmms_eval_specific_kwargs,
//     then nanoVLM's wrapper rewrite: nanovlm-format.ts), generates greedily and scores with the
//     task's official metric (core/eval/*), reporting in lmms-eval's terms (EvalResult.task).
// Each task file (mmstar.ts, textvqa.ts, ...) is a TaskSpec: layout, prompt, metric, aggregation.
import { definePlugin, type Plugin } from '../../../core/plugin.ts';
import { UserError } from '../../../core/errors.ts';
import { checkLeaves, ParquetDataset, type Leaf } from '../../../core/data/parquet.ts';
import { vqaPrompt } from '../../../core/data/prompt.ts';
import type { Dataset, EvalResult, RunContext, Sample, Tokenizer } from '../../../core/types.ts';
import { locateParquet } from '../../dataset/files.ts';
import { answerAll, isHeadFormat, needModel } from '../common.ts';
import { benchmarkFormat, formatContext } from './nanovlm-format.ts';

export interface Scored {
  sample: Sample;
  /** the model's answer, stripped (lmms-eval strips every response before scoring) */
  output: string;
  /** per-sample metric values, e.g. {exact_match: 0.9} */
  scores: Record<string, number>;
}

export interface TaskSpec {
  /** plugin name, as `--tasks` and `use:` write it */
  name: string;
  /** lmms-eval's task name (results.json keys, nanoVLM's wrapper formatting) */
  lmmsTask: string;
  /** read the data with this existing dataset plugin instead of defining one named like the task */
  datasetPlugin?: string;
  description: string;
  /** the lmms-eval files the task follows (docs, results config) */
  source: string;
  /** where lmms-eval reads it: Hub dataset repo, config (a folder of Parquet files), split */
  hub: { repo: string; config?: string; split: string };
  /** leaf columns every file must have, with their physical types */
  leaves: Leaf[];
  /** top-level columns read (those absent from a file are skipped) */
  columns: string[];
  /** a row -> a sample (question, image, answer, and `fields` for the scorer) */
  toSample(row: Record<string, any>, id: string): Sample;
  /** lmms-eval doc_to_text with the task's default lmms_eval_specific_kwargs */
  context(s: Sample): string;
  /** the gold answer for the logs (lmms-eval doc_to_target) */
  target(s: Sample): unknown;
  /** lmms-eval generation_kwargs.max_new_tokens (nanoVLM's wrapper: 50 when the task sets none) */
  maxNewTokens: number;
  score(s: Sample, output: string): Record<string, number>;
  /** -> our metrics (+ breakdown) and lmms-eval's metrics by lmms-eval's names */
  aggregate(rows: Scored[]): { metrics: Record<string, number>; breakdown?: Record<string, Record<string, number>>; lmms: Record<string, number> };
  /** headline metric (an lmms-eval name) */
  primary: string;
  /** lmms-eval filter name in the metric keys (default "none") */
  filter?: string;
  /** metrics where lower is better (default: none) */
  lowerIsBetter?: string[];
}

/** The Parquet files of a task's split in its Hub repo: `<config>/<split>-*.parquet`, `data/<split>-*.parquet`, `<split>/*.parquet`. */
export function splitFiles(hub: TaskSpec['hub']): (path: string) => boolean {
  return (p) => {
    if (!p.endsWith('.parquet')) return false;
    if (hub.config && !p.startsWith(`${hub.config}/`)) return false;
    const parts = p.split('/');
    const base = parts[parts.length - 1];
    return base.startsWith(`${hub.split}-`) || base === `${hub.split}.parquet` || parts.slice(0, -1).includes(hub.split);
  };
}

/** the prompt styles a task can be rendered in */
export const PROMPT_STYLES = ['nanovlm', 'chat', 'raw'] as const;

/**
 * The model's prompt for a formatted context:
 *  - nanovlm: nanoVLM v0.1's training format `Question: {context} Answer:` (what our models learned);
 *  - chat: the tokenizer's chat template (user turn, generation prompt) + the wrapper's
 *    assistant prefix, as nanoVLM HEAD's wrapper builds it (for a model with image tokens as
 *    placeholders the evaluators put the image string in the user message: common.ts promptRow;
 *    a v0.1 model takes the image as a prefix of embeddings);
 *  - raw: the context followed by the assistant prefix.
 */
export function renderPrompt(style: string, context: string, assistantPrefix: string, tokenizer?: Tokenizer): string {
  if (style === 'nanovlm') return vqaPrompt(context);
  if (style === 'chat') {
    if (!tokenizer?.applyChatTemplate) {
      throw new UserError('prompt: chat needs a tokenizer with a chat template', { hint: 'use prompt: nanovlm (the v0.1 training format) or raw' });
    }
    return tokenizer.applyChatTemplate([{ role: 'user', content: context }], { addGenerationPrompt: true }) + assistantPrefix;
  }
  return context + assistantPrefix;
}

/** Python str.capitalize(): the first character upper-cased, the rest lower-cased. */
export function pyCapitalize(s: string): string {
  const [first, ...rest] = [...s];
  return first === undefined ? '' : first.toUpperCase() + rest.join('').toLowerCase();
}

/** a string column value (strings, bytes, numbers) */
export function str(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return new TextDecoder().decode(v);
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  return '';
}
/** a list<string> column value */
export function strList(v: unknown): string[] {
  return Array.isArray(v) ? v.map(str) : v == null ? [] : [str(v)];
}

/** lmms-eval's option list: "A. x\nB. y" */
export function lettered(choices: readonly string[]): string {
  return choices.map((c, i) => `${String.fromCharCode(65 + i)}. ${c}`).join('\n');
}

/** the image struct column {bytes, path} (or raw bytes) -> bytes */
export function imageOf(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  const b = (v as { bytes?: unknown } | null)?.bytes;
  return b instanceof Uint8Array ? b : new Uint8Array(0);
}

/** an image struct leaf: column.bytes */
export const IMAGE_LEAF = (column = 'image'): Leaf => ({ column, leaf: 'bytes', type: 'BYTE_ARRAY' });
/** a string leaf */
export const TEXT_LEAF = (column: string): Leaf => ({ column, leaf: column, type: 'BYTE_ARRAY' });

/** mean of a per-sample score over rows (0 for none) */
export function mean(rows: Scored[], key: string): number {
  return rows.length ? rows.reduce((a, r) => a + (r.scores[key] ?? 0), 0) / rows.length : 0;
}

const LOCATION = {
  path: { type: ['string', 'null'], default: null, description: 'a local .parquet file or folder in the Hub layout (relative to the recipe); null = the Hub repo' },
  repo: { type: ['string', 'null'], default: null, description: "the Hub dataset repo (default: the one lmms-eval reads), owner/name[@revision]; read lazily with HTTP range requests" },
} as const;

/** The dataset and evaluator plugins of a task. */
export function defineTask(spec: TaskSpec): Plugin[] {
  const dataset = definePlugin({
    kind: 'dataset',
    name: spec.name,
    description: `${spec.lmmsTask}: the ${spec.hub.repo} Parquet layout (${spec.columns.join(', ')}), split ${spec.hub.split}, file order`,
    options: { type: 'object', additionalProperties: false, properties: { ...LOCATION } } as const,
    async create(options, ctx) {
      const o = options as { path: string | null; repo: string | null };
      const repo = o.path ? null : (o.repo ?? spec.hub.repo);
      const files = await locateParquet({ path: o.path, repo, select: splitFiles(spec.hub), lazy: true }, ctx);
      for (const f of files) checkLeaves(f.pf, spec.leaves);
      return new ParquetDataset({
        name: `${spec.lmmsTask}:${o.path ?? repo}`,
        files,
        columns: spec.columns.filter((c) => files.every((f) => f.pf.metadata.schema.some((s) => s.name === c))),
        toSample: (row, id) => spec.toSample(row, id),
        selectSeed: 0,
        orderSeed: 0,
        shuffle: false,
        skip: 0,
        limit: null,
        valRatio: 0,
        split: 'train',
      });
    },
  });

  const evaluator = definePlugin({
    kind: 'evaluator',
    name: spec.name,
    description: `${spec.description} (lmms-eval ${spec.lmmsTask}; ${spec.source})`,
    options: {
      type: 'object',
      additionalProperties: false,
      properties: {
        ...LOCATION,
        max_samples: { type: ['integer', 'null'], minimum: 1, default: null, description: 'the first N samples in file order (lmms-eval --limit); null = all' },
        batch_size: { type: 'integer', minimum: 1, default: 8, description: 'samples per generation batch' },
        max_new_tokens: { type: 'integer', minimum: 1, default: spec.maxNewTokens, description: "longest answer (lmms-eval's generation_kwargs)" },
        prompt: {
          type: ['string', 'null'],
          enum: [...PROMPT_STYLES, null],
          default: null,
          description: "nanovlm = `Question: {prompt} Answer:` (nanoVLM v0.1's training format); chat = the tokenizer's chat template + the wrapper's assistant prefix (nanoVLM HEAD; a model with image tokens as placeholders also gets the image string of its tiles in the user message); raw = the prompt + assistant prefix; null = the model's format (chat for image tokens as placeholders, else nanovlm)",
        },
        log_samples: { type: 'boolean', default: false, description: 'keep per-sample logs (prompt, response, scores) in the results' },
      },
    } as const,
    create(options, pctx) {
      const o = options as typeof options & { path: string | null; repo: string | null; max_samples: number | null };
      return {
        name: spec.name,
        async dataset(ctx: RunContext): Promise<Dataset> {
          const use = spec.datasetPlugin ?? spec.name;
          // a Hub repo is read lazily (our task datasets always do; the reused plugin is asked to)
          const where = o.path ? { path: o.path } : { repo: o.repo ?? spec.hub.repo, ...(spec.datasetPlugin ? { lazy: true } : {}) };
          return (await ctx.registry.create('dataset', { use, ...where }, {
            recipe: ctx.recipe,
            recipeDir: ctx.recipeDir,
            yamlPath: pctx.yamlPath,
            role: 'eval',
            seed: ctx.seed,
            log: ctx.log,
          })) as Dataset;
        },
        async evaluate(ctx, data, progress): Promise<EvalResult> {
          const { model, tokenizer } = needModel(ctx, spec.name);
          const style = o.prompt ?? (isHeadFormat(model) ? 'chat' : 'nanovlm');
          if (isHeadFormat(model) && style !== 'chat') {
            throw new UserError(`${spec.name}: prompt: ${style} cannot carry the images of a model with image tokens as placeholders (nanoVLM HEAD)`, {
              where: { yamlPath: pctx.yamlPath },
              hint: 'use prompt: chat (HEAD\'s lmms-eval wrapper) or leave prompt out',
            });
          }
          const fmt = benchmarkFormat(spec.lmmsTask);
          const limit = o.max_samples as number | null;
          const original = await data.size();
          const total = limit == null ? original : Math.min(limit, original);
          // the question each sample is asked: lmms-eval's context, rewritten as nanoVLM's wrapper does
          const formatted: Dataset = {
            name: data.name,
            size: async () => total,
            async *samples(opts) {
              for await (const s of data.samples(opts)) yield { ...s, question: formatContext(spec.context(s), spec.lmmsTask) };
            },
          };
          const prompt = (q: string) => renderPrompt(style, q, fmt.assistantPrefix, tokenizer);
          progress?.(0, total);
          const { answered, skipped } = await answerAll(ctx, spec.name, formatted, {
            format: prompt,
            assistantPrefix: fmt.assistantPrefix, // HEAD format: the question is the user message, then this after the generation prompt
            batchSize: o.batch_size,
            maxSamples: limit,
            generate: { greedy: true, maxNewTokens: o.max_new_tokens, stopAtEos: true },
            onProgress: (done) => progress?.(done, total),
          });
          const rows: Scored[] = answered.map(({ sample, output }) => {
            const out = output.trim();
            return { sample, output: out, scores: spec.score(sample, out) };
          });
          const agg = spec.aggregate(rows);
          const metrics: Record<string, number> = { ...agg.metrics, n: rows.length };
          if (skipped.length) metrics.skipped = skipped.length;
          const filter = spec.filter ?? 'none';
          return {
            evaluator: spec.name,
            dataset: data.name,
            metrics,
            breakdown: agg.breakdown,
            task: {
              name: spec.lmmsTask,
              primary: spec.primary,
              filter,
              metrics: agg.lmms,
              higherIsBetter: Object.fromEntries(Object.keys(agg.lmms).map((k) => [k, !spec.lowerIsBetter?.includes(k)])),
              version: 0,
              config: {
                task: spec.lmmsTask,
                dataset_path: o.path ?? o.repo ?? spec.hub.repo,
                ...(spec.hub.config ? { dataset_name: spec.hub.config } : {}),
                test_split: spec.hub.split,
                output_type: 'generate_until',
                generation_kwargs: { max_new_tokens: o.max_new_tokens, temperature: 0, do_sample: false },
                primary_metric: spec.primary,
                prompt_style: style,
                nanovlm_formatting: fmt,
                source: spec.source,
              },
              nSamples: { original, effective: total },
              samples: o.log_samples
                ? rows.map((r, i) => ({
                    doc_id: i,
                    id: r.sample.id,
                    target: spec.target(r.sample),
                    arguments: { prompt: prompt(r.sample.question) },
                    resps: [[r.output]],
                    filtered_resps: [r.output],
                    ...r.scores,
                  }))
                : undefined,
            },
          };
        },
      };
    },
  });
  return (spec.datasetPlugin ? [evaluator] : [dataset, evaluator]) as Plugin[];
}
