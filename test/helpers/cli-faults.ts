// Shared machinery of the fault-injection tests (test/**/*-cli.test.ts): drive the real CLI
// (`node bin/vlm.js ...`, CI=true) as a child process inside a temporary workspace, and check what a
// user would check after a failure:
//   - the exit code is non-zero (1 for a user error),
//   - the message names the file / YAML path / sample and says what to do,
//   - no stack trace unless --debug,
//   - every file the user had before the command is byte-for-byte unchanged (sha256 of the tree),
//   - nothing half-written is left behind (no temporary files / folders).
// Nothing here touches ../shared or the repository's own files: every case works on copies.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { deflateSync } from 'node:zlib';
import { stringify } from 'yaml';
import { REPO_ROOT } from './shared.ts';

export const VLM = join(REPO_ROOT, 'bin', 'vlm.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout + stderr */
  all: string;
}

export interface Started {
  child: ChildProcess;
  done: Promise<CliResult>;
  /** stdout + stderr so far */
  output(): string;
}

/** The environment every child gets: CI renderer, no network, a private HF cache, no token unless given. */
export function childEnv(cwd: string, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, CI: 'true', HF_HOME: join(cwd, '.hf-home'), HF_HUB_OFFLINE: '1' };
  delete env.HF_TOKEN;
  delete env.HF_ENDPOINT;
  delete env.VLM_FAULT_CHECKPOINT;
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Start `vlm <args>` in `cwd`. */
export function startVlm(args: string[], opts: { cwd: string; env?: Record<string, string | undefined> }): Started {
  const child = spawn(process.execPath, [VLM, ...args], { cwd: opts.cwd, env: childEnv(opts.cwd, opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let all = '';
  child.stdout!.on('data', (d) => ((stdout += d), (all += d)));
  child.stderr!.on('data', (d) => ((stderr += d), (all += d)));
  const done = new Promise<CliResult>((res) => child.on('close', (code, signal) => res({ code, signal, stdout, stderr, all })));
  return { child, done, output: () => all };
}

/** Run `vlm <args>` to the end (killed after timeoutMs). */
export async function vlm(args: string[], opts: { cwd: string; env?: Record<string, string | undefined>; timeoutMs?: number }): Promise<CliResult> {
  const s = startVlm(args, opts);
  const timer = setTimeout(() => s.child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
  try {
    const r = await s.done;
    assert.notEqual(r.signal, 'SIGKILL', `vlm ${args.join(' ')} timed out (a hang?)\n${r.all}`);
    return r;
  } finally {
    clearTimeout(timer);
  }
}

const workspaces: string[] = [];
process.on('exit', () => {
  if (process.env.VLM_FAULTS_KEEP) return; // keep them to look at a failure
  for (const d of workspaces) rmSync(d, { recursive: true, force: true });
});

/** A fresh temporary workspace (the user's current directory in the cases); removed when the test file ends. */
export function workspace(prefix = 'vlm-faults-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  workspaces.push(d);
  return d;
}

/** sha256 of every file below `dir` (relative path -> hash); `skip` filters relative paths out. */
export function snapshot(dir: string, skip: (rel: string) => boolean = () => false): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const rel = relative(dir, p);
      if (skip(rel)) continue;
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else out.set(rel, createHash('sha256').update(readFileSync(p)).digest('hex'));
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

/** Every file of `before` still exists with the same bytes. */
export function assertUnchanged(before: Map<string, string>, after: Map<string, string>, what = 'a file the user had'): void {
  for (const [rel, hash] of before) {
    assert.ok(after.has(rel), `${what} was removed: ${rel}`);
    assert.equal(after.get(rel), hash, `${what} was modified: ${rel}`);
  }
}

/** No temporary or partial file/folder left anywhere below `dir` (".tmp-*", "*.tmp", "*.partial", "*.incomplete"). */
export function assertNoLeftovers(dir: string): void {
  const bad: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (name === '.hf-home') continue;
      if (/^\.tmp-|\.tmp(\.|$)|\.tmp-\d|\.partial$|\.incomplete$/.test(name)) bad.push(relative(dir, p));
      if (statSync(p).isDirectory()) walk(p);
    }
  };
  if (existsSync(dir)) walk(dir);
  assert.deepEqual(bad, [], 'half-written files left behind');
}

const STACK_LINE = /^\s+at .+(:\d+:\d+\)?|\(native\)|\(<anonymous>\))$/m;

/** The command failed as a user error: exit 1, every pattern in the output, no stack trace, no "internal error". */
export function assertUserError(r: CliResult, ...patterns: RegExp[]): void {
  assert.equal(r.code, 1, `expected exit code 1 (a user error), got ${r.code} (signal ${r.signal})\n${r.all}`);
  for (const p of patterns) assert.match(r.all, p);
  assert.doesNotMatch(r.all, STACK_LINE, 'a user error printed a stack trace');
  assert.doesNotMatch(r.all, /internal error/, 'a user error was reported as an internal error');
  assert.match(r.stderr, /^error: /m, 'the error goes to stderr, starting with "error: "');
}

/** The output has a stack trace (what --debug adds). */
export function hasStack(s: string): boolean {
  return STACK_LINE.test(s);
}

// ---- the tiny recipe every case starts from ------------------------------------------------------

export const TINY_MODEL = {
  vision: { use: 'siglip-vit', hidden_dim: 32, inter_dim: 64, patch_size: 8, image_size: 32, n_heads: 4, n_blocks: 2 },
  projector: { use: 'pixel-shuffle', factor: 2 },
  decoder: { use: 'llama', hidden_dim: 48, inter_dim: 96, n_heads: 6, n_kv_heads: 2, n_blocks: 2, vocab_size: 260, max_length: 48 },
  tokenizer: { use: 'bytes' },
  image_processor: { use: 'resize' },
};

/** A recipe that trains the tiny model for a few steps on synthetic shapes (no network, no ../shared). */
export function tinyRecipe(over: { train?: Record<string, unknown>; [k: string]: unknown } = {}): Record<string, unknown> {
  const { train, ...rest } = over;
  return {
    name: 'faults',
    runtime: { backend: 'wasm', seed: 0, out_dir: 'runs' },
    model: TINY_MODEL,
    data: {
      train: [{ use: 'synthetic-shapes', split: 'train', count: 16, format: 'open' }],
      val: [{ use: 'synthetic-shapes', split: 'val', count: 4, format: 'open' }],
    },
    optimizer: { use: 'adamw', lr: 3e-3 },
    schedule: { use: 'constant' },
    train: { batch_size: 2, epochs: 1, max_steps: 3, checkpoint_every: 1, log_every: 1, ...train },
    eval: { evaluators: [] },
    publish: { publishers: [{ use: 'local' }] },
    stages: ['load', 'train', 'publish'],
    ...rest,
  };
}

export function writeYaml(file: string, data: unknown): string {
  writeFileSync(file, typeof data === 'string' ? data : stringify(data));
  return file;
}

/** The single run directory below `<cwd>/<outDir>` (null when none was created). */
export function runDirIn(cwd: string, outDir = 'runs'): string | null {
  const d = join(cwd, outDir);
  if (!existsSync(d)) return null;
  const dirs = readdirSync(d).filter((n) => statSync(join(d, n)).isDirectory());
  assert.ok(dirs.length <= 1, `expected at most one run directory in ${d}, found ${dirs.join(', ')}`);
  return dirs.length ? join(d, dirs[0]) : null;
}

/** A tiny PNG (RGB, solid colour), without sharp: signature + IHDR + IDAT + IEND. */
export function png(width: number, height: number, opts: { idat?: Buffer } = {}): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  let idat = opts.idat;
  if (!idat) {
    const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(width * 3, 0x80)]);
    idat = deflateSync(Buffer.concat(Array.from({ length: height }, () => row)));
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]);
}

export function mkdirp(p: string): string {
  mkdirSync(p, { recursive: true });
  return p;
}

/**
 * Run async jobs at most `n` at a time (children of the CLI mostly wait on module loading; two or
 * three in flight keep the suite short on a 2-core machine). Returns one promise per job, started
 * now, so independent cases overlap while each test awaits its own.
 */
export function pool(n: number): <T>(job: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: (() => void)[] = [];
  const next = () => {
    if (active >= n || !queue.length) return;
    active++;
    queue.shift()!();
  };
  return <T>(job: () => Promise<T>) =>
    new Promise<T>((res, rej) => {
      queue.push(() =>
        job()
          .then(res, rej)
          .finally(() => {
            active--;
            next();
          }),
      );
      next();
    });
}
