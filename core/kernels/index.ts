// Faster kernels registered over tfjs defaults for the backends we run on (performance work,
// issue 7), one file per role: matmul.ts (products), layout.ts (copies and transposes),
// gradients.ts (kernels wasm lacks), reductions.ts (sum, pow), native-matmul.ts (OpenBLAS products
// over matmul.ts's, when the addon is built); wasm.ts holds what they share.
// Called once by core/runtime.ts after a backend is chosen; model code keeps writing
// natural ops (`tf.matMul(x, w, false, true)`) and the gradients tfjs builds from them
// (matMul with transposeA / transposeB) take the fast path too.
//
// Why (tfjs-backend-wasm 4.22, src/cc/batch_mat_mul_impl.cc): BatchMatMul / _FusedMatMul call
// XNNPACK's fully-connected operator (~45 GFLOP/s here) ONLY when neither input is transposed
// and both batch sizes are 1; every other case (any transpose, any batched product such as
// attention's [B*H, T, hd] x [B*H, hd, T]) falls into a scalar triple loop at ~1.5-3.5 GFLOP/s.
// The replacements below:
//   1. transpose an input with the wasm Transpose kernel when asked (an O(n^2) copy), then
//   2. run plain products on XNNPACK: a batch-1 right operand folds the left batch into rows
//      (one call); otherwise one call per batch item on *aliases*: extra tensor ids registered
//      with the wasm module that point into the existing buffers (no copies), released right
//      after (that also drops XNNPACK's operator cached on the alias id).
//   3. few rows times a transposed shared weight (generation: one token through a Linear) runs
//      as (W @ x^T)^T, so the weight is neither transposed nor re-packed for every token.
// Results equal the original kernels up to float32 summation order (test/core/kernels/kernels.test.ts).
//
// Kernels the wasm backend lacks although training needs them (tfjs falls over with "Kernel 'X'
// not registered for backend 'wasm'" in the backward pass):
//   UnsortedSegmentSum    gradient of gather (token embedding, picking target log-probs):
//                         a scatter-add in JS straight on the wasm heap, O(size of x).
//   Conv2DBackpropFilter  gradient of conv2d's filter (a patch embedding written as a conv):
//                         im2col on the heap, then one XNNPACK product cols^T @ dy.
// Stock kernels that copy where sharing is enough:
//   Identity (clone(): every tensor the gradient tape saves), Cast to the same dtype -> the output
//                         shares the input's buffer, reference-counted (as cpu's and wasm's Reshape).
// Stock kernels that compute every element's source index one by one (~50 ns/element):
//   Tile (hence broadcastTo, tf.where with a broadcast mask)  -> block copies (copyWithin).
//   Transpose of rank >= 5 after merging axes (patchify, pixel shuffle) -> contiguous runs
//                         copied with TypedArray.set when the last axis stays last; a (batched)
//                         matrix transpose (every transposed matMul operand) -> 32 x 32 tiles.
//   GatherV2 along axis 0 (token embedding rows) -> one block copy per index.
//   SplitV, Concat (attention's qkv split and its gradient) -> one block copy per row and piece.
//   Pow with a scalar exponent 2 (tf.norm, hence gradient clipping) -> Square (std::pow per
//                         element is ~8x slower than x*x).
//   Sum over leading axes (every bias / norm-weight gradient: [tokens, C] -> [C]): the stock
//                         kernel transposes the reduced axes to the end first (a copy, ~5 ns/element);
//                         a row-by-row accumulation on the heap reads x once (in C when the native
//                         addon is in use: native-kernels.ts, native/blas.cc columnSums).
import * as tf from '@tensorflow/tfjs';
import { originals } from './wasm.ts';
import { batchMatMul, fusedMatMul, setupBatchMatMul, setupFusedMatMul } from './matmul.ts';
import { cast, concat, gatherV2, identity, splitV, tile, transpose } from './layout.ts';
import { conv2DBackpropFilter, unsortedSegmentSum } from './gradients.ts';
import { pow, sum } from './reductions.ts';
import { installNativeMatMul, uninstallNativeMatMul } from './native-matmul.ts';

