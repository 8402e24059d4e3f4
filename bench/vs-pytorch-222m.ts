// `npx tsx bench/vs-pytorch-222m.ts --nanovlm <nanoVLM v0.1 checkout> [--batch-sizes 1,2,4,8]
// [--threads 1,2] [--generate] [--recipe recipes/bench/full-222m.yaml] [--python /usr/bin/python3] [--json out.json]`: the
// full-size 222M model (issue 14, item 5) side by side with PyTorch, in one command. For each batch
// size, one after the other and each in its own process (so each peak RSS is that batch size's):
//   PyTorch: bench/reference/nanovlm_222m.py (nanoVLM v0.1's code; one untimed step that creates
//            AdamW's state, then one timed step), torch and OpenBLAS threads n (--threads, default 1);
//   ours:    `vlm bench <recipe> --batch-size B --steps 1 --warmup 1 --no-generate --backend wasm`
//            (one warm-up step that creates the optimizer state, one timed step, then one profiled
//            step for the tfjs peak bytes).
// --generate: then greedy generation of 32 tokens with a KV cache on both sides (PyTorch: v0.1's
// modules with bench/reference/kv_generate.py; ours: `vlm bench --kv-only`), tokens/s and ratio.
// Both sides train all 222,081,600 parameters with random weights (nothing to download), on the
// same batch layout (core/benchmark.ts benchBatch). Prints one table (step wall and CPU time, peak
// RSS, the ratios ours / PyTorch, the load average around each run) and, with --json, the raw rows.
// Wall times are only comparable on a quiet machine; CPU times and peak RSS hardly move with load.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sameBlasCoreForBothSides } from './blas-core.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const blasCore = sameBlasCoreForBothSides();
const { values } = parseArgs({
  options: {
    nanovlm: { type: 'string' },
    'batch-sizes': { type: 'string', default: '1,2,4,8' },
    recipe: { type: 'string', default: join(root, 'recipes/bench/full-222m.yaml') },
    python: { type: 'string', default: '/usr/bin/python3' },
    threads: { type: 'string', default: '1' },
    generate: { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
if (!values.nanovlm) {
  console.error('usage: npx tsx bench/vs-pytorch-222m.ts --nanovlm <nanoVLM v0.1 checkout> [--batch-sizes 1,2,4,8] [--threads 1,2] [--generate] [--recipe <yaml>] [--json out.json]');
  process.exit(2);
}
const batches = values['batch-sizes']!.split(',').map(Number);
if (batches.some((b) => !Number.isInteger(b) || b < 1)) {
  console.error(`--batch-sizes: positive integers separated by commas, got '${values['batch-sizes']}'`);
  process.exit(2);
}
const threads = values.threads!.split(',').map(Number);
if (threads.some((t) => !Number.isInteger(t) || t < 1)) {
  console.error(`--threads: positive integers separated by commas, got '${values.threads}'`);
  process.exit(2);
}
const tmp = mkdtempSync(join(os.tmpdir(), 'vs-pytorch-222m-'));
const load = () => os.loadavg().map((l) => l.toFixed(1)).join(' ');

interface Row {
  side: 'PyTorch' | 'ours';
  batch: number;
  threads: number;
  wall_ms: number;
  cpu_ms: number;
  peak_rss_bytes: number;
  /** --generate: greedy tokens/s with the KV cache (32 tokens, one row, prefill included) */
  kv_tokens_per_s?: number;
  load: string;
}

function run(side: Row['side'], batch: number, nt: number, cmd: string, args: string[], env: NodeJS.ProcessEnv, json: string, pick: (r: any) => Omit<Row, 'side' | 'batch' | 'threads' | 'load'>): Row {
  const before = load();
  const r = spawnSync(cmd, args, { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${side}, batch ${batch}, ${nt} thread(s) failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  const raw = JSON.parse(readFileSync(json, 'utf8'));
  const row: Row = { side, batch, threads: nt, ...pick(Array.isArray(raw) ? raw[0] : raw), load: `${before} → ${load()}` };
  console.error(`${side}, batch ${batch}, ${nt} thread(s): step ${(row.wall_ms / 1e3).toFixed(1)} s (CPU ${(row.cpu_ms / 1e3).toFixed(1)} s), peak RSS ${(row.peak_rss_bytes / 2 ** 30).toFixed(2)} GiB, load ${row.load}`);
  return row;
}

const rows: Row[][] = [];
try {
  for (const b of batches) {
    for (const nt of threads) {
      const tj = join(tmp, `torch-${b}-${nt}.json`);
      const torch = run('PyTorch', b, nt, values.python!, [join(root, 'bench/reference/nanovlm_222m.py'), '--nanovlm', values.nanovlm, '--batch-size', String(b), '--steps', '1', '--threads', String(nt), ...(values.generate ? ['--generate', '32'] : []), '--json', tj],
        { OPENBLAS_NUM_THREADS: String(nt) }, tj, (r) => ({ wall_ms: r.step_ms[0], cpu_ms: r.step_cpu_ms[0], peak_rss_bytes: r.peak_rss_bytes, kv_tokens_per_s: r.generate?.kv_cache.tokens_per_s }));
      const oj = join(tmp, `ours-${b}-${nt}.json`);
      const ours = run('ours', b, nt, process.execPath, ['--import', 'tsx', join(root, 'bench/run.ts'), values.recipe!, '--batch-size', String(b), '--steps', '1', '--warmup', '1', ...(values.generate ? ['--kv-only', '--gen-tokens', '32'] : ['--no-generate']), '--backend', 'wasm', '--threads', String(nt), '--json', oj],
        {}, oj, (r) => ({ wall_ms: r.train_step_ms.median, cpu_ms: r.train_step_cpu_ms.median, peak_rss_bytes: r.peak_rss_bytes, kv_tokens_per_s: r.generate?.kv_cache.tokens_per_s }));
      rows.push([torch, ours]);
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const gib = (x: number) => `${(x / 2 ** 30).toFixed(2)} GiB`;
const s = (ms: number) => `${(ms / 1e3).toFixed(1)} s`;
console.log(`full-size 222M, fwd + bwd + AdamW · recipe ${values.recipe} · node ${process.version} · ${os.cpus().length} cpus · ${blasCore} · ${new Date().toISOString()}`);
const kvHead = values.generate ? ' PyTorch KV tok/s | ours KV tok/s | KV ratio (ours / PyTorch) |' : '';
console.log(`| batch | threads | PyTorch step (CPU) | ours step (CPU) | wall ratio | CPU ratio (ours / PyTorch) |${kvHead} PyTorch peak RSS | ours peak RSS | RSS ratio | load average (PyTorch run; ours) |`);
console.log(`|---:|---:|---|---|---:|---:|${values.generate ? '---:|---:|---:|' : ''}---:|---:|---:|---|`);
for (const [t, o] of rows) {
  console.log(`| ${t.batch} | ${t.threads} | ${s(t.wall_ms)} (${s(t.cpu_ms)}) | ${s(o.wall_ms)} (${s(o.cpu_ms)}) | ${(o.wall_ms / t.wall_ms).toFixed(2)}× | ${(o.cpu_ms / t.cpu_ms).toFixed(2)}× |${values.generate ? ` ${t.kv_tokens_per_s!.toFixed(1)} | ${o.kv_tokens_per_s!.toFixed(1)} | ${(o.kv_tokens_per_s! / t.kv_tokens_per_s!).toFixed(2)}× |` : ''} ${gib(t.peak_rss_bytes)} | ${gib(o.peak_rss_bytes)} | ${(o.peak_rss_bytes / t.peak_rss_bytes).toFixed(2)}× | ${t.load}; ${o.load} |`);
}
if (values.json) writeFileSync(values.json, JSON.stringify(rows.flat(), null, 2) + '\n');
