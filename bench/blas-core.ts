// The OpenBLAS core of a side-by-side bench (bench/vs-pytorch.ts, bench/vs-pytorch-222m.ts): with
// OPENBLAS_CORETYPE unset, `vlm` picks the core from the CPU flags (core/kernels/native-matmul.ts
// autoBlasCore) while PyTorch's OpenBLAS detects its own; this sets the picked one in the bench's
// environment, which both sides inherit, so that they run the same kernels.
import { autoBlasCoreHere } from '../core/kernels/native-matmul.ts';

/** Set the core for both sides; returns the header's description of OPENBLAS_CORETYPE. */
export function sameBlasCoreForBothSides(): string {
  const picked = autoBlasCoreHere();
  if (picked) process.env.OPENBLAS_CORETYPE = picked;
  return `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'}${picked ? ' (unset: picked from the CPU flags, as vlm does, for both sides)' : ''}`;
}
