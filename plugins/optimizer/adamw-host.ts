// AdamW's update on host arrays (adamw `host_state: true`): the moments exp_avg / exp_avg_sq live
// in Float32Arrays outside the backend's memory (for the wasm backend: outside its 4 GiB heap),
// and each parameter is updated in turn: its value and gradient are read, updated here, and the
// new value written back, so the backend holds one parameter's temporaries at a time.
// Every operation is rounded to float32 as the tensor path (adamw.ts step) computes it, in the
// same order, with the same float32 constants, so the two paths agree to the last bit when the
// backend's float32 arithmetic is IEEE (wasm, cpu).
//   https://github.com/pytorch/pytorch/blob/v1.13.0/torch/optim/adamw.py (_single_tensor_adamw)
import type { AdamWStepScalars, HostTensor } from 'nanovlm-ts/plugin-api';

const f = Math.fround;

/** the scalars of one group's update at one step (plain numbers; rounded to float32 inside) */
export type AdamWScalars = AdamWStepScalars;

/**
 * p <- p * decay - stepSize * m' / (sqrt(v') / bc2Sqrt + eps), m' = b1 m + (1 - b1) g,
 * v' = b2 v + (1 - b2) g^2; m and v are updated in place; returns the new parameter values.
 */
export function adamwHostUpdate(p: ArrayLike<number>, g: ArrayLike<number>, m: Float32Array, v: Float32Array, s: AdamWScalars): Float32Array {
  const decay = f(s.decay);
  const b1 = f(s.beta1);
  const ob1 = f(1 - s.beta1);
  const b2 = f(s.beta2);
  const ob2 = f(1 - s.beta2);
  const bc2 = f(s.bc2Sqrt);
  const eps = f(s.eps);
  const stepSize = f(s.stepSize);
  const scale = f(s.gradScale ?? 1);
  const out = new Float32Array(p.length);
  for (let i = 0; i < p.length; i++) {
    const gi = f(g[i] * scale); // tf.mul(g, clip coefficient); x * 1 is x
    const mi = f(f(m[i] * b1) + f(gi * ob1));
    const vi = f(f(v[i] * b2) + f(f(gi * gi) * ob2));
    m[i] = mi;
    v[i] = vi;
    const denom = f(f(f(Math.sqrt(vi)) / bc2) + eps);
    out[i] = f(f(p[i] * decay) - f(f(mi / denom) * stepSize));
  }
  return out;
}

/** a Float32Array with its shape, as optimizer state on the host */
export function hostTensor(shape: number[], data: Float32Array): HostTensor {
  return { shape, dataSync: () => data };
}
