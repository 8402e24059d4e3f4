// Faster kernels registered over tfjs defaults for the backends we run on (owned by the
// performance work, issue 7). Called once by core/runtime.ts after a backend is chosen.
export function installFastKernels(_backend: string): void {}
