// `vlm memory <recipe> --batch-sizes 1,2,4,8,16 [--png memory.png] [--json memory.json]`:
// peak memory of one training step (core/train/step.ts: forward, loss, backward, clipping, the
// optimizer) per batch size,
// as nanoVLM's measure_vram does for CUDA, for whatever backend runs. Every batch size runs in
// a child process (`vlm memory --child ...`), so the numbers do not carry over from one size to
// the next (the wasm heap never shrinks) and an out-of-memory (wasm's 4 GiB heap, the OS, or
// --limit-mib) ends only that child: the sweep stops cleanly at the first OOM and reports it.
// Output: a table, optional JSON, and a PNG plot (SVG rendered by sharp).
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import type { CommandEnv } from '../cli.ts';
import { buildComponents, buildOptimizer } from '../build.ts';
import { UserError } from '../errors.ts';
import { resolveRecipe } from '../recipe/index.ts';
import { initRuntime, type BackendChoice } from '../runtime.ts';
import { benchBatch, gradClip, timedStep } from '../benchmark.ts';
import { withFullSizeModel } from '../model/random-checkpoint.ts';
import { outOfMemoryError, trainingMemory } from '../train/memory.ts';

export interface MemoryRow {
  batch_size: number;
  status: 'ok' | 'oom' | 'error';
  /** peak resident set of the child process (whole process: runtime, weights, activations) */
  peak_rss_bytes?: number;
  /** peak bytes held by tfjs tensors during the measured step */
  peak_tfjs_bytes?: number;
  /** webgpu: GPU buffer bytes the backend holds after the step (its pool keeps freed buffers: a high-water mark) */
  gpu_bytes_allocated?: number;
  step_ms?: number;
  /** the estimate of the backend peak made before the step (core/train/memory.ts) */
  estimate_bytes?: number;
  message?: string;
}

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'vlm.js');
const CHILD_PREFIX = 'VLM_MEMORY_RESULT ';
const ESTIMATE_PREFIX = 'VLM_MEMORY_ESTIMATE ';

export const HELP = `Usage: vlm memory <recipe.yaml> [options]
  --batch-sizes <list>  comma-separated, ascending (default 1,2,4,8,16)
  --png <file>          plot (default memory-<recipe name>.png)
  --json <file>         write the rows as JSON
  --limit-mib <n>       treat a peak RSS above n MiB as out of memory (a memory budget)
  --backend <name>      auto | webgpu | wasm | cpu | tensorflow (default: the recipe's runtime.backend)
  --threads <n>         wasm threads (default: the recipe's runtime.threads, else 1)
  --random-full-size    the full-size nanoVLM v0.1 model (222M) with random weights instead of the
                        recipe's vision encoder, projector and decoder: nothing is downloaded
`;

