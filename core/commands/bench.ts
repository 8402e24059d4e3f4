// `vlm bench <recipe...> [--json <file>]` (and `npm run bench` = bench/run.ts on recipes/bench/):
// speed and memory of one recipe's model on random, seeded inputs (issue 7).
//   training step   median / min / max over --steps steps after --warmup, split into
//                   data (host batch -> tensors), forward, backward, optimiser (clip + AdamW);
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
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import type { CommandEnv } from '../cli.ts';
import { buildComponents } from '../build.ts';
import { UserError } from '../errors.ts';
import { generate } from '../generate.ts';
import type { VisionLanguageModel } from '../model/vlm.ts';
import { resolveRecipe } from '../recipe/index.ts';
import { describeRuntime, initRuntime, type BackendChoice, type RuntimeInfo } from '../runtime.ts';
import { clipGradNorm } from '../train/grads.ts';
import type { HostBatch, Logger, Optimizer, RegistryLike } from '../types.ts';
import { mulberry32 } from '../data/rng.ts';
import { withFullSizeModel } from '../model/random-checkpoint.ts';

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface BenchResult {
  name: string;
  recipe: string;
  backend: string;
  threads: number;
  /** wasm: which matrix-product kernel ran (native OpenBLAS or XNNPACK), and its threads */
  products?: string;
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
    no_cache: { tokens_per_s: number; ms: number; cpu_ms: number };
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
  log?: Logger;
}

export function spread(xs: number[]): Spread {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1] };
}

/** mulberry32: the benchmark inputs are the same on every run */
const rng = mulberry32;

