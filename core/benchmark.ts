// The benchmark behind `vlm bench` (core/commands/bench.ts), `vlm memory` and bench/*.ts: speed
// and memory of one recipe's model on random, seeded inputs (issue 7).
//   training step   core/train/step.ts trainStep, the train stage's step (no schedule: base lr),
//                   median / min / max over --steps steps after --warmup, split into
//                   data (host batch -> tensors), forward, backward (+ gradient norm and
//                   clipping), optimiser (the update);
//                   forward is timed on a separate forward-only pass of the same batch, backward
//                   = (forward + backward) - forward;
//   tokens/s        (real text tokens + image tokens) per median step, as the train stage counts;
//   generation      greedy, --gen-tokens new tokens (default 32) for one unpadded row, with and
//                   without the KV cache (core/generate.ts; never stops at eos), prefill included;
//                   one warm-up run of the same length, then the median of --gen-runs runs;
//   CPU time        process CPU time (all threads) of each step and generation run, the figure to
//                   compare when other processes share the machine (wall time then inflates);
//   memory          peak RSS of the process (ru_maxrss: the high-water mark, as the PyTorch
//                   reference reports; several recipes in one process: the peak so far), tfjs
//                   peak bytes of one training step (tf.profile), live tensor count before and
//                   after the timed steps.
// The batch: train.batch_size rows of decoder max_length tokens, row 0 left-padded by a quarter
// of the length (16 of 64 on `small`), targets = next token with the first half -100.
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { toTensors } from './data/collator.ts';
import { toHost } from './host.ts';
import { describeAdapter, type GpuAdapterSummary } from './webgpu.ts';
import { generate } from './generate.ts';
import type { VisionLanguageModel } from './model/vlm.ts';
import type { RuntimeInfo } from './runtime.ts';
import { stepTokens, trainStep, type StepPhase } from './train/step.ts';
import type { HostBatch, Logger, Optimizer } from './types.ts';
import { mulberry32 } from './rng.ts';

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface BenchResult {
  name: string;
  recipe: string;
  backend: string;
  /** runtime.threads in effect: BLAS threads with the native products, else the wasm build's */
  threads: number;
  /** wasm: threads of the threaded wasm build (1: the single-threaded build) */
  wasm_threads?: number;
  /** wasm: which matrix-product kernel ran (native OpenBLAS or XNNPACK), and its threads */
  products?: string;
  /** webgpu: the GPU adapter (vendor, architecture, software or not, limits) */
  adapter?: GpuAdapterSummary;
  /** webgpu: bytes of GPU buffers allocated by the backend after the measured steps */
  gpu_bytes_allocated?: number;
  batch_size: number;
  seq_len: number; // text positions T
  image_tokens: number;
  params: number;
  steps: number;
  warmup: number;
  train_step_ms: Spread; // data + forward + backward + optimiser
  /** CPU time (all threads) of the same work: robust when other processes share the machine */
  train_step_cpu_ms: Spread;
  forward_ms: Spread;
  backward_ms: Spread;
  optimizer_ms: Spread;
  data_wait_ms: Spread;
  tokens_per_step: number;
  tokens_per_s: number;
  generate: {
    new_tokens: number;
    prompt_tokens: number;
    kv_cache: { tokens_per_s: number; ms: number; cpu_ms: number };
    /** null with --kv-only */
    no_cache: { tokens_per_s: number; ms: number; cpu_ms: number } | null;
  } | null;
  peak_rss_bytes: number;
  peak_tfjs_bytes: number;
  live_tensors: { before: number; after: number };
  node: string;
  date: string;
  /** os.loadavg() at the end: other processes on the machine distort every figure */
  load_avg: number[];
  cpus: number;
}

export interface BenchOptions {
  steps: number;
  warmup: number;
  genTokens: number;
  /** measured generation runs (the median is reported), after one warm-up run */
  genRuns: number;
  generate: boolean;
  /** skip the full-recompute generation run (minutes on the 222M model) */
  kvOnly?: boolean;
  log?: Logger;
}

export function spread(xs: number[]): Spread {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1] };
}

