// The model components on their own: parameter counts from options (vlm inspect) equal PyTorch's,
// pixel-shuffle element order, RoPE dynamic scaling, KV cache = full recompute (with left padding),
// freezing, no tensor leaks across training steps, Hub-backbone option checks and vocab extension.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FIXTURES, needsShared } from '../../helpers/shared.ts';
import { UserError } from '../../../core/errors.ts';
import { buildModel, stateDictKeys } from '../../../core/weights/model-folder.ts';
import { openSafetensors } from '../../../core/weights/safetensors.ts';
import vitPlugin from '../../../plugins/vision/siglip-vit.ts';
import shufflePlugin, { PixelShuffleProjector } from '../../../plugins/projector/pixel-shuffle.ts';
import llamaPlugin, { LLAMA_DEFAULTS, ropeCosSin, ropeInvFreq, type LlamaDecoder } from '../../../plugins/decoder/llama.ts';
import { Rng } from '../../../core/ops.ts';
import { setup, silentLog } from '../../helpers/model.ts';
import { lossAndGrads } from '../../../core/train/grads.ts';

const SMALL = {
  vision: { use: 'siglip-vit', hidden_dim: 16, inter_dim: 32, patch_size: 4, image_size: 16, n_heads: 2, n_blocks: 1 },
  projector: { use: 'pixel-shuffle', factor: 2 },
  decoder: { use: 'llama', hidden_dim: 24, inter_dim: 40, n_heads: 6, n_kv_heads: 2, n_blocks: 2, vocab_size: 50, max_length: 8 },
};

function count(shapes: Record<string, number[]>): number {
  return Object.values(shapes).reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
}

test('describe() with the default options gives the PyTorch parameter names, shapes and counts (222,081,600)', needsShared('fixtures', 'nanovlm', 'param_counts.json'), () => {
  const ref = JSON.parse(readFileSync(join(FIXTURES, 'param_counts.json'), 'utf8'));
  const v = vitPlugin.describe!({} as never, {});
  const d = llamaPlugin.describe!({} as never, {});
  const p = shufflePlugin.describe!({ factor: 2 }, { vision: { hiddenDim: v.hiddenDim!, numTokens: v.numTokens! }, decoder: { hiddenDim: d.hiddenDim! } });
  assert.equal(count(v.params), ref.per_module.vision_encoder);
  assert.equal(count(d.params), ref.per_module.decoder);
  assert.equal(count(p.params), ref.per_module.MP);
  assert.equal(count(v.params) + count(d.params) + count(p.params), ref.total_parameters);
  assert.equal(p.numTokens, 49);
  const ours = new Map<string, number[]>();
  for (const [prefix, desc] of [['vision_encoder.', v], ['decoder.', d], ['MP.', p]] as const) for (const [n, s] of Object.entries(desc.params)) ours.set(prefix + n, s);
  const theirs = new Map<string, number[]>(ref.parameters.map((x: { name: string; shape: number[] }) => [x.name, x.shape]));
  assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort());
  for (const [n, s] of theirs) assert.deepEqual(ours.get(n), s, n);
  // named_parameters() order too
  assert.deepEqual([...ours.keys()].filter((n) => n.startsWith('vision_encoder.')), ref.parameters.map((x: { name: string }) => x.name).filter((n: string) => n.startsWith('vision_encoder.')));
  // what save_pretrained writes: the parameters with the tied head under decoder.head.weight, plus inv_freq
  const saved = stateDictKeys(ours, new Map([['decoder.rotary_embd.inv_freq', [LLAMA_DEFAULTS.hidden_dim / LLAMA_DEFAULTS.n_heads / 2]]]), true);
  const refSaved = new Map<string, number[]>(ref.model_safetensors_keys.map((x: { name: string; shape: number[] }) => [x.name, x.shape]));
  assert.deepEqual([...saved.keys()].sort(), [...refSaved.keys()].sort());
  for (const [n, s] of refSaved) assert.deepEqual(saved.get(n), s, n);
});

