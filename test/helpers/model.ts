// Shared setup of the model tests: the test backend with the fast kernels the runtime installs,
// and a registry holding the model plugins (+ adamw for `vlm compare`'s after_adamw rows).
import * as tf from '@tensorflow/tfjs';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { useTestBackend } from './backend.ts';
import { FIXTURES } from './shared.ts';
import { installFastKernels } from '../../core/kernels/index.ts';
import { Registry } from '../../core/registry.ts';
import vision from '../../plugins/vision/index.ts';
import projector from '../../plugins/projector/index.ts';
import decoder from '../../plugins/decoder/index.ts';
import optimizer from '../../plugins/optimizer/index.ts';
import { readSafetensors } from '../../core/weights/safetensors.ts';

export async function setup(): Promise<Registry> {
  const backend = await useTestBackend();
  installFastKernels(backend);
  return new Registry([...vision, ...projector, ...decoder, ...optimizer]);
}

/** Every fixture case folder (tiny and any hidden variants): those with inputs + expected. */
export function fixtureCases(): string[] {
  if (!existsSync(FIXTURES)) return [];
  return readdirSync(FIXTURES)
    .filter((d) => existsSync(join(FIXTURES, d, 'inputs.safetensors')) && existsSync(join(FIXTURES, d, 'expected.safetensors')))
    .sort();
}

/** The fixture inputs as tensors (int64 -> int32). Caller disposes. */
export function loadInputs(file: string): { images: tf.Tensor4D; inputIds: tf.Tensor2D; attentionMask: tf.Tensor2D; targets: tf.Tensor2D } {
  const t = readSafetensors(file).tensors;
  const int = (n: string) => {
    const x = t.get(n)!;
    return tf.tensor(Int32Array.from(x.data as BigInt64Array, Number), x.shape as number[], 'int32') as unknown as tf.Tensor2D;
  };
  const img = t.get('images')!;
  return {
    images: tf.tensor(img.data as Float32Array, img.shape as number[], 'float32') as unknown as tf.Tensor4D,
    inputIds: int('input_ids'),
    attentionMask: int('attention_mask'),
    targets: int('targets'),
  };
}

export const silentLog = { info() {}, warn() {}, debug() {} };
