// Host copies of the few small tensors the model reads on the CPU inside its synchronous forward
// and loss: the targets (which text positions count, VisionLanguageModel.trainingLoss) and the
// attention mask (RoPE positions with position_ids: skip_padding, built on the host).
// On wasm/cpu `dataSync()` reads any tensor; on a GPU backend (webgpu) it throws once the values
// live on the GPU ("OffscreenCanvas is not defined"): callers in async code take the host copy
// first with `await toHost(...)`, and the synchronous code reads it with `hostValues`. Copies are
// keyed by the tensor's data (a WeakMap: they go away with the tensor; tensors are immutable).
import * as tf from '@tensorflow/tfjs';

type HostArray = Float32Array | Int32Array | Uint8Array;
const copies = new WeakMap<object, HostArray>();

/** Take the host copy of each tensor (async: works on every backend). */
export async function toHost(...tensors: (tf.Tensor | null | undefined)[]): Promise<void> {
  for (const t of tensors) {
    if (!t || copies.has(t.dataId)) continue;
    copies.set(t.dataId, (await t.data()) as HostArray);
  }
}

/**
 * The values of a small tensor on the host, synchronously: its copy from `toHost`, else
 * `dataSync()` (wasm, cpu, and a GPU tensor whose values have not been uploaded yet).
 */
export function hostValues(t: tf.Tensor, what: string): HostArray {
  const known = copies.get(t.dataId);
  if (known) return known;
  let values: HostArray;
  try {
    values = t.dataSync() as HostArray;
  } catch (e) {
    throw new Error(`${what} [${t.shape.join(', ')}] is on the GPU (${tf.getBackend()}) and cannot be read synchronously: await toHost(tensor) (core/host.ts) before this call (${(e as Error).message})`);
  }
  copies.set(t.dataId, values);
  return values;
}
