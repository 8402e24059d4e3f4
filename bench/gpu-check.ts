// The node parts of bench/gpu-check.sh (issue 15):
//   adapter <json>                  start runtime.backend webgpu, print and record the adapter
//   summary <dir> name=status ...   gather <dir>/*.json (adapter, parity.tap, bench.json,
//                                   step-222m.json) into <dir>/result.json and print it
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { initRuntime } from '../core/runtime.ts';
import { isUserError } from '../core/errors.ts';

const [cmd, target, ...rest] = process.argv.slice(2);
const write = (file: string, value: unknown) => writeFileSync(file, JSON.stringify(value, null, 2) + '\n');

async function adapter(file: string) {
  const info = await initRuntime('webgpu', { log: (l) => console.log(l) });
  if (info.adapter?.software) console.log('note: a SOFTWARE adapter (no GPU driver found?): the figures below measure the CPU, not a GPU');
  write(file, { backend: info.backend, adapter: info.adapter, node: process.version, platform: `${os.platform()} ${os.arch()}`, cpus: os.cpus().length, date: new Date().toISOString() });
}

function summary(dir: string) {
  const read = (f: string) => (existsSync(join(dir, f)) ? JSON.parse(readFileSync(join(dir, f), 'utf8')) : null);
  const status = Object.fromEntries(rest.map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v) === 0 ? 'ok' : `failed (exit ${v})`]));
  const tap = existsSync(join(dir, 'parity.tap')) ? readFileSync(join(dir, 'parity.tap'), 'utf8') : '';
  const count = (k: string) => Number(tap.match(new RegExp(`^# ${k} (\\d+)`, 'm'))?.[1] ?? NaN);
  const rows = (j: unknown) => (Array.isArray(j) ? j : j ? [j] : []) as Record<string, any>[];
  const brief = (r: Record<string, any>) => ({
    name: r.name,
    batch_size: r.batch_size,
    train_step_ms: r.train_step_ms?.median ?? null,
    tokens_per_s: r.tokens_per_s,
    generate_kv_cache_tokens_per_s: r.generate?.kv_cache?.tokens_per_s ?? null,
  });
  const result = {
    status,
    adapter: read('adapter.json'),
    parity: { tests: count('tests'), pass: count('pass'), fail: count('fail'), skipped: count('skipped') },
    bench: rows(read('bench.json')).map(brief),
    step_222m: rows(read('step-222m.json')).map(brief)[0] ?? null,
    raw: { bench: read('bench.json'), step_222m: read('step-222m.json') },
    goal: 'issue 15: a 222M training step at batch 8 within 5x of PyTorch eager fp32 on the same GPU; time PyTorch on this GPU and compare with step_222m.train_step_ms',
  };
  write(join(dir, 'result.json'), result);
  const { raw: _raw, ...shown } = result;
  console.log(`\n${JSON.stringify(shown, null, 2)}\nwritten: ${join(dir, 'result.json')}`);
}

try {
  if (cmd === 'adapter') await adapter(target);
  else if (cmd === 'summary') summary(target);
  else throw new Error('usage: gpu-check.ts adapter <json> | summary <dir> name=status ...');
} catch (e) {
  console.error(isUserError(e) ? (e as { format(): string }).format() : e);
  process.exit(1);
}
process.exit(0);
