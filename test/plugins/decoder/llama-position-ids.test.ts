// The llama decoder's `position_ids` option. 'nanovlm' (default, exact parity with nanoVLM v0.1,
// checked by the fixture tests) gives left padding positions too; 'skip_padding' counts only the
// positions the mask keeps. The VLM's sequences are [image tokens][left padding][text]: with
// nanoVLM's ids the padding changes the distance between image and text; with skip_padding the
// row computes exactly what it does without padding: in a forward pass, with the KV cache on the
// tensor path, and in decodeNext. (Padding at the very start alone changes nothing with either:
// RoPE only sees relative positions.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { buildModel } from '../../../core/weights/model-folder.ts';
import { keptPositions, type LlamaDecoder } from '../../../plugins/decoder/llama.ts';
import { Rng } from '../../../core/ops.ts';
import { setup, silentLog } from '../../helpers/model.ts';

const model = (positionIds: string) => ({
  vision: { use: 'siglip-vit', hidden_dim: 16, inter_dim: 32, patch_size: 4, image_size: 16, n_heads: 2, n_blocks: 1 },
  projector: { use: 'pixel-shuffle', factor: 2 },
  decoder: { use: 'llama', hidden_dim: 24, inter_dim: 40, n_heads: 6, n_kv_heads: 2, n_blocks: 2, vocab_size: 50, max_length: 8, position_ids: positionIds },
});

test('keptPositions: the number of kept columns before each column, per row, from a given column', () => {
  // row 0: two padded columns; row 1: none
  assert.deepEqual(keptPositions([0, 0, 1, 1, 1, 1, 1, 1, 1, 1], 2, 5, 0), [0, 0, 0, 1, 2, 0, 1, 2, 3, 4]);
  assert.deepEqual(keptPositions([0, 0, 1, 1, 1, 1, 1, 1, 1, 1], 2, 5, 3), [1, 2, 3, 4]);
});

/** the largest |a - b| */
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

async function paddedVersusAlone(positionIds: 'nanovlm' | 'skip_padding') {
  const registry = await setup();
  const m = await buildModel(model(positionIds) as any, registry, { seed: 3, log: silentLog });
  const dec = m.decoder as LlamaDecoder;
  const rng = new Rng(7);
  const I = 2; // kept positions before the padding (the image tokens of a VLM row)
  const T = 6; // the row's text positions
  const P = 3; // left padding of the text
  const ids = Int32Array.from({ length: I + T + 4 }, () => 1 + Math.floor(rng.next() * 49));
  /** [I kept][pad padded][the rest] */
  const layout = (pad: number, rest: Int32Array) => Int32Array.from([...ids.slice(0, I), ...Array(pad).fill(0), ...rest]);
  const keep = (pad: number, len: number) => Int32Array.from({ length: len }, (_, t) => (t >= I && t < I + pad ? 0 : 1));
  const text = ids.slice(I, I + T);
  // forward: the row without padding [1, I + T] and padded [1, I + P + T]
  const alone = tf.tidy(() => {
    const h = dec.forward(dec.embed(tf.tensor2d(layout(0, text), [1, I + T], 'int32')), { mask: tf.tensor2d(keep(0, I + T), [1, I + T], 'int32') });
    return h.slice([0, I, 0], [1, T, -1]).dataSync() as Float32Array;
  });
  const padded = tf.tidy(() => {
    const h = dec.forward(dec.embed(tf.tensor2d(layout(P, text), [1, I + P + T], 'int32')), { mask: tf.tensor2d(keep(P, I + P + T), [1, I + P + T], 'int32') });
    return h.slice([0, I + P, 0], [1, T, -1]).dataSync() as Float32Array;
  });
  const forward = maxDiff(alone, padded);
  // generation: prefill with the cache, then 4 tokens by decodeNext (host path) and by forward with
  // the cache (tensor path), padded and alone; compare the logits of every new token
  let generation = 0;
  for (const path of ['host', 'tensor'] as const) {
    const run = (pad: number) => {
      const cache = dec.newCache(1);
      const mask = (len: number) => keep(pad, len);
      const n = I + pad + T;
      tf.tidy(() => void dec.forward(dec.embed(tf.tensor2d(layout(pad, text), [1, n], 'int32')), { mask: tf.tensor2d(mask(n), [1, n], 'int32'), cache }));
      const logits: number[] = [];
      for (let k = 0; k < 4; k++) {
        const L = n + k + 1;
        const next = Int32Array.of(ids[I + T + k]);
        const out =
          path === 'host'
            ? dec.decodeNext(next, cache, mask(L))
            : tf.tidy(() => dec.inferenceHead(dec.forward(dec.embed(tf.tensor2d(next, [1, 1], 'int32')), { mask: tf.tensor2d(mask(L), [1, L], 'int32'), cache })).dataSync() as Float32Array);
        logits.push(...out);
      }
      cache.dispose();
      return logits;
    };
    generation = Math.max(generation, maxDiff(run(0), run(P)));
  }
  m.dispose();
  return { forward, generation };
}

test("position_ids: skip_padding: a left-padded row computes what the row alone does (forward, cache, decodeNext)", async () => {
  const { forward, generation } = await paddedVersusAlone('skip_padding');
  assert.ok(forward < 1e-5, `forward: max abs difference ${forward}`);
  assert.ok(generation < 1e-5, `generation logits: max abs difference ${generation}`);
});

test("position_ids: nanovlm (default): left padding shifts the positions, so the same row computes differently", async () => {
  const { forward, generation } = await paddedVersusAlone('nanovlm');
  // (measured: forward ~1e-2, logits ~4e-4 on this small random model; float noise is ~1e-7)
  assert.ok(forward > 1e-4, `forward: max abs difference ${forward}`);
  assert.ok(generation > 1e-4, `generation logits: max abs difference ${generation}`);
});