const installed = new Set<string>();
/** Kernels we added where tfjs has none (kept by uninstall: nothing to go back to). */
const added = new Set<string>();

/** Kernels tfjs lacks on wasm: always registered (training cannot run without them). */
const MISSING_ON_WASM = ['UnsortedSegmentSum', 'Conv2DBackpropFilter'];

/**
 * Register the wasm kernels. VLM_FAST_KERNELS=0 in the environment registers only the missing
 * ones (to measure the stock kernels: `VLM_FAST_KERNELS=0 npm run bench`).
 */
export function installFastKernels(backend: string): void {
  if (backend !== 'wasm' || installed.has(backend)) return;
  installed.add(backend);
  const stock = process.env.VLM_FAST_KERNELS === '0';
  for (const k of wasmKernels()) if (!stock || MISSING_ON_WASM.includes(k.kernelName)) replaceKernel(k);
  if (!stock) installNativeMatMul(backend); // OpenBLAS products over the XNNPACK ones, when built (issue 16)
}

/** Put back the stock tfjs kernels (for tests measuring the replacements against them). */
export function uninstallFastKernels(backend: string): void {
  if (!installed.delete(backend)) return;
  uninstallNativeMatMul(backend);
  for (const [key, config] of originals) {
    if (config.backendName !== backend) continue;
    tf.unregisterKernel(config.kernelName, config.backendName);
    tf.registerKernel(config);
    originals.delete(key);
  }
}

export function fastKernelsInstalled(backend: string): boolean {
  return installed.has(backend);
}

function replaceKernel(config: tf.KernelConfig): void {
  const old = tf.getKernel(config.kernelName, config.backendName);
  if (old) {
    originals.set(`${config.kernelName}/${config.backendName}`, old);
    tf.unregisterKernel(config.kernelName, config.backendName);
  } else {
    added.add(`${config.kernelName}/${config.backendName}`);
  }
  tf.registerKernel(config);
  // registerKernel runs setupFunc only when the backend initialises later; run it now if the
  // backend already exists (the normal case: runtime chose and initialised it first).
  const b = tf.engine().registry[config.backendName];
  if (b && config.setupFunc) config.setupFunc(b);
}

const k = (f: unknown) => f as tf.KernelFunc;
function wasmKernels(): tf.KernelConfig[] {
  return [
    { kernelName: 'BatchMatMul', backendName: 'wasm', setupFunc: setupBatchMatMul, kernelFunc: k(batchMatMul) },
    { kernelName: '_FusedMatMul', backendName: 'wasm', setupFunc: setupFusedMatMul, kernelFunc: k(fusedMatMul) },
    { kernelName: 'Identity', backendName: 'wasm', kernelFunc: k(identity) },
    { kernelName: 'Cast', backendName: 'wasm', kernelFunc: k(cast) },
    { kernelName: 'Tile', backendName: 'wasm', kernelFunc: k(tile) },
    { kernelName: 'Transpose', backendName: 'wasm', kernelFunc: k(transpose) },
    { kernelName: 'GatherV2', backendName: 'wasm', kernelFunc: k(gatherV2) },
    { kernelName: 'SplitV', backendName: 'wasm', kernelFunc: k(splitV) },
    { kernelName: 'Concat', backendName: 'wasm', kernelFunc: k(concat) },
    { kernelName: 'Pow', backendName: 'wasm', kernelFunc: k(pow) },
    { kernelName: 'Sum', backendName: 'wasm', kernelFunc: k(sum) },
    { kernelName: 'UnsortedSegmentSum', backendName: 'wasm', kernelFunc: k(unsortedSegmentSum) },
    { kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: k(conv2DBackpropFilter) },
  ];
}