/** The benchmark batch (see the header): B rows of T tokens, row 0 left-padded by T/4. */
export function benchBatch(model: VisionLanguageModel, batchSize: number, seed: number): HostBatch {
  const B = batchSize;
  const T = model.maxLength;
  const S = model.imageSize;
  const V = model.decoder.vocabSize;
  const r = rng(seed);
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

function toTensors(h: HostBatch) {
  return {
    images: tf.tensor4d(h.images, [h.batchSize, 3, h.imageSize, h.imageSize]),
    inputIds: tf.tensor2d(h.inputIds, [h.batchSize, h.seqLen], 'int32'),
    attentionMask: tf.tensor2d(h.attentionMask, [h.batchSize, h.seqLen], 'int32'),
    targets: tf.tensor2d(h.targets, [h.batchSize, h.seqLen], 'int32'),
  };
}

/** One training step as the train stage does it; returns the phase times (ms). */
export function trainStep(
  model: VisionLanguageModel,
  optimizer: Optimizer,
  host: HostBatch,
  opts: { maxGradNorm: number; timeForward: boolean; checkpoint?: boolean },
): { data: number; forward: number; fwdbwd: number; optimizer: number; cpu: number } {
  const trainable = optimizer.groups.flatMap((g) => g.params);
  const cpu0 = process.cpuUsage();
  let cpuExcluded = 0;
  const t0 = performance.now();
  const batch = toTensors(host);
  const t1 = performance.now();
  let forward = 0;
  if (opts.timeForward) {
    const f0 = performance.now();
    const c = process.cpuUsage();
    tf.tidy(() => model.loss(model.forward(batch.inputIds, batch.images, batch.attentionMask, { training: true }), batch.targets).dataSync());
    forward = performance.now() - f0;
    const d = process.cpuUsage(c);
    cpuExcluded = (d.user + d.system) / 1000; // the extra forward-only pass is not part of the step
  }
  const t2 = performance.now();
  const { loss, grads } = model.lossAndGrads(batch, trainable, { checkpoint: opts.checkpoint });
  loss.dataSync();
  const t3 = performance.now();
  const clipped = opts.maxGradNorm ? clipGradNorm(grads, opts.maxGradNorm) : { grads, norm: null };
  optimizer.step(clipped.grads, optimizer.groups.map((g) => g.lr));
  // the optimiser's updates are done once a value depending on them is read
  const first = model.params.get(trainable[0])!;
  tf.tidy(() => tf.sum(first).dataSync());
  const t4 = performance.now();
  tf.dispose([loss, ...grads.values(), ...(clipped.grads === grads ? [] : clipped.grads.values()), ...(clipped.norm ? [clipped.norm] : [])]);
  const cpu = process.cpuUsage(cpu0);
  tf.dispose(Object.values(batch));
  return { data: t1 - t0, forward, fwdbwd: t3 - t2, optimizer: t4 - t3, cpu: (cpu.user + cpu.system) / 1000 - cpuExcluded };
}

export async function createOptimizer(recipe: Record<string, any>, recipeDir: string, model: VisionLanguageModel, registry: RegistryLike, log: Logger): Promise<Optimizer> {
  return registry.create('optimizer', recipe.optimizer ?? { use: 'adamw', lr: 1e-4 }, {
    recipe,
    recipeDir,
    seed: recipe.runtime?.seed ?? 0,
    log,
    yamlPath: 'optimizer',
    built: { vision: model.vision, projector: model.projector, decoder: model.decoder },
  });
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
    trainStep(model, optimizer, host, { maxGradNorm: info.maxGradNorm, timeForward: true, checkpoint: info.checkpoint });
    sample();
  }
  const before = tf.memory().numTensors;
  const times: ReturnType<typeof trainStep>[] = [];
  for (let i = 0; i < o.steps; i++) {
    times.push(trainStep(model, optimizer, host, { maxGradNorm: info.maxGradNorm, timeForward: true, checkpoint: info.checkpoint }));
    sample();
    say(`step ${i + 1}/${o.steps}: ${(times[i].data + times[i].fwdbwd + times[i].optimizer).toFixed(1)} ms`);
  }
  const after = tf.memory().numTensors;
  // tfjs bytes: the peak of one more step, profiled (not timed)
  const prof = await tf.profile(() => {
    trainStep(model, optimizer, host, { maxGradNorm: info.maxGradNorm, timeForward: false, checkpoint: info.checkpoint });
  });
  sample();
  const stepMs = times.map((t) => t.data + t.fwdbwd + t.optimizer);
  const imageTokens = model.numImageTokens;
  const tokensPerStep = host.attentionMask.reduce((s, x) => s + x, 0) + host.batchSize * imageTokens;
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
    say(`generation: ${o.genTokens} new tokens, no cache`);
    const nc = await run(false);
    tf.dispose([ids, img]);
    gen = { new_tokens: o.genTokens, prompt_tokens: T + imageTokens, kv_cache: kv, no_cache: nc };
  }

  const counts = model.parameterCounts();
  return {
    name: info.name,
    recipe: info.recipe,
    backend: info.runtime.backend,
    threads: info.runtime.threads ?? 1,
    products: info.runtime.products,
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
    (r0.products ? `\n${r0.products}` : '');
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
    ['generate tok/s, no cache', (r) => (r.generate ? r.generate.no_cache.tokens_per_s.toFixed(1) : '-')],
    ['generate CPU ms/token, KV / no cache', (r) => (r.generate ? `${f1(r.generate.kv_cache.cpu_ms / r.generate.new_tokens)} / ${f1(r.generate.no_cache.cpu_ms / r.generate.new_tokens)}` : '-')],
    ['peak RSS', (r) => mib(r.peak_rss_bytes)],
    ['peak tfjs bytes (1 step)', (r) => mib(r.peak_tfjs_bytes)],
    ['live tensors before / after', (r) => `${r.live_tensors.before} / ${r.live_tensors.after}`],
  ];
  const cols = [['', ...results.map((r) => r.name)], ...rows.map(([label, f]) => [label, ...results.map(f)])];
  const widths = cols[0].map((_, j) => Math.max(...cols.map((c) => c[j].length)));
  const line = (c: string[]) => c.map((x, j) => (j === 0 ? x.padEnd(widths[j]) : x.padStart(widths[j]))).join('  ');
  return [head, line(cols[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cols.slice(1).map(line)].join('\n');
}

// ---- the command ----------------------------------------------------------------------------------

export const HELP = `Usage: vlm bench <recipe.yaml> [more recipes] [options]
  --json <file>       write the results as JSON (one recipe: an object; several: an array)
  --steps <n>         timed training steps (default 10)
  --warmup <n>        untimed steps first (default 2)
  --gen-tokens <n>    new tokens per generation run (default 32)
  --gen-runs <n>      measured generation runs after one warm-up run; the median is reported (default 3)
  --no-generate       skip the generation benchmark
  --backend <name>    auto | webgpu | wasm | cpu | tensorflow (default: the first recipe's runtime.backend)
  --threads <n>       wasm threads (default: the recipe's runtime.threads, else 1)
  --batch-size <n>    overrides train.batch_size
  --random-full-size  the full-size nanoVLM v0.1 model (222M) with random weights instead of the
                      recipe's vision encoder, projector and decoder: nothing is downloaded
`;

export async function main(argv: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      json: { type: 'string' },
      steps: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      'gen-tokens': { type: 'string', default: '32' },
      'gen-runs': { type: 'string', default: '3' },
      'no-generate': { type: 'boolean', default: false },
      backend: { type: 'string' },
      threads: { type: 'string' },
      'batch-size': { type: 'string' },
      'random-full-size': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    env.stdout.write(HELP);
    return 0;
  }
  if (positionals.length === 0) throw new UserError('vlm bench needs a recipe', { hint: 'e.g. vlm bench recipes/bench/small.yaml (npm run bench runs recipes/bench/tiny.yaml and small.yaml)' });
  const int = (name: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UserError(`--${name} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
  const opts: BenchOptions = {
    steps: int('steps', values.steps, 1),
    warmup: int('warmup', values.warmup, 0),
    genTokens: int('gen-tokens', values['gen-tokens'], 1),
    genRuns: int('gen-runs', values['gen-runs'], 1),
    generate: !values['no-generate'],
    log: env.log,
  };

  const recipes = [];
  for (const p of positionals) recipes.push(await resolveRecipe(resolve(p), { registry: env.registry }));
  for (const r of recipes) {
    if (values['random-full-size']) r.data.model = withFullSizeModel(r.data.model);
    if (values['batch-size'] !== undefined) r.data.train = { ...r.data.train, batch_size: int('batch-size', values['batch-size'], 1) };
  }
  const rt0 = recipes[0].data.runtime ?? {};
  const threads = values.threads !== undefined ? int('threads', values.threads, 1) : rt0.threads ?? 1;
  const runtime = await initRuntime((values.backend ?? rt0.backend ?? 'auto') as BackendChoice, { threads });
  env.log.info(describeRuntime(runtime));

  const results: BenchResult[] = [];
  for (const r of recipes) {
    const seed = r.data.runtime?.seed ?? 0;
    const log = env.log;
    const { model } = await buildComponents(r.data, env.registry, { recipe: r.data, recipeDir: r.dir, seed, log });
    const optimizer = await createOptimizer(r.data, r.dir, model, env.registry, log);
    try {
      results.push(
        await benchModel(
          model,
          optimizer,
          { name: r.data.name ?? r.file, recipe: r.file, runtime, batchSize: r.data.train?.batch_size ?? 8, seed, maxGradNorm: gradClip(r.data), checkpoint: !!r.data.train?.activation_checkpointing },
          opts,
        ),
      );
    } finally {
      optimizer.dispose();
      model.dispose();
    }
  }
  env.stdout.write(formatTable(results) + '\n');
  if (values.json) {
    writeFileSync(values.json, JSON.stringify(results.length === 1 ? results[0] : results, null, 2) + '\n');
    env.log.info(`wrote ${values.json}`);
  }
  return 0;
}