/** The benchmark batch (see the header): B rows of T tokens, row 0 left-padded by T/4. */
export function benchBatch(model: VisionLanguageModel, batchSize: number, seed: number): HostBatch {
  const B = batchSize;
  const T = model.maxLength;
  const S = model.imageSize;
  const V = model.decoder.vocabSize;
  const r = mulberry32(seed);
  const images = new Float32Array(B * 3 * S * S);
  for (let i = 0; i < images.length; i++) images[i] = Math.floor(r() * 256) / 255;
  const inputIds = new Int32Array(B * T);
  const attentionMask = new Int32Array(B * T).fill(1);
  const targets = new Int32Array(B * T).fill(-100);
  const pad = Math.round(T / 4);
  const padId = 0;
  for (let b = 0; b < B; b++) {
    const p = b === 0 ? pad : 0;
    for (let t = 0; t < T; t++) {
      if (t < p) {
        inputIds[b * T + t] = padId;
        attentionMask[b * T + t] = 0;
      } else {
        inputIds[b * T + t] = 1 + Math.floor(r() * (V - 1));
      }
    }
    // next-token targets; the first half of the positions (and padding) ignored
    for (let t = Math.max(Math.floor(T / 2), p); t < T - 1; t++) targets[b * T + t] = inputIds[b * T + t + 1];
  }
  return { batchSize: B, seqLen: T, images, imageSize: S, inputIds, attentionMask, targets, sampleIds: [] };
}

/**
 * One training step (core/train/step.ts trainStep, as the train stage runs it, without a schedule)
 * with its phases timed (ms) and its process CPU time; with `timeForward`, a separate
 * forward-only pass of the same batch first (not counted in the step's CPU time).
 */
export async function timedStep(
  model: VisionLanguageModel,
  optimizer: Optimizer,
  host: HostBatch,
  opts: { maxGradNorm: number; timeForward: boolean; checkpoint?: boolean },
): Promise<{ data: number; forward: number; fwdbwd: number; optimizer: number; cpu: number }> {
  const forward = opts.timeForward ? await forwardOnly(model, host) : 0;
  const cpu0 = process.cpuUsage(); // the step's CPU time, without the forward-only pass
  const at: Partial<Record<StepPhase, number>> = {};
  const t0 = performance.now();
  await trainStep(model, optimizer, [host], { maxGradNorm: opts.maxGradNorm, checkpoint: opts.checkpoint, mark: (p) => (at[p] = performance.now()) });
  // the optimiser's updates are done once a value depending on them is read (async backends)
  const first = model.params.get(optimizer.groups[0].params[0])!;
  await readAndDispose(tf.tidy(() => tf.sum(first)));
  const t4 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  return { data: at.tensors! - t0, forward, fwdbwd: at.clip! - at.tensors!, optimizer: t4 - at.clip!, cpu: (cpu.user + cpu.system) / 1000 };
}

/** The training forward pass and loss alone (no gradients), as the benchmark times it; returns its milliseconds. */
export async function forwardOnly(model: VisionLanguageModel, host: HostBatch): Promise<number> {
  const b = toTensors(host);
  try {
    await toHost(b.targets, b.attentionMask); // what the loss reads on the host (GPU backends: core/host.ts)
    const f0 = performance.now();
    await readAndDispose(tf.tidy(() => model.loss(model.forward(b.inputIds, b.images, b.attentionMask, { training: true }), b.targets)));
    return performance.now() - f0;
  } finally {
    tf.dispose([b.images, b.inputIds, b.targets, ...(b.attentionMask ? [b.attentionMask] : [])]);
  }
}

/** reads are asynchronous: a GPU backend cannot read synchronously */
async function readAndDispose(t: tf.Tensor): Promise<void> {
  await t.data();
  t.dispose();
}

/** the process's peak RSS so far (getrusage ru_maxrss, what the PyTorch reference reports), or RSS now */
const rss = () => Math.max(process.memoryUsage().rss, process.resourceUsage().maxRSS * 1024);

/** train.max_grad_norm: null or 0 = no clipping (nanoVLM v0.1, the reference); absent = 1.0 */
export function gradClip(recipe: Record<string, any>): number {
  const v = recipe.train?.max_grad_norm;
  return v === undefined ? 1.0 : v || 0;
}

