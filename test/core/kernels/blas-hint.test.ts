// core/kernels/native-matmul.ts, OpenBLAS's CPU kernels: Debian 12's OpenBLAS 0.3.21 falls back to
// Prescott kernels on recent Xeons (measured 30 vs 73 (Haswell) vs 112 (SkylakeX) GFLOP/s on a 512^3
// product, docs/performance.md). autoBlasCore: with OPENBLAS_CORETYPE unset the addon loads OpenBLAS
// with the best core the CPU flags allow; blasCoreHint: the runtime's note when it still runs kernels
// far below the CPU's. The load itself runs in child processes (OpenBLAS reads the variable once, as
// it loads); the case "OPENBLAS_CORETYPE unset" unsets it in that child only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../helpers/shared.ts';
import { NATIVE_ADDON, autoBlasCore, bestBlasCore, blasCoreHint, cpuFlags } from '../../../core/kernels/native-matmul.ts';

const avx512 = new Set(['sse3', 'avx', 'avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512dq']);
const avx2 = new Set(['sse3', 'avx', 'avx2', 'fma']);

test('an old OpenBLAS core on a CPU with AVX-512 / AVX2 names the OPENBLAS_CORETYPE to set', () => {
  assert.match(blasCoreHint('Prescott', avx512, undefined)!, /runs its Prescott kernels .*OPENBLAS_CORETYPE=SkylakeX .*or Haswell/);
  assert.match(blasCoreHint('Nehalem', avx2, undefined)!, /runs its Nehalem kernels .*OPENBLAS_CORETYPE=Haswell \(AVX2\)/);
  assert.match(blasCoreHint('Sandybridge', avx2, '')!, /OPENBLAS_CORETYPE=Haswell/, 'an empty variable counts as unset');
});

test('no hint when the kernels fit the CPU, the CPU has no AVX2, or the user chose the core', () => {
  assert.equal(blasCoreHint('Haswell', avx512, undefined), null);
  assert.equal(blasCoreHint('SkylakeX', avx512, undefined), null);
  assert.equal(blasCoreHint('Zen', avx2, undefined), null);
  assert.equal(blasCoreHint('Prescott', new Set(['sse3', 'avx']), undefined), null, 'a CPU without AVX2 / FMA');
  assert.equal(blasCoreHint('Prescott', avx512, 'Prescott'), null, 'OPENBLAS_CORETYPE set by the user');
  assert.equal(blasCoreHint('', avx512, undefined), null, 'Accelerate (no core name)');
});

test('bestBlasCore / autoBlasCore: the best core of the CPU flags, only where the user chose none', () => {
  assert.equal(bestBlasCore(avx512), 'SkylakeX');
  assert.equal(bestBlasCore(new Set([...avx2, 'avx512f'])), 'Haswell', 'AVX-512 F alone is not what the SkylakeX kernels use');
  assert.equal(bestBlasCore(avx2), 'Haswell');
  assert.equal(bestBlasCore(new Set(['sse3', 'avx', 'avx2'])), null, 'AVX2 without FMA');
  assert.equal(autoBlasCore({}, avx512), 'SkylakeX');
  assert.equal(autoBlasCore({ OPENBLAS_CORETYPE: '' }, avx2), 'Haswell', 'an empty variable counts as unset');
  assert.equal(autoBlasCore({ OPENBLAS_CORETYPE: 'Prescott' }, avx512), null, "the user's choice stands");
  assert.equal(autoBlasCore({ VLM_BLAS_AUTOCORE: '0' }, avx512), null, 'VLM_BLAS_AUTOCORE=0: OpenBLAS detects');
  assert.equal(autoBlasCore({}, null), null, 'no /proc/cpuinfo (macOS: Accelerate)');
  assert.equal(autoBlasCore({}, new Set(['sse3', 'avx'])), null);
});

const flags = cpuFlags();
const best = flags && bestBlasCore(flags);
const loadSkip = !existsSync(NATIVE_ADDON)
  ? 'native addon not built (npm run build:native; CI builds it)'
  : !best
    ? 'this CPU has no AVX2 + FMA (or no /proc/cpuinfo): nothing to choose'
    : undefined;

function load(env: Record<string, string | undefined>): { corename: string; products: string; env: string | null } {
  const childEnv: Record<string, string | undefined> = { ...process.env, ...env };
  for (const k of Object.keys(childEnv)) if (childEnv[k] === undefined) delete childEnv[k];
  const res = spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test', 'core', 'kernels', 'blas-core-child.ts')], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000, env: childEnv as NodeJS.ProcessEnv });
  assert.equal(res.status, 0, res.stderr);
  return JSON.parse(res.stdout.trim().split('\n').pop()!);
}

test('with OPENBLAS_CORETYPE unset the addon loads OpenBLAS with the best core of this CPU, and leaves the environment as it was', { skip: loadSkip }, () => {
  const auto = load({ OPENBLAS_CORETYPE: undefined, VLM_BLAS_AUTOCORE: undefined });
  assert.equal(auto.corename, best, auto.products);
  assert.match(auto.products, new RegExp(`, ${best} kernels, picked from the CPU flags as OPENBLAS_CORETYPE is unset`));
  assert.equal(auto.env, null, 'child processes see no OPENBLAS_CORETYPE');
  const empty = load({ OPENBLAS_CORETYPE: '', VLM_BLAS_AUTOCORE: undefined });
  assert.equal(empty.corename, best);
  assert.equal(empty.env, '', 'an empty variable is put back as it was');
});

test("the user's OPENBLAS_CORETYPE, and VLM_BLAS_AUTOCORE=0, are left to OpenBLAS", { skip: loadSkip }, () => {
  const user = load({ OPENBLAS_CORETYPE: 'Haswell', VLM_BLAS_AUTOCORE: undefined });
  assert.equal(user.corename, 'Haswell');
  assert.equal(user.env, 'Haswell');
  assert.doesNotMatch(user.products, /picked from the CPU flags/);
  const off = load({ OPENBLAS_CORETYPE: undefined, VLM_BLAS_AUTOCORE: '0' });
  assert.doesNotMatch(off.products, /picked from the CPU flags/);
  assert.equal(off.env, null);
});
