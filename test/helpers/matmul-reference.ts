// Shared by the matrix-product kernel tests (XNNPACK in kernels.test.ts, OpenBLAS in
// native-matmul.test.ts): deterministic operands and a float64 reference of tf.matMul.
import * as tf from '@tensorflow/tfjs';

/** deterministic values in [-1, 1) */
export function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** float64 reference of tf.matMul(a, b, tA, tB) with broadcasting batch dims */
export function reference(a: tf.Tensor, b: tf.Tensor, tA: boolean, tB: boolean): { data: Float64Array; shape: number[] } {
  const A = a.dataSync();
  const B = b.dataSync();
  const ra = a.rank;
  const rb = b.rank;
  const M = tA ? a.shape[ra - 1] : a.shape[ra - 2];
  const K = tA ? a.shape[ra - 2] : a.shape[ra - 1];
  const N = tB ? b.shape[rb - 2] : b.shape[rb - 1];
  const aOuter = a.shape.slice(0, -2);
  const bOuter = b.shape.slice(0, -2);
  const outer = tf.backend_util.assertAndGetBroadcastShape(aOuter, bOuter);
  const batch = outer.reduce((p, d) => p * d, 1);
  const index = (shape: number[], i: number) => {
    const padded = [...Array(outer.length - shape.length).fill(1), ...shape];
    let rest = i;
    let idx = 0;
    let stride = 1;
    for (let k = outer.length - 1; k >= 0; k--) {
      const c = rest % outer[k];
      rest = Math.floor(rest / outer[k]);
      if (padded[k] !== 1) idx += c * stride;
      stride *= padded[k];
    }
    return idx;
  };
  const out = new Float64Array(batch * M * N);
  for (let bi = 0; bi < batch; bi++) {
    const ao = index(aOuter, bi) * M * K;
    const bo = index(bOuter, bi) * K * N;
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = tA ? A[ao + k * M + i] : A[ao + i * K + k];
          const bv = tB ? B[bo + j * K + k] : B[bo + k * N + j];
          s += av * bv;
        }
        out[bi * M * N + i * N + j] = s;
      }
  }
  return { data: out, shape: [...outer, M, N] };
}

export function operands(aShape: number[], bShape: number[], tA: boolean, tB: boolean, seed: number): [tf.Tensor, tf.Tensor] {
  const swap = (s: number[]) => [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]];
  const as = tA ? swap(aShape) : aShape;
  const bs = tB ? swap(bShape) : bShape;
  const n = (s: number[]) => s.reduce((p, d) => p * d, 1);
  return [tf.tensor(values(n(as), seed), as), tf.tensor(values(n(bs), seed + 1), bs)];
}

/**
 * The gradient probe the kernel tests run under two kernel sets: a Linear product ([15,8] x [6,8]^T),
 * then batched products with transposeB and transposeA. `run(grads)` computes the gradients w.r.t.
 * x and w once per kernel set (it returns the two lists); they must agree to relative 1e-5.
 */
export function assertMatmulGradientsAgree(run: (grads: () => tf.Tensor[]) => [tf.Tensor[], tf.Tensor[]], assert: { deepEqual(a: unknown, b: unknown): void; ok(v: unknown, m?: string): void }): void {
  const x = tf.tensor(values(15 * 8, 7), [15, 8]);
  const w = tf.tensor(values(6 * 8, 8), [6, 8]); // PyTorch Linear layout [out, in]
  const k = tf.tensor(values(3 * 5 * 6, 9), [3, 5, 6]);
  const f = (x: tf.Tensor, w: tf.Tensor) => {
    const y = tf.matMul(x, w, false, true).reshape([3, 5, 6]); // [15,8] x [6,8]^T
    const s = tf.matMul(y, k, false, true); // [3,5,5] batched
    const t = tf.matMul(s, y, true, false); // [3,5,6] batched, transposeA
    return tf.sum(tf.mul(t, t));
  };
  const g = tf.grads(f);
  const [a, b] = run(() => g([x, w]));
  for (let i = 0; i < 2; i++) {
    assert.deepEqual(a[i].shape, b[i].shape);
    const rel = tf.max(tf.abs(tf.sub(a[i], b[i]))).dataSync()[0] / tf.max(tf.abs(b[i])).dataSync()[0];
    assert.ok(rel <= 1e-5, `grad ${i}: relative diff ${rel}`);
  }
  tf.dispose([x, w, k, ...a, ...b]);
}