/** Benchmark an already built model (the runtime is chosen by the caller). */
export async function benchModel(
  model: VisionLanguageModel,
  optimizer: Optimizer,
  info: { name: string; recipe: string; runtime: RuntimeInfo; batchSize: number; seed: number; maxGradNorm: number; checkpoint?: boolean },
  o: BenchOptions,
): Promise<BenchResult> {
  let peakRss = rss();
  const sample = () => (peakRss = Math.max(peakRss, rss()));
  const host = benchBatch(model, info.batchSize, info.seed);
  const say = (m: string) => o.log?.info(`[${info.name}] ${m}`);

  say(`warm-up: ${o.warmup} steps`);
  for (let i = 0; i < o.warmup; i++) {
    await timedStep(model, optimizer, host, { maxGradNorm: info.maxGradNorm, timeForward: true, checkpoint: info.checkpoint });
    sample();
  }
  const before = tf.memory().numTensors;
  const times: Awaited<ReturnType<typeof timedStep>>[] = [];
  for (let i = 0; i < o.steps; i++) {
    times.push(await timedStep(model, optimizer, host, { maxGradNorm: info.maxGradNorm, timeForward: true, checkpoint: info.checkpoint }));
    sample();
    say(`step ${i + 1}/${o.steps}: ${(times[i].data + times[i].fwdbwd + times[i].optimizer).toFixed(1)} ms`);
  }
  const after = tf.memory().numTensors;
  // tfjs bytes: the peak of one more step, profiled (not timed)
  const prof = await tf.profile(async () => {
    await timedStep(model, optimizer, host, { maxGradNorm: info.maxGradNorm, timeForward: false, checkpoint: info.checkpoint });
  });
  sample();
  const stepMs = times.map((t) => t.data + t.fwdbwd + t.optimizer);
  const imageTokens = model.numImageTokens;
  const tokensPerStep = stepTokens([host], imageTokens);
  const median = spread(stepMs).median;

  let gen: BenchResult['generate'] = null;
  if (o.generate) {
    // one unpadded row (row 1 if there is one), greedy, never stopping at eos
    const row = host.batchSize > 1 ? 1 : 0;
    const T = host.seqLen;
    const S = host.imageSize;
    const ids = tf.tensor2d(host.inputIds.subarray(row * T, (row + 1) * T), [1, T], 'int32');
    const img = tf.tensor4d(host.images.subarray(row * 3 * S * S, (row + 1) * 3 * S * S), [1, 3, S, S]);
    const run = async (useCache: boolean) => {
      const opts = { maxNewTokens: o.genTokens, greedy: true, useCache, stopAtEos: false };
      // warm-up: one run of the same length (the host-side decode step of the KV-cache path is
      // JavaScript: V8 optimises it during its first calls), then the median of genRuns runs
      await generate(model, { inputIds: ids, attentionMask: null, images: img }, opts);
      const runs: { tokens_per_s: number; ms: number; cpu_ms: number }[] = [];
      for (let k = 0; k < o.genRuns; k++) {
        const c0 = process.cpuUsage();
        const g0 = performance.now();
        const out = await generate(model, { inputIds: ids, attentionMask: null, images: img }, opts);
        const ms = performance.now() - g0;
        const c = process.cpuUsage(c0);
        sample();
        if (out[0].length !== o.genTokens) throw new Error(`generate returned ${out[0].length} tokens, expected ${o.genTokens}`);
        runs.push({ tokens_per_s: (o.genTokens / ms) * 1000, ms, cpu_ms: (c.user + c.system) / 1000 });
      }
      runs.sort((a, b) => a.ms - b.ms);
      return runs[(runs.length - 1) >> 1];
    };
    say(`generation: ${o.genTokens} new tokens, KV cache`);
    const kv = await run(true);
    let nc = null;
    if (!o.kvOnly) {
      say(`generation: ${o.genTokens} new tokens, no cache`);
      nc = await run(false);
    }
    tf.dispose([ids, img]);
    gen = { new_tokens: o.genTokens, prompt_tokens: T + imageTokens, kv_cache: kv, no_cache: nc };
  }

  const counts = model.parameterCounts();
  return {
    name: info.name,
    recipe: info.recipe,
    backend: info.runtime.backend,
    threads: info.runtime.blasThreads ?? info.runtime.threads ?? 1,
    ...(info.runtime.backend === 'wasm' ? { wasm_threads: info.runtime.threads ?? 1 } : {}),
    products: info.runtime.products,
    ...(info.runtime.adapter ? { adapter: info.runtime.adapter, gpu_bytes_allocated: (tf.memory() as { numBytesAllocatedInGPU?: number }).numBytesAllocatedInGPU } : {}),
    batch_size: host.batchSize,
    seq_len: host.seqLen,
    image_tokens: imageTokens,
    params: counts.total,
    steps: o.steps,
    warmup: o.warmup,
    train_step_ms: spread(stepMs),
    train_step_cpu_ms: spread(times.map((t) => t.cpu)),
    forward_ms: spread(times.map((t) => t.forward)),
    backward_ms: spread(times.map((t) => Math.max(0, t.fwdbwd - t.forward))),
    optimizer_ms: spread(times.map((t) => t.optimizer)),
    data_wait_ms: spread(times.map((t) => t.data)),
    tokens_per_step: tokensPerStep,
    tokens_per_s: (tokensPerStep / median) * 1000,
    generate: gen,
    peak_rss_bytes: peakRss,
    peak_tfjs_bytes: prof.peakBytes,
    live_tensors: { before, after },
    node: process.version,
    date: new Date().toISOString(),
    load_avg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    cpus: os.cpus().length,
  };
}

