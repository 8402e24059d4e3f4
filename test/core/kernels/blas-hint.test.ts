// core/kernels/native-matmul.ts blasCoreHint: the runtime's note when OpenBLAS runs kernels far
// below the CPU's (Debian 12's OpenBLAS 0.3.21 falls back to Prescott kernels on recent Xeons:
// measured 30 vs 73 (Haswell) vs 112 (SkylakeX) GFLOP/s on a 512^3 product, docs/performance.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { blasCoreHint } from '../../../core/kernels/native-matmul.ts';

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
