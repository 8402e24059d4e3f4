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


test('runtime.threads = 2 runs the threaded wasm build under Node and the process exits', { skip: process.env.VLM_TEST_BACKEND === 'cpu' ? 'wasm only' : undefined }, () => {
  const res = spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test', 'core', 'wasm-threads-child.ts')], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000 });
  assert.equal(res.signal, null, `child killed (hung at exit?): ${res.stderr}`);
  assert.equal(res.status, 0, res.stderr);
  const out = JSON.parse(res.stdout.trim().split('\n').pop()!);
  assert.equal(out.threads, 2);
  assert.equal(out.pool, 2);
  assert.deepEqual(out.c, [[4, 5], [10, 11]]);
  assert.equal(out.s0, 128);
  assert.equal(out.sLast, 128);
  assert.deepEqual(out.t, [[6, 6, 6, 6], [9, 9, 9, 9]]);
  // BLAS threads follow runtime.threads (native-matmul.test.ts fails in CI when the addon is missing)
  if (loadNativeBlas()) assert.match(out.products, /^products: OpenBLAS sgemm on the wasm heap .*, 2 threads$/);
  else assert.match(out.products, /^products: XNNPACK \(wasm\); /);
  assert.equal(out.blob, 'function', 'global Blob restored');
});
