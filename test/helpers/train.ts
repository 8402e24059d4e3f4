// Shared setup of the training tests: a tiny model built through the real plugins (the fixture's
// shapes: ViT 32 wide / 2 blocks, Llama 48 wide / 2 blocks, vocabulary 300, text length 12) and
// random but seeded host batches with left padding and varying answer lengths.
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from './backend.ts';
import { installFastKernels } from '../../core/kernels/index.ts';
import { Registry } from '../../core/registry.ts';
import { VisionLanguageModel } from '../../core/model/vlm.ts';
import vision from '../../plugins/vision/index.ts';
import projector from '../../plugins/projector/index.ts';
import decoder from '../../plugins/decoder/index.ts';
import type { HostBatch } from '../../core/types.ts';
import { mulberry32 } from '../../core/rng.ts';
import { toTensors } from '../../core/data/collator.ts';

export const silentLog = { info() {}, warn() {}, debug() {} };

export const TINY_MODEL = {
  vision: { use: 'siglip-vit', hidden_dim: 32, inter_dim: 64, patch_size: 8, image_size: 32, n_heads: 4, n_blocks: 2 },
  projector: { use: 'pixel-shuffle', factor: 2 },
  decoder: { use: 'llama', hidden_dim: 48, inter_dim: 96, n_heads: 6, n_kv_heads: 2, n_blocks: 2, vocab_size: 300, max_length: 12 },
};

export async function tinyModel(seed = 0): Promise<VisionLanguageModel> {
  installFastKernels(await useTestBackend());
  const registry = new Registry([...vision, ...projector, ...decoder]);
  const base = { recipe: { model: TINY_MODEL }, recipeDir: process.cwd(), seed, log: silentLog };
  const v = await registry.create('vision', TINY_MODEL.vision, { ...base, yamlPath: 'model.vision' });
  const d = await registry.create('decoder', TINY_MODEL.decoder, { ...base, yamlPath: 'model.decoder' });
  const p = await registry.create('projector', TINY_MODEL.projector, { ...base, yamlPath: 'model.projector', built: { vision: v, decoder: d } });
  return new VisionLanguageModel({ vision: v, projector: p, decoder: d });
}

/** a tiny deterministic PRNG (mulberry32) */
export const rng = mulberry32;

/** B samples of text length T=12: left padding, question, answer (+eos id 0), VQACollator targets */
export function randomHostBatch(B: number, seed: number, T = 12, S = 32): HostBatch {
  const r = rng(seed);
  const inputIds = new Int32Array(B * T);
  const attentionMask = new Int32Array(B * T);
  const targets = new Int32Array(B * T).fill(-100);
  for (let b = 0; b < B; b++) {
    const q = 2 + Math.floor(r() * 4);
    const a = 1 + Math.floor(r() * 4); // answer tokens incl. eos
    const pad = T - q - a;
    for (let t = 0; t < T; t++) {
      const real = t >= pad;
      attentionMask[b * T + t] = real ? 1 : 0;
      inputIds[b * T + t] = !real ? 0 : t === T - 1 ? 0 : 1 + Math.floor(r() * 299);
    }
    // labels[t] = input_ids[t+1] for the answer part; last position -100
    for (let t = pad + q - 1; t < T - 1; t++) targets[b * T + t] = inputIds[b * T + t + 1];
  }
  const images = new Float32Array(B * 3 * S * S);
  for (let i = 0; i < images.length; i++) images[i] = Math.floor(r() * 256) / 255;
  return { batchSize: B, seqLen: T, images, imageSize: S, inputIds, attentionMask, targets, sampleIds: Array.from({ length: B }, (_, i) => `rand-${seed}-${i}`) };
}

/** HostBatch -> tensors: core/data/collator.ts toTensors, the one the training step uses */
export const tensorsOf = toTensors;

/** rows [from, to) of a host batch */
export function sliceHostBatch(h: HostBatch, from: number, to: number): HostBatch {
  const T = h.seqLen;
  const px = 3 * h.imageSize * h.imageSize;
  return {
    ...h,
    batchSize: to - from,
    images: h.images.slice(from * px, to * px),
    inputIds: h.inputIds.slice(from * T, to * T),
    attentionMask: h.attentionMask.slice(from * T, to * T),
    targets: h.targets.slice(from * T, to * T),
    sampleIds: h.sampleIds.slice(from, to),
  };
}