export async function main(argv: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'batch-sizes': { type: 'string', default: '1,2,4,8,16' },
      png: { type: 'string' },
      json: { type: 'string' },
      'limit-mib': { type: 'string' },
      backend: { type: 'string' },
      threads: { type: 'string' },
      'random-full-size': { type: 'boolean', default: false },
      child: { type: 'string' }, // internal: measure one batch size in this process
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    env.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UserError('vlm memory needs exactly one recipe', { hint: 'e.g. vlm memory recipes/bench/small.yaml --batch-sizes 1,2,4,8,16' });
  const file = resolve(positionals[0]);
  if (values.child !== undefined) return child(file, Number(values.child), values, env);

  const sizes = values['batch-sizes']!.split(',').map((s) => Number(s.trim()));
  if (sizes.some((b) => !Number.isInteger(b) || b < 1))
    throw new UserError(`--batch-sizes must be positive integers, got "${values['batch-sizes']}"`, { hint: 'e.g. --batch-sizes 1,2,4,8,16' });
  const recipe = await resolveRecipe(file, { registry: env.registry }); // validate once, up front
  const name = recipe.data.name ?? basename(file, '.yaml');
  const limit = values['limit-mib'] !== undefined ? Number(values['limit-mib']) : undefined;

  const rows: MemoryRow[] = [];
  for (const b of [...sizes].sort((x, y) => x - y)) {
    env.log.info(`[${name}] batch size ${b} ...`);
    const args = [BIN, 'memory', file, '--child', String(b)];
    for (const k of ['backend', 'threads'] as const) if (values[k] !== undefined) args.push(`--${k}`, values[k]!);
    if (values['random-full-size']) args.push('--random-full-size');
    const res = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
    const line = (res.stdout ?? '').split('\n').find((l) => l.startsWith(CHILD_PREFIX));
    const estimate = (res.stdout ?? '').split('\n').find((l) => l.startsWith(ESTIMATE_PREFIX));
    let row: MemoryRow;
    if (line) row = JSON.parse(line.slice(CHILD_PREFIX.length));
    else {
      const err = `${res.stderr ?? ''}`.trim();
      // the OS killing it, V8 running out, or the wasm module aborting (its 4 GiB heap; reported by the CLI as out of memory)
      const oom = res.signal === 'SIGKILL' || /out of memory|OOM|Cannot enlarge memory|Array buffer allocation failed|heap limit|Aborted\(/i.test(err);
      row = { batch_size: b, status: oom ? 'oom' : 'error', message: oomLine(err) || `exit ${res.status ?? res.signal}` };
    }
    if (estimate) row.estimate_bytes = Number(estimate.slice(ESTIMATE_PREFIX.length));
    if (row.status === 'ok' && limit !== undefined && row.peak_rss_bytes! > limit * 2 ** 20) {
      row = { ...row, status: 'oom', message: `peak RSS ${mib(row.peak_rss_bytes!)} above --limit-mib ${limit}` };
    }
    rows.push(row);
    if (row.status === 'error') throw new Error(`vlm memory: batch size ${b} failed: ${row.message}`);
    if (row.status === 'oom') {
      env.log.info(`[${name}] batch size ${b}: out of memory (${row.message}); stopping`);
      break;
    }
  }

  env.stdout.write(formatMemoryTable(name, rows) + '\n');
  const png = values.png ?? `memory-${name}.png`;
  await renderPlot(name, rows, png);
  env.log.info(`wrote ${png}`);
  if (values.json) {
    writeFileSync(values.json, JSON.stringify({ recipe: file, name, rows }, null, 2) + '\n');
    env.log.info(`wrote ${values.json}`);
  }
  return 0;
}

/** One batch size, in this (child) process: two steps (the first creates the optimizer state), the second measured. */
async function child(file: string, batchSize: number, values: Record<string, unknown>, env: CommandEnv): Promise<number> {
  const r = await resolveRecipe(file, { registry: env.registry });
  if (values['random-full-size']) r.data.model = withFullSizeModel(r.data.model, env.registry);
  const rt0 = r.data.runtime ?? {};
  const threads = values.threads !== undefined ? Number(values.threads) : rt0.threads ?? 1;
  await initRuntime(((values.backend as string) ?? rt0.backend ?? 'auto') as BackendChoice, { threads });
  const seed = rt0.seed ?? 0;
  const quiet = { info() {}, warn() {}, debug() {} };
  const bctx = { recipe: r.data, recipeDir: r.dir, seed, log: quiet, positions: r.positions };
  const { model } = await buildComponents(r.data, env.registry, bctx);
  const { optimizer } = await buildOptimizer(r.data, env.registry, bctx, model);
  const host = benchBatch(model, batchSize, seed);
  const opts = { maxGradNorm: gradClip(r.data), timeForward: false, checkpoint: !!r.data.train?.activation_checkpointing };
  const { estimate, limit } = trainingMemory(model, optimizer, { batchSize, checkpoint: opts.checkpoint, backend: tf.getBackend(), clipping: opts.maxGradNorm > 0 });
  env.stdout.write(`${ESTIMATE_PREFIX}${estimate.total}\n`); // before the step: an OOM row still shows it
  // far above the backend's limit (the estimate is within ~15% where measured): an OOM row without the doomed step
  if (limit !== null && estimate.total > 1.25 * limit)
    throw outOfMemoryError('out of memory (estimated, not run)', estimate, { batchSize, checkpoint: opts.checkpoint, backend: tf.getBackend(), limit });
  await timedStep(model, optimizer, host, opts);
  let stepMs = 0;
  const prof = await tf.profile(async () => {
    const t = await timedStep(model, optimizer, host, opts);
    stepMs = t.data + t.fwdbwd + t.optimizer;
  });
  const row: MemoryRow = {
    batch_size: batchSize,
    status: 'ok',
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
    peak_tfjs_bytes: prof.peakBytes,
    ...(tf.getBackend() === 'webgpu' ? { gpu_bytes_allocated: (tf.memory() as { numBytesAllocatedInGPU?: number }).numBytesAllocatedInGPU } : {}),
    step_ms: stepMs,
  };
  env.stdout.write(CHILD_PREFIX + JSON.stringify(row) + '\n');
  return 0;
}

/** the out-of-memory line of a child's stderr (the CLI's message), else its last lines */
function oomLine(s: string): string {
  const hit = s.split('\n').find((l) => /ran out of memory|out of memory/i.test(l));
  return hit ? hit.replace(/^error: /, '').slice(0, 300) : lastLines(s);
}

function lastLines(s: string, n = 3): string {
  return s.split('\n').filter((l) => l.trim()).slice(-n).join(' | ').slice(0, 500);
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

export function formatMemoryTable(name: string, rows: MemoryRow[]): string {
  const head = ['batch', 'peak RSS', 'peak tfjs', 'estimate', 'step ms', 'status'];
  const body = rows.map((r) => [
    String(r.batch_size),
    r.peak_rss_bytes !== undefined ? mib(r.peak_rss_bytes) : '-',
    r.peak_tfjs_bytes !== undefined ? mib(r.peak_tfjs_bytes) : '-',
    r.estimate_bytes !== undefined ? mib(r.estimate_bytes) : '-',
    r.step_ms !== undefined ? r.step_ms.toFixed(0) : '-',
    r.status === 'ok' ? 'ok' : `${r.status}: ${r.message ?? ''}`,
  ]);
  const all = [head, ...body];
  const w = head.map((_, j) => Math.max(...all.map((r) => r[j].length)));
  const line = (r: string[]) => r.map((x, j) => (j === r.length - 1 ? x : x.padStart(w[j]))).join('  ');
  const ok = rows.filter((r) => r.status === 'ok').map((r) => r.batch_size);
  const largest = ok.length ? `largest batch size that fits: ${Math.max(...ok)}${rows.some((r) => r.status === 'oom') ? '' : ' (of those tried; none ran out of memory)'}` : 'no batch size fits';
  return [`peak memory of one training step: ${name} (backend ${tf.getBackend() ?? 'per child'})`, line(head), ...body.map(line), largest].join('\n');
}

/** Line plot of peak RSS and peak tfjs bytes against batch size (log2 axis), SVG -> PNG. */
export function memorySvg(name: string, rows: MemoryRow[]): string {
  const W = 640;
  const H = 400;
  const m = { l: 70, r: 20, t: 40, b: 50 };
  const ok = rows.filter((r) => r.status === 'ok');
  const xs = rows.map((r) => Math.log2(r.batch_size));
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs, x0 + 1);
  const yMax = Math.max(1, ...ok.map((r) => Math.max(r.peak_rss_bytes ?? 0, r.peak_tfjs_bytes ?? 0) / 2 ** 20)) * 1.1;
  const px = (b: number) => m.l + ((Math.log2(b) - x0) / (x1 - x0)) * (W - m.l - m.r);
  const py = (v: number) => H - m.b - (v / yMax) * (H - m.t - m.b);
  const series = (key: 'peak_rss_bytes' | 'peak_tfjs_bytes', color: string) => {
    const pts = ok.map((r) => `${px(r.batch_size).toFixed(1)},${py((r[key] ?? 0) / 2 ** 20).toFixed(1)}`);
    return `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.join(' ')}"/>` + pts.map((p) => `<circle cx="${p.split(',')[0]}" cy="${p.split(',')[1]}" r="3.5" fill="${color}"/>`).join('');
  };
  const yTicks = Array.from({ length: 6 }, (_, i) => (yMax / 5) * i);
  const esc = (s: string) => s.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(`peak memory per training step: ${name}`)}</text>`,
    ...yTicks.map((v) => `<line x1="${m.l}" x2="${W - m.r}" y1="${py(v)}" y2="${py(v)}" stroke="#ddd"/><text x="${m.l - 6}" y="${py(v) + 4}" text-anchor="end">${v.toFixed(yMax < 10 ? 1 : 0)}</text>`),
    ...rows.map((r) => `<text x="${px(r.batch_size)}" y="${H - m.b + 18}" text-anchor="middle">${r.batch_size}</text>`),
    ...rows.filter((r) => r.status === 'oom').map((r) => `<text x="${px(r.batch_size)}" y="${py(yMax * 0.9)}" text-anchor="middle" fill="#c00">OOM</text><line x1="${px(r.batch_size)}" x2="${px(r.batch_size)}" y1="${m.t}" y2="${H - m.b}" stroke="#c00" stroke-dasharray="4 3"/>`),
    `<line x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}" stroke="black"/><line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${H - m.b}" stroke="black"/>`,
    `<text x="${W / 2}" y="${H - 12}" text-anchor="middle">batch size</text>`,
    `<text x="16" y="${H / 2}" text-anchor="middle" transform="rotate(-90 16 ${H / 2})">MiB</text>`,
    series('peak_rss_bytes', '#1f77b4'),
    series('peak_tfjs_bytes', '#ff7f0e'),
    `<rect x="${m.l + 10}" y="${m.t + 4}" width="12" height="3" fill="#1f77b4"/><text x="${m.l + 28}" y="${m.t + 9}">peak RSS (process)</text>`,
    `<rect x="${m.l + 10}" y="${m.t + 20}" width="12" height="3" fill="#ff7f0e"/><text x="${m.l + 28}" y="${m.t + 25}">peak tfjs tensor bytes</text>`,
    '</svg>',
  ];
  return parts.join('\n');
}

export async function renderPlot(name: string, rows: MemoryRow[], png: string): Promise<void> {
  const sharp = (await import('sharp')).default;
  await sharp(Buffer.from(memorySvg(name, rows))).png().toFile(png);
}
