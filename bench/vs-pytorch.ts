// `npx tsx bench/vs-pytorch.ts --nanovlm <nanoVLM v0.1 checkout> [--threads 1,2] [--steps 10]
// [--xnnpack] [--no-direct] [--no-fused] [--repeat n] [--python /usr/bin/python3]`: the `small` benchmark side by side with PyTorch
// (issue 16), in one command: for each thread count, bench/reference/nanovlm_small.py (nanoVLM
// v0.1's model code, torch.set_num_threads(n) and OPENBLAS_NUM_THREADS=n) and `vlm bench
// recipes/bench/small.yaml --threads n` (wasm threads and BLAS threads n), one after the other;
// --xnnpack adds our run with VLM_NATIVE_MATMUL=0 (the products on XNNPACK: the "before");
// --no-direct our run with VLM_NATIVE_DIRECT=0 (native products, but AdamW, the gradient norm and
// generation's one-token products through tfjs kernels: before core/kernels/native-direct.ts);
// --no-fused our run with VLM_NATIVE_FUSED=0 (RoPE, the loss's log-softmax, GELU/SiLU chains through tfjs kernels);
// --repeat n runs the whole sequence n times (rows marked #1, #2, ...: the spread under load).
// Prints one table: train step (wall and CPU), forward / backward / optimiser, KV-cache
// generation, the ratios ours / PyTorch, the load average around each run, and which product
// kernel (and OpenBLAS core) each side ran. The environment is passed to both sides as is
// (OPENBLAS_CORETYPE included; unset, both get the core vlm picks from the CPU flags).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
    threads: { type: 'string', default: '1,2' },
    steps: { type: 'string', default: '10' },
    xnnpack: { type: 'boolean', default: false },
    'no-direct': { type: 'boolean', default: false },
    'no-fused': { type: 'boolean', default: false },
    repeat: { type: 'string', default: '1' },
    python: { type: 'string', default: '/usr/bin/python3' },
  },
});
if (!values.nanovlm) {
  console.error('usage: npx tsx bench/vs-pytorch.ts --nanovlm <nanoVLM v0.1 checkout> [--threads 1,2] [--steps 10] [--xnnpack] [--no-direct] [--no-fused]');
  process.exit(2);
}
const tmp = mkdtempSync(join(os.tmpdir(), 'vs-pytorch-'));
const load = () => os.loadavg().map((l) => l.toFixed(1)).join(' ');

interface Side {
  label: string;
  train: number;
  cpu: number;
  fwd: number;
  bwd: number;
  opt: number;
  kv: number;
  kernel: string;
  load: string;
}

function run(label: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, json: string, kernel: (r: any, out: string) => string): Side {
  const before = load();
  const r = spawnSync(cmd, args, { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${label} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  const raw = JSON.parse(readFileSync(json, 'utf8'));
  const res = Array.isArray(raw) ? raw[0] : raw;
  return {
    label,
    train: res.train_step_ms.median,
    cpu: res.train_step_cpu_ms.median,
    fwd: res.forward_ms.median,
    bwd: res.backward_ms.median,
    opt: res.optimizer_ms.median,
    kv: res.generate.kv_cache.tokens_per_s,
    kernel: kernel(res, r.stdout),
    load: `${before} → ${load()}`,
  };
}

const rows: Side[][] = [];
const repeat = Number(values.repeat);
for (let round = 1; round <= repeat; round++) for (const n of values.threads!.split(',').map(Number)) {
  const steps = values.steps!;
  const tag = repeat > 1 ? ` #${round}` : '';
  const t = run(`PyTorch, ${n} thread${n > 1 ? 's' : ''}${tag}`, values.python!, [join(root, 'bench/reference/nanovlm_small.py'), '--nanovlm', values.nanovlm, '--threads', String(n), '--steps', steps, '--json', join(tmp, `torch-${n}.json`)],
    { OPENBLAS_NUM_THREADS: String(n) }, join(tmp, `torch-${n}.json`), (r) => `OpenBLAS ${r.openblas_core}`);
  const ours = (variant: '' | 'XNNPACK' | 'no direct' | 'no fused') =>
    run(`ours${variant ? ` (${variant})` : ''}, ${n} thread${n > 1 ? 's' : ''}${tag}`, process.execPath, ['--import', 'tsx', join(root, 'bench/run.ts'), join(root, 'recipes/bench/small.yaml'), '--threads', String(n), '--steps', steps, '--json', join(tmp, `ours-${n}-${variant}.json`)],
      variant === 'XNNPACK' ? { VLM_NATIVE_MATMUL: '0' } : variant === 'no direct' ? { VLM_NATIVE_DIRECT: '0' } : variant === 'no fused' ? { VLM_NATIVE_FUSED: '0' } : {}, join(tmp, `ours-${n}-${variant}.json`), (r) => String(r.products ?? '').replace(/^products: /, ''));
  const group = [t, ours('')];
  if (values['no-direct']) group.push(ours('no direct'));
  if (values['no-fused']) group.push(ours('no fused'));
  if (values.xnnpack) group.push(ours('XNNPACK'));
  rows.push(group);
}
rmSync(tmp, { recursive: true, force: true });

console.log(`small benchmark, ${values.steps} steps · node ${process.version} · ${os.cpus().length} cpus · ${blasCore} OPENBLAS_L2_SIZE=${process.env.OPENBLAS_L2_SIZE ?? '(unset)'} · ${new Date().toISOString()}`);
console.log('| run | train step ms | CPU ms | forward / backward / optimiser ms | KV-cache tok/s | step ratio (ours / PyTorch) | KV ratio (ours / PyTorch) | products | load average (1/5/15 min, before → after) |');
console.log('|---|---:|---:|---|---:|---:|---:|---|---|');
for (const [torch, ...ours] of rows) {
  for (const s of [torch, ...ours]) {
    const ratio = s === torch ? '' : `${(s.train / torch.train).toFixed(2)}×`;
    const kvRatio = s === torch ? '' : `${(s.kv / torch.kv).toFixed(2)}×`;
    console.log(`| ${s.label} | ${s.train.toFixed(0)} | ${s.cpu.toFixed(0)} | ${s.fwd.toFixed(0)} / ${s.bwd.toFixed(0)} / ${s.opt.toFixed(0)} | ${s.kv.toFixed(0)} | ${ratio} | ${kvRatio} | ${s.kernel} | ${s.load} |`);
  }
}
