// The threaded wasm build under Node (core/wasm-threads.ts enableWasmThreads via core/runtime.ts):
// in a child process (a backend initialises once per process), runtime.threads = 2 starts a
// 2-thread pool, products are right, and the process exits by itself (the pool's workers are
// unref'ed; before, Node hung at exit).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/shared.ts';
import { loadNativeBlas } from '../../core/kernels/native-matmul.ts';


function child(env: Record<string, string>) {
  const res = spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test', 'core', 'wasm-threads-child.ts')], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  assert.equal(res.signal, null, `child killed (hung at exit?): ${res.stderr}`);
  assert.equal(res.status, 0, res.stderr);
  const out = JSON.parse(res.stdout.trim().split('\n').pop()!);
  assert.deepEqual(out.c, [[4, 5], [10, 11]]);
  assert.equal(out.s0, 128);
  assert.equal(out.sLast, 128);
  assert.deepEqual(out.t, [[6, 6, 6, 6], [9, 9, 9, 9]]);
  assert.equal(out.blob, 'function', 'global Blob restored');
  return out;
}

const wasmOnly = process.env.VLM_TEST_BACKEND === 'cpu' ? 'wasm only' : undefined;

test('runtime.threads = 2 runs the threaded wasm build under Node and the process exits', { skip: wasmOnly }, () => {
  // VLM_THREADED_WASM=1: the threaded build even when the native products run (it is the default without them)
  const out = child({ VLM_THREADED_WASM: '1' });
  assert.equal(out.threads, 2);
  assert.equal(out.pool, 2);
  // BLAS threads follow runtime.threads (native-matmul.test.ts fails in CI when the addon is missing)
  if (loadNativeBlas()) assert.match(out.products, /^products: OpenBLAS sgemm on the wasm heap .*, 2 threads$/);
  else assert.match(out.products, /^products: XNNPACK \(wasm\); /);
});

test('with the native products, runtime.threads = 2 goes to BLAS and the wasm build stays single-threaded', { skip: wasmOnly ?? (loadNativeBlas() ? undefined : 'native addon not built (npm run build:native)') }, () => {
  const out = child({});
  assert.equal(out.threads, undefined, 'no threaded wasm build');
  assert.equal(out.pool, 1);
  assert.equal(out.blasThreads, 2);
  assert.match(out.products, /^products: OpenBLAS sgemm on the wasm heap .*, 2 threads$/);
  // without the native products the threads go to the threaded wasm build, as before
  const xnn = child({ VLM_NATIVE_MATMUL: '0' });
  assert.equal(xnn.threads, 2);
  assert.equal(xnn.pool, 2);
  assert.equal(xnn.blasThreads, undefined);
  assert.match(xnn.products, /^products: XNNPACK \(wasm\); VLM_NATIVE_MATMUL=0/);
});