// ---- the readable table ----------------------------------------------------------------------------

const f1 = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const sp = (s: Spread) => `${f1(s.median)} (${f1(s.min)}-${f1(s.max)})`;
const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

export function formatTable(results: BenchResult[]): string {
  if (results.length === 0) return '';
  const r0 = results[0];
  const head =
    `backend ${r0.backend}, ${r0.threads} thread${r0.threads === 1 ? '' : 's'} · node ${r0.node} · ${r0.cpus} cpus, ` +
    `load average ${r0.load_avg.map((x) => x.toFixed(1)).join(' ')} · ${r0.date}` +
    (r0.products ? `\n${r0.products}` : '') +
    (r0.adapter ? `\n${describeAdapter(r0.adapter)}` : '');
  const rows: [string, (r: BenchResult) => string][] = [
    ['params', (r) => r.params.toLocaleString('en-US')],
    ['batch x text length (+ image tokens)', (r) => `${r.batch_size} x ${r.seq_len} (+${r.image_tokens})`],
    ['steps (warm-up)', (r) => `${r.steps} (${r.warmup})`],
    ['train step ms, median (min-max)', (r) => sp(r.train_step_ms)],
    ['train step CPU ms (all threads)', (r) => sp(r.train_step_cpu_ms)],
    ['  forward ms', (r) => sp(r.forward_ms)],
    ['  backward ms', (r) => sp(r.backward_ms)],
    ['  optimiser ms', (r) => sp(r.optimizer_ms)],
    ['  data ms (batch -> tensors)', (r) => sp(r.data_wait_ms)],
    ['train tokens/s', (r) => r.tokens_per_s.toFixed(0)],
    ['generate tok/s, KV cache', (r) => (r.generate ? r.generate.kv_cache.tokens_per_s.toFixed(1) : '-')],
    ['generate tok/s, no cache', (r) => (r.generate?.no_cache ? r.generate.no_cache.tokens_per_s.toFixed(1) : '-')],
    ['generate CPU ms/token, KV / no cache', (r) => (r.generate ? `${f1(r.generate.kv_cache.cpu_ms / r.generate.new_tokens)} / ${r.generate.no_cache ? f1(r.generate.no_cache.cpu_ms / r.generate.new_tokens) : '-'}` : '-')],
    ['peak RSS', (r) => mib(r.peak_rss_bytes)],
    ['peak tfjs bytes (1 step)', (r) => mib(r.peak_tfjs_bytes)],
    ['live tensors before / after', (r) => `${r.live_tensors.before} / ${r.live_tensors.after}`],
  ];
  const cols = [['', ...results.map((r) => r.name)], ...rows.map(([label, f]) => [label, ...results.map(f)])];
  const widths = cols[0].map((_, j) => Math.max(...cols.map((c) => c[j].length)));
  const line = (c: string[]) => c.map((x, j) => (j === 0 ? x.padEnd(widths[j]) : x.padStart(widths[j]))).join('  ');
  return [head, line(cols[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cols.slice(1).map(line)].join('\n');
}

