// Generation's attention over the KV cache in the native addon (native/blas.cc decodeAttend, core/
// kernels/native-direct.ts decodeAttendNative, used by plugins/decoder/llama-decode.ts decodeNext):
// the same arithmetic as the decoder's JavaScript loop (hostAttend), so the same logits token after
// token (grouped kv heads, a left-padded row, a cache that grows past its first capacity), and the
// addon's own checks. Skips without the addon (no compiler / OpenBLAS at `npm ci`), except in CI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { loadNativeBlas, nativeMatMulStatus } from '../../../core/kernels/native-matmul.ts';
import { decodeAttendNative } from '../../../core/kernels/native-direct.ts';
import { buildModel } from '../../../core/weights/model-folder.ts';
import { Rng } from '../../../core/ops.ts';
import type { LlamaDecoder } from '../../../plugins/decoder/llama.ts';
import { setup, silentLog } from '../../helpers/model.ts';

const registry = await setup();
const addon = loadNativeBlas() as unknown as Record<string, unknown> | null;
const current = addon !== null && typeof addon.decodeAttend === 'function';
const opts =
  tf.getBackend() !== 'wasm'
    ? { skip: `native kernels are wasm-only (test backend is ${tf.getBackend()})` }
    : ['VLM_NATIVE_MATMUL', 'VLM_NATIVE_DIRECT', 'VLM_NATIVE_FUSED'].some((k) => process.env[k] === '0')
      ? { skip: 'native kernels turned off in the environment' }
      : current || process.env.CI === 'true'
        ? {}
        : { skip: addon ? 'the native addon predates decodeAttend: npm run build:native' : nativeMatMulStatus() };

const MODEL = {
  vision: { use: 'siglip-vit', hidden_dim: 16, inter_dim: 32, patch_size: 4, image_size: 16, n_heads: 2, n_blocks: 1 },
  projector: { use: 'pixel-shuffle', factor: 2 },
  decoder: { use: 'llama', hidden_dim: 48, inter_dim: 40, n_heads: 6, n_kv_heads: 2, n_blocks: 2, vocab_size: 50, max_length: 8 },
};

test('decodeNext with the native attention gives the JavaScript loop\'s logits, token after token', opts, async () => {
  assert.ok(decodeAttendNative(), 'the native attention is in use');
  const model = await buildModel(MODEL, registry, { seed: 7, log: silentLog });
  const dec = model.decoder as LlamaDecoder;
  const B = 2, V = 50, prefix = 5, steps = 70; // 75 positions: past the host cache's first capacity
  const rng = new Rng(3);
  const ids = Array.from({ length: prefix + steps }, () => Int32Array.from({ length: B }, () => Math.floor(rng.next() * V)));
  const maskOf = (len: number) => Int32Array.from({ length: B * len }, (_, e) => (e < 2 ? 0 : 1)); // row 0 left-padded by two
  const prefill = (cache: ReturnType<LlamaDecoder['newCache']>) =>
    tf.tidy(() => {
      const x = dec.embed(tf.tensor2d(Int32Array.from({ length: B * prefix }, (_, e) => ids[e % prefix][Math.floor(e / prefix)]), [B, prefix], 'int32'));
      dec.forward(x, { mask: tf.tensor2d(maskOf(prefix), [B, prefix], 'int32'), cache });
    });
  const js = dec.newCache(B);
  const native = dec.newCache(B);
  prefill(js);
  prefill(native);
  let worst = 0;
  let differ = 0;
  for (let t = prefix; t < prefix + steps; t++) {
    process.env.VLM_NATIVE_DIRECT = '0'; // the JavaScript loop (and JavaScript products: same BLAS call either way)
    let want: Float32Array;
    try {
      assert.equal(decodeAttendNative(), null);
      want = dec.decodeNext(ids[t], js, maskOf(t + 1));
    } finally {
      delete process.env.VLM_NATIVE_DIRECT;
    }
    const got = dec.decodeNext(ids[t], native, maskOf(t + 1));
    for (let e = 0; e < got.length; e++) {
      worst = Math.max(worst, Math.abs(got[e] - want[e]) / Math.max(1, Math.abs(want[e])));
      if (got[e] !== want[e]) differ++;
    }
  }
  // the same operations in the same order (measured: all 7,000 logits bit-identical); only exp
  // (glibc's vs V8's) could round a last bit differently on another platform
  assert.ok(worst <= 1e-6, `max relative logit difference ${worst} (${differ} values differ)`);
  js.dispose();
  native.dispose();
  model.dispose();
});

test('decodeAttend: one head by hand (scale, a padded key, grouped heads) and the size checks', opts, () => {
  const attend = decodeAttendNative()!;
  const hd = 2, L = 3, cap = 4;
  // two kv heads, cache [kv head, cap, hd]; query heads 0, 1 read kv head 0, heads 2, 3 kv head 1 (G = 2)
  const K = Float32Array.from([1, 0, 0, 1, 1, 1, 9, 9, /* kv 1 */ 2, 0, 0, 2, 1, -1, 9, 9]);
  const Vc = Float32Array.from([1, 2, 3, 4, 5, 6, 9, 9, /* kv 1 */ -1, 0, 0, -1, 1, 1, 9, 9]);
  const q = Float32Array.from([1, 0, 0, 1, 1, 1, 0.5, -0.5]);
  const mask = Int32Array.from([1, 0, 1]); // key 1 padded
  const y = new Float32Array(4 * hd + 1);
  attend(q, K, Vc, y, mask, 4, 2, hd, L, cap, 0, 0, 1, 0.5);
  const expect = (qh: number[], kv: number) => {
    const s = [0, 1, 2].map((t) => (mask[t] === 0 ? -Infinity : 0.5 * (qh[0] * K[(kv * cap + t) * hd] + qh[1] * K[(kv * cap + t) * hd + 1])));
    const m = Math.max(...s);
    const e = s.map((v) => Math.exp(v - m));
    const z = e.reduce((a, b) => a + b, 0);
    return [0, 1].map((d) => e.reduce((a, p, t) => a + (p / z) * Vc[(kv * cap + t) * hd + d], 0));
  };
  const want = [...expect([1, 0], 0), ...expect([0, 1], 0), ...expect([1, 1], 1), ...expect([0.5, -0.5], 1)];
  assert.equal(y[0], 0, 'nothing written before yAt');
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(y[1 + i] - want[i]) < 1e-6, `y[${i}] = ${y[1 + i]}, expected ${want[i]}`);
  assert.throws(() => attend(q, K, Vc, y, mask, 4, 2, hd, L, cap, 0, 0, 2, 0.5), /shorter than the sizes say/);
  assert.throws(() => attend(q, K, Vc, y, mask, 4, 3, hd, L, cap, 0, 0, 0, 0.5), /bad sizes/);
  assert.throws(() => attend(q, K, Vc, y, Float32Array.from([1, 1, 1]) as never, 4, 2, hd, L, cap, 0, 0, 0, 0.5), /Int32Array or null/);
});