test('pixel shuffle: output token (i, j) = concat over di, dj of patch (i*s+di, j*s+dj), feature (di*s+dj)*D + c', async () => {
  await setup();
  const [B, side, D, s] = [2, 6, 3, 3];
  const N = side * side;
  const x = tf.tensor3d(Float32Array.from({ length: B * N * D }, (_, k) => k), [B, N, D]); // value = (b*N + patch)*D + c
  const proj = new PixelShuffleProjector(D, 4, s, new Rng(0));
  const y = proj.pixelShuffle(x);
  assert.deepEqual(y.shape, [B, (side / s) ** 2, s * s * D]);
  const out = y.arraySync() as number[][][];
  const wOut = side / s;
  for (let b = 0; b < B; b++)
    for (let i = 0; i < side / s; i++)
      for (let j = 0; j < wOut; j++)
        for (let di = 0; di < s; di++)
          for (let dj = 0; dj < s; dj++)
            for (let c = 0; c < D; c++) {
              const patch = (i * s + di) * side + (j * s + dj);
              assert.equal(out[b][i * wOut + j][(di * s + dj) * D + c], (b * N + patch) * D + c);
            }
  tf.dispose([x, y]);
  proj.dispose();
});

test('RoPE: float32 inv_freq as torch; dynamic scaling past max_position_embeddings; attn_scaling', () => {
  const cfg = { ...LLAMA_DEFAULTS, hidden_dim: 16, n_heads: 2, re_base: 10000, max_position_embeddings: 4, attn_scaling: 0.5 };
  const inv = ropeInvFreq(cfg);
  assert.deepEqual(Array.from(inv), [0, 2, 4, 6].map((i) => Math.fround(1 / Math.fround(Math.pow(10000, Math.fround(i / 8))))));
  // positions 0..3: no scaling; positions 0..7: inv_freq / (8 / 4)
  const short = ropeCosSin(cfg, [0, 1, 2, 3]);
  assert.ok(Math.abs(short.cos[1 * 8 + 1] - 0.5 * Math.cos(inv[1])) < 1e-7);
  assert.equal(short.cos[1 * 8 + 1], short.cos[1 * 8 + 5], 'emb = cat([freqs, freqs])');
  const long = ropeCosSin(cfg, [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.ok(Math.abs(long.cos[3 * 8 + 1] - 0.5 * Math.cos((3 * inv[1]) / 2)) < 1e-7);
  assert.ok(Math.abs(long.sin[7 * 8 + 0] - 0.5 * Math.sin(7 / 2)) < 1e-7);
});

test('KV cache: prefix + one token at a time = full recompute, with left padding', async () => {
  const registry = await setup();
  const model = await buildModel(SMALL, registry, { seed: 3, log: silentLog });
  const dec = model.decoder as LlamaDecoder;
  const [B, L] = [2, 7];
  const rng = new Rng(1);
  const x = tf.tensor3d(Float32Array.from({ length: B * L * 24 }, () => rng.normal()), [B, L, 24]);
  const mask = tf.tensor2d([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]);
  const full = tf.tidy(() => dec.forward(x, { mask }));
  const cache = dec.newCache(B);
  const parts: tf.Tensor[] = [];
  const prefix = 4;
  parts.push(tf.tidy(() => dec.forward(x.slice([0, 0, 0], [B, prefix, 24]) as tf.Tensor3D, { mask: mask.slice([0, 0], [B, prefix]) as tf.Tensor2D, cache })));
  for (let t = prefix; t < L; t++) {
    parts.push(tf.tidy(() => dec.forward(x.slice([0, t, 0], [B, 1, 24]) as tf.Tensor3D, { mask: mask.slice([0, 0], [B, t + 1]) as tf.Tensor2D, cache })));
    assert.equal(cache.length, t + 1);
  }
  const inc = tf.concat(parts, 1);
  const a = full.arraySync() as number[][][];
  const b = inc.arraySync() as number[][][];
  let worst = 0;
  for (let i = 0; i < B; i++) for (let t = 0; t < L; t++) for (let c = 0; c < 24; c++) worst = Math.max(worst, Math.abs(a[i][t][c] - b[i][t][c]));
  assert.ok(worst < 1e-5, `max abs difference ${worst}`);
  const live = tf.memory().numTensors;
  cache.dispose();
  assert.equal(tf.memory().numTensors, live - 2 * 2, 'the cache held one k and one v per block');
  tf.dispose([x, mask, full, inc, ...parts]);
  model.dispose();
});

test('decodeNext (host-side token step, cache in host arrays) = forward with the cache + inferenceHead, with left padding, cache growth, and back to the tensor path', async () => {
  const registry = await setup();
  const model = await buildModel(SMALL, registry, { seed: 4, log: silentLog });
  const dec = model.decoder as LlamaDecoder;
  const B = 2;
  const V = 50;
  const prefix = 3;
  const steps = 70; // more than the first host capacity (prefix + 64): the host arrays grow once
  const rng = new Rng(2);
  const ids = Int32Array.from({ length: B * (prefix + steps + 2) }, () => Math.floor(rng.next() * V));
  const col = (t: number) => Int32Array.from({ length: B }, (_, b) => ids[b * (prefix + steps + 2) + t]);
  const maskOf = (len: number) => Int32Array.from({ length: B * len }, (_, e) => (e % len === 0 && e < len ? 0 : 1)); // row 0 left-padded by one
  const prefill = (cache: ReturnType<LlamaDecoder['newCache']>) =>
    tf.tidy(() => {
      const x = dec.embed(tf.tensor2d(Int32Array.from({ length: B * prefix }, (_, e) => col(e % prefix)[Math.floor(e / prefix)]), [B, prefix], 'int32'));
      dec.forward(x, { mask: tf.tensor2d(maskOf(prefix), [B, prefix], 'int32'), cache });
    });
  const ref = dec.newCache(B);
  const fast = dec.newCache(B);
  prefill(ref);
  prefill(fast);
  let worst = 0;
  for (let t = prefix; t < prefix + steps; t++) {
    const L = t + 1;
    const want = tf.tidy(() => {
      const h = dec.forward(dec.embed(tf.tensor2d(col(t), [B, 1], 'int32')), { mask: tf.tensor2d(maskOf(L), [B, L], 'int32'), cache: ref });
      return dec.inferenceHead(h).dataSync() as Float32Array;
    });
    const got = dec.decodeNext(col(t), fast, maskOf(L));
    assert.equal(fast.length, L);
    for (let e = 0; e < B * V; e++) worst = Math.max(worst, Math.abs(got[e] - want[e]));
  }
  assert.ok(worst < 1e-4, `max abs logit difference ${worst}`);
  // two more tokens at once through the tensor path: the host cache goes back into tensors
  const L = prefix + steps + 2;
  const two = (cache: ReturnType<LlamaDecoder['newCache']>) =>
    tf.tidy(() => {
      const x = dec.embed(tf.tensor2d(Int32Array.from({ length: B * 2 }, (_, e) => col(prefix + steps + (e % 2))[Math.floor(e / 2)]), [B, 2], 'int32'));
      return dec.forward(x, { mask: tf.tensor2d(maskOf(L), [B, L], 'int32'), cache }).dataSync() as Float32Array;
    });
  const a = two(ref);
  const b = two(fast);
  let worst2 = 0;
  for (let e = 0; e < a.length; e++) worst2 = Math.max(worst2, Math.abs(a[e] - b[e]));
  assert.ok(worst2 < 1e-4, `after the switch back: max abs difference ${worst2}`);
  const live = tf.memory().numTensors;
  fast.dispose();
  ref.dispose();
  assert.equal(tf.memory().numTensors, live - 2 * 2 * 2, 'each cache held one k and one v tensor per block');
  model.dispose();
});

test('training steps leak no tensors; frozen parameters get no gradient; gradients match the full run', async () => {
  const registry = await setup();
  const model = await buildModel(SMALL, registry, { seed: 5, log: silentLog });
  const B = 2;
  const T = model.maxLength;
  const batch = {
    images: tf.randomUniform([B, 3, 16, 16], 0, 1, 'float32', 1) as tf.Tensor4D,
    inputIds: tf.tensor2d([[0, 0, 5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6, 7, 8]], [B, T], 'int32'),
    attentionMask: tf.tensor2d([[0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]], [B, T], 'int32'),
    targets: tf.tensor2d([[-100, -100, -100, 7, 8, 9, 10, -100], [-100, 3, 4, 5, 6, 7, 8, -100]], [B, T], 'int32'),
  };
  const counts: number[] = [];
  let allGrads: Map<string, Float32Array> | null = null;
  for (let step = 0; step < 4; step++) {
    const { loss, grads } = lossAndGrads(model, batch);
    assert.ok(Number.isFinite(loss.dataSync()[0]));
    assert.equal(grads.size, model.params.size);
    if (!allGrads) allGrads = new Map([...grads].map(([n, g]) => [n, g.dataSync() as Float32Array]));
    tf.dispose([loss, ...grads.values()]);
    counts.push(tf.memory().numTensors);
  }
  assert.deepEqual(counts, [counts[0], counts[0], counts[0], counts[0]], `live tensors per step: ${counts}`);

  const trainable = ['MP.proj.weight', 'decoder.norm.weight'];
  const { loss, grads } = lossAndGrads(model, batch, trainable);
  assert.deepEqual([...grads.keys()].sort(), [...trainable].sort());
  for (const n of trainable) assert.deepEqual(grads.get(n)!.dataSync(), allGrads!.get(n));
  tf.dispose([loss, ...grads.values(), ...Object.values(batch)]);
  model.dispose();
});

test('Hub backbones: shapes from their config.json; explicit mismatch is a UserError; vocab extension seeded', needsShared('fixtures', 'nanovlm', 'tiny', 'hf-backbones'), async () => {
  const registry = await setup();
  const hf = join(FIXTURES, 'tiny', 'hf-backbones');
  const ctx = { recipe: {}, recipeDir: hf, yamlPath: 'model.vision', seed: 0, log: silentLog };
  // relative `from` resolves against the recipe directory
  const sig = JSON.parse(readFileSync(join(hf, 'siglip', 'config.json'), 'utf8'));
  const lm = JSON.parse(readFileSync(join(hf, 'llama', 'config.json'), 'utf8'));
  const vit = await registry.create('vision', { use: 'siglip-vit', from: 'siglip' }, ctx);
  assert.equal(vit.hiddenDim, sig.hidden_size);
  assert.equal(vit.numTokens, (sig.image_size / sig.patch_size) ** 2);
  vit.dispose();
  await assert.rejects(registry.create('vision', { use: 'siglip-vit', from: 'siglip', hidden_dim: 2 * sig.hidden_size }, ctx), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.match(e.message, new RegExp(`hidden_dim: the recipe sets ${2 * sig.hidden_size} but the backbone's .*config\\.json says ${sig.hidden_size}`));
    return true;
  });
  const dctx = { ...ctx, yamlPath: 'model.decoder' };
  await assert.rejects(
    registry.create('decoder', { use: 'llama', from: 'llama', vocab_size: lm.vocab_size - 1 }, dctx),
    new RegExp(`vocab_size ${lm.vocab_size - 1} is smaller than the checkpoint's vocabulary \\(${lm.vocab_size}\\)`),
  );

  const vocab = lm.vocab_size + 20;
  const a = (await registry.create('decoder', { use: 'llama', from: 'llama', vocab_size: vocab }, { ...dctx, seed: 7 })) as LlamaDecoder;
  const b = (await registry.create('decoder', { use: 'llama', from: 'llama', vocab_size: vocab }, { ...dctx, seed: 7 })) as LlamaDecoder;
  const emb = a.params.get('token_embedding.weight')!.dataSync() as Float32Array;
  const f = openSafetensors(join(hf, 'llama', 'model.safetensors'));
  const hub = f.read('model.embed_tokens.weight').data as Float32Array;
  f.close();
  assert.deepEqual(emb.subarray(0, hub.length), hub, 'Hub rows copied');
  const extra = emb.subarray(hub.length);
  assert.equal(extra.length, 20 * lm.hidden_size);
  const std = Math.sqrt(extra.reduce((s, x) => s + x * x, 0) / extra.length);
  assert.ok(std > 0.015 && std < 0.025, `new rows ~ N(0, 0.02): std ${std}`);
  assert.deepEqual(b.params.get('token_embedding.weight')!.dataSync(), emb, 'same seed, same rows');
  assert.equal(a.cfg.re_base, lm.rope_theta);
  assert.equal(a.cfg.n_kv_heads, lm.num_key_value_heads);
  assert.equal(a.cfg.n_blocks, lm.num_hidden_layers);
  a.dispose();
  b.dispose();
});

test('bad shapes are UserErrors naming the option', async () => {
  const registry = await setup();
  const ctx = { recipe: {}, recipeDir: '.', yamlPath: 'model.decoder', seed: 0, log: silentLog };
  await assert.rejects(registry.create('decoder', { use: 'llama', hidden_dim: 48, n_heads: 6, n_kv_heads: 4, n_blocks: 1, vocab_size: 10 }, ctx), /n_heads 6 is not divisible by n_kv_heads 4/);
  await assert.rejects(
    buildModel({ ...SMALL, vision: { ...SMALL.vision, image_size: 12 } }, registry, { log: silentLog }),
    /pixel shuffle by factor 2 needs a square grid of image tokens with a side divisible by 2; the vision encoder gives 9 tokens/,
  );
});

test('withoutInit skips random init only inside its scope; seeded init is reproducible', async () => {
  const registry = await setup();
  const { withoutInit } = await import('../../../core/ops.ts');
  const zero = await withoutInit(() => buildModel(SMALL, registry, { seed: 1, log: silentLog }));
  assert.ok((zero.params.get('decoder.blocks.0.attn.q_proj.weight')!.dataSync() as Float32Array).every((x) => x === 0));
  const a = await buildModel(SMALL, registry, { seed: 1, log: silentLog });
  const b = await buildModel(SMALL, registry, { seed: 1, log: silentLog });
  const q = a.params.get('decoder.blocks.0.attn.q_proj.weight')!.dataSync() as Float32Array;
  const std = Math.sqrt(q.reduce((s, x) => s + x * x, 0) / q.length);
  assert.ok(std > 0.015 && std < 0.025, `Linear init ~ N(0, 0.02): std ${std}`);
  assert.deepEqual(b.params.get('decoder.blocks.0.attn.q_proj.weight')!.dataSync(), q);
  const pos = a.params.get('vision_encoder.patch_embedding.position_embedding')!.dataSync() as Float32Array;
  assert.ok(pos.every((x) => x >= 0 && x < 1), 'position embedding ~ U[0, 1) (torch.rand)');
  assert.ok((a.params.get('vision_encoder.blocks.0.ln1.weight')!.dataSync() as Float32Array).every((x) => x === 1));
  assert.ok((a.params.get('decoder.norm.weight')!.dataSync() as Float32Array).every((x) => x === 1));
  for (const m of [zero, a, b]) m.dispose();
});

test('a SigLIP checkpoint missing a tensor or with a wrong shape is a UserError naming it', needsShared('fixtures', 'nanovlm', 'tiny', 'hf-backbones'), async () => {
  const registry = await setup();
  const { mkdtempSync, cpSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { readSafetensors, writeSafetensors } = await import('../../../core/weights/safetensors.ts');
  const dir = mkdtempSync(join(tmpdir(), 'siglip-bad-'));
  try {
    cpSync(join(FIXTURES, 'tiny', 'hf-backbones', 'siglip'), dir, { recursive: true });
    const { tensors, metadata } = readSafetensors(join(dir, 'model.safetensors'));
    const k = 'vision_model.encoder.layers.0.self_attn.k_proj.bias';
    const t = tensors.get(k)!;
    tensors.delete(k);
    writeSafetensors(join(dir, 'model.safetensors'), tensors as never, metadata);
    const ctx = { recipe: {}, recipeDir: dir, yamlPath: 'model.vision', seed: 0, log: silentLog };
    await assert.rejects(registry.create('vision', { use: 'siglip-vit', from: dir }, ctx), (e: unknown) => e instanceof UserError && e.message.includes(`missing tensor "${k}"`));
    tensors.set(k, { ...t, shape: [t.shape[0] - 1], data: (t.data as Float32Array).subarray(1) });
    writeSafetensors(join(dir, 'model.safetensors'), tensors as never, metadata);
    await assert.rejects(registry.create('vision', { use: 'siglip-vit', from: dir }, ctx), /blocks\.0\.attn\.qkv_proj\.bias expects/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
