// The embedded default's promise, measured: `vlm run recipes/shapes-tiny.yaml` must finish in
// <= 5 minutes on a 2-core machine and reach >= 90% multiple-choice accuracy (chance: 25%).
// Runs the real CLI in a child process (as a user would), then prints one JSON object:
//   {"recipe", "seconds", "accuracy", "accuracy_strict", "accuracy_by_type", "steps", "ok", ...}
// Usage: npx tsx bench/shapes-default.ts [recipe.yaml] [key.path=value ...]
// Never run from the unit suite (it takes minutes). Exit code 0 when both targets are met.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const recipe = args.find((a) => !a.includes('=')) ?? join(ROOT, 'recipes', 'shapes-tiny.yaml');
const overrides = args.filter((a) => a.includes('='));
const out = mkdtempSync(join(tmpdir(), 'vlm-bench-shapes-'));

const t0 = Date.now();
const child = spawn(process.execPath, [join(ROOT, 'bin', 'vlm.js'), 'run', recipe, `runtime.out_dir=${out}`, ...overrides], {
  cwd: ROOT,
  env: { ...process.env, CI: '1' },
  stdio: ['ignore', 'pipe', 'pipe'],
});
child.stdout.on('data', (d) => process.stderr.write(d)); // the run's own output goes to stderr: stdout is the JSON report
let stderr = '';
child.stderr.on('data', (d) => {
  stderr += d;
  process.stderr.write(d);
});
const code: number = await new Promise((r) => child.on('close', (c) => r(c ?? 1)));
const seconds = (Date.now() - t0) / 1000;

const runs = readdirSync(out);
const runDir = runs.length === 1 ? join(out, runs[0]) : null;
let results: { evaluator: string; dataset: string; metrics: Record<string, number>; breakdown?: Record<string, Record<string, number>> }[] = [];
let facts: Record<string, unknown> = {};
let steps = 0;
if (runDir) {
  try {
    results = JSON.parse(readFileSync(join(runDir, 'eval', 'results.json'), 'utf8')).results;
  } catch {
    /* reported below as accuracy null */
  }
  try {
    const lines = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    steps = lines.filter((l) => l.type === 'train').length;
    facts = { final_train_loss: lines.filter((l) => l.type === 'train').at(-1)?.loss, evals: lines.filter((l) => l.type === 'eval') };
  } catch {
    /* no metrics */
  }
}
// the first multiple-choice result (generated letters, or option likelihood: `multiple-choice-likelihood`)
const mc = results.find((r) => r.evaluator === 'multiple-choice') ?? results.find((r) => r.evaluator.startsWith('multiple-choice'));
const report = {
  recipe,
  exit_code: code,
  seconds: Math.round(seconds * 10) / 10,
  accuracy: mc?.metrics.accuracy ?? null,
  accuracy_strict: mc?.metrics.accuracy_strict ?? null,
  eval_samples: mc?.metrics.n ?? null,
  accuracy_evaluator: mc?.evaluator ?? null,
  results: results.map((r) => ({ evaluator: r.evaluator, dataset: r.dataset, ...r.metrics })),
  accuracy_by_type: mc?.breakdown ? Object.fromEntries(Object.entries(mc.breakdown).map(([k, v]) => [k, v.accuracy])) : null,
  steps,
  ...facts,
  run_dir: runDir,
  cpus: cpus().length,
  load_average: loadavg().map((x) => Math.round(x * 100) / 100),
  targets: { seconds: 300, accuracy: 0.9 },
  ok: code === 0 && seconds <= 300 && (mc?.metrics.accuracy ?? 0) >= 0.9,
};
console.log(JSON.stringify(report, null, 2));
process.exit(report.ok ? 0 : 1);
