// LoRA adapters (plugins/adapter/lora.ts, model.adapters): the PEFT numerics of one adapted linear
// layer against a float64 reference (forward, gradients of A and B), PEFT's initialisation, a fresh
// adapter (B = 0) leaving the model's output unchanged, the merged checkpoint computing what the
// unmerged model computes, gradients and optimizer state for the adapters only (the base frozen),
// targets that match nothing named by their YAML path, and an exact resume from a checkpoint.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Registry } from '../../../core/registry.ts';
import { UserError } from '../../../core/errors.ts';
import { Rng } from '../../../core/rng.ts';
import { attachAdapters } from '../../../core/model/adapters.ts';
import { loadCheckpoint, saveCheckpoint } from '../../../core/weights/model-folder.ts';
import { readSafetensors } from '../../../core/weights/safetensors.ts';
import { trainStep } from '../../../core/train/step.ts';
import { findLatestCheckpoint } from '../../../core/train/trainer-checkpoints.ts';
import lora, { LoraAdapter, matchesTarget } from '../../../plugins/adapter/lora.ts';
import builtins from '../../../plugins/index.ts';
import { randomHostBatch, silentLog, tensorsOf, tinyModel, TINY_MODEL } from '../../helpers/train.ts';
import { runTrain, smallRecipe, tmpOut, writeRecipe } from '../../helpers/run.ts';
import { linear } from '../../../core/ops.ts';

const relL2 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
};

function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const r = new Rng(seed, 'lora-test');
  return Float32Array.from({ length: n }, () => r.normal() * scale);
}

test('a LoRA linear: forward W x + (alpha/r) B A x and the gradients of A and B equal a float64 reference', async () => {
  await tinyModel(); // the test backend with the runtime's kernels
  const [M, inDim, out, r, alpha] = [7, 24, 20, 4, 12];
  const adapter = new LoraAdapter([{ layer: 'decoder.x', out, in: inDim }], { r, alpha, dropout: 0, targets: ['x'] }, new Rng(1));
  const s = alpha / r;
  const lin = adapter.linear('decoder.x');
  const A = adapter.params.get('decoder.x.lora_A.weight')!;
  const B = adapter.params.get('decoder.x.lora_B.weight')!;
  B.assign(tf.tensor(randomArray(out * r, 2, 0.1), [out, r])); // a trained B (fresh ones are zero)
  const x = randomArray(M * inDim, 3);
  const W = randomArray(out * inDim, 4, 0.2);
  const g = randomArray(M * out, 5); // d loss / d y
  const { value, grads } = tf.variableGrads(() => {
    const xt = tf.tensor2d(x, [M, inDim]);
    const y = tf.add(linear(xt, tf.tensor2d(W, [out, inDim])), lin.forward(xt)); // [M, out]
    return tf.sum(tf.mul(y, tf.tensor2d(g, [M, out]))) as tf.Scalar;
  }, [A, B]);
  const a64 = Float64Array.from(A.dataSync());
  const b64 = Float64Array.from(B.dataSync());
  // float64: h = x A^T [M, r]; y = x W^T + s h B^T; dB = s g^T h [out, r]; dA = s (g B)^T x [r, in]
  const h = new Float64Array(M * r);
  for (let m = 0; m < M; m++) for (let k = 0; k < r; k++) for (let i = 0; i < inDim; i++) h[m * r + k] += x[m * inDim + i] * a64[k * inDim + i];
  let loss = 0;
  for (let m = 0; m < M; m++)
    for (let o = 0; o < out; o++) {
      let y = 0;
      for (let i = 0; i < inDim; i++) y += x[m * inDim + i] * W[o * inDim + i];
      for (let k = 0; k < r; k++) y += s * h[m * r + k] * b64[o * r + k];
      loss += y * g[m * out + o];
    }
  const dB = new Float64Array(out * r);
  for (let o = 0; o < out; o++) for (let k = 0; k < r; k++) for (let m = 0; m < M; m++) dB[o * r + k] += s * g[m * out + o] * h[m * r + k];
  const gB = new Float64Array(M * r);
  for (let m = 0; m < M; m++) for (let k = 0; k < r; k++) for (let o = 0; o < out; o++) gB[m * r + k] += g[m * out + o] * b64[o * r + k];
  const dA = new Float64Array(r * inDim);
  for (let k = 0; k < r; k++) for (let i = 0; i < inDim; i++) for (let m = 0; m < M; m++) dA[k * inDim + i] += s * gB[m * r + k] * x[m * inDim + i];
  assert.ok(Math.abs(value.dataSync()[0] - loss) / Math.abs(loss) < 1e-5, `loss ${value.dataSync()[0]} vs ${loss}`);
  assert.ok(relL2(grads[A.name].dataSync(), dA) < 1e-4, `dA rel L2 ${relL2(grads[A.name].dataSync(), dA)}`);
  assert.ok(relL2(grads[B.name].dataSync(), dB) < 1e-4, `dB rel L2 ${relL2(grads[B.name].dataSync(), dB)}`);
  // the merged weight: W + s B A
  const delta = lin.delta().dataSync();
  const ref = new Float64Array(out * inDim);
  for (let o = 0; o < out; o++) for (let i = 0; i < inDim; i++) for (let k = 0; k < r; k++) ref[o * inDim + i] += s * b64[o * r + k] * a64[k * inDim + i];
  assert.ok(relL2(delta, ref) < 1e-5);
  tf.dispose([value, ...Object.values(grads)]);
  adapter.dispose();
});

test('PEFT initialisation: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform_, a = sqrt(5)), B = 0', async () => {
  await tinyModel();
  const inDim = 400;
  const adapter = new LoraAdapter([{ layer: 'l', out: 30, in: inDim }], { r: 16, alpha: 16, dropout: 0, targets: ['l'] }, new Rng(7));
  const a = adapter.params.get('l.lora_A.weight')!.dataSync();
  const bound = 1 / Math.sqrt(inDim);
  assert.ok(a.every((v) => Math.abs(v) <= bound));
  const variance = Array.from(a).reduce((acc, v) => acc + v * v, 0) / a.length;
  assert.ok(Math.abs(variance / (bound * bound / 3) - 1) < 0.05, `variance ${variance} vs ${bound * bound / 3}`);
  assert.ok(adapter.params.get('l.lora_B.weight')!.dataSync().every((v) => v === 0));
  adapter.dispose();
});

test('target patterns: * spans dots, a name without * matches as a suffix (PEFT target_modules)', () => {
  assert.ok(matchesTarget('decoder.blocks.3.attn.q_proj', 'decoder.*.attn.q_proj'));
  assert.ok(matchesTarget('decoder.blocks.3.attn.q_proj', 'q_proj'));
  assert.ok(!matchesTarget('decoder.blocks.3.attn.q_proj', 'decoder.*.attn.k_proj'));
  assert.ok(!matchesTarget('vision_encoder.blocks.0.attn.qkv_proj', 'decoder.*'));
  assert.ok(!matchesTarget('decoder.blocks.3.attn.q_proj', 'proj')); // suffixes are whole name parts
});

async function adapted(targets: string[], extra: Record<string, unknown> = {}, seed = 0) {
  const model = await tinyModel(seed);
  const registry = new Registry([lora]);
  await attachAdapters(model, [{ use: 'lora', r: 4, alpha: 8, targets, ...extra }], registry, { recipe: {}, recipeDir: process.cwd(), seed: 0, log: silentLog });
  return model;
}

/** logits of a fixed batch */
function logits(model: Awaited<ReturnType<typeof tinyModel>>, training = false): Float32Array {
  const b = tensorsOf(randomHostBatch(2, 11));
  const out = tf.tidy(() => model.forward(b.inputIds, b.images, b.attentionMask, { training }).dataSync() as Float32Array);
  tf.dispose([b.images, b.inputIds, b.targets, b.attentionMask!]);
  return out;
}

const ALL = ['vision_encoder.*', 'MP.proj', 'decoder.*'];

test('a fresh adapter (B = 0) leaves the output unchanged; a trained one changes it; the merged checkpoint computes what the adapted model does', async () => {
  const base = await tinyModel(0);
  const expected = logits(base);
  base.dispose();
  const model = await adapted(ALL);
  assert.equal(model.adapters[0].layers.length, 2 * 4 + 1 + 2 * 7, 'every linear layer of the tiny model');
  assert.deepEqual(logits(model), expected, 'B = 0: the base model exactly');
  // give every B values, as training would
  let seed = 20;
  for (const [n, v] of model.params) if (n.endsWith('lora_B.weight')) v.assign(tf.tensor(randomArray(v.size, seed++, 0.05), v.shape));
  const adaptedOut = logits(model);
  assert.ok(relL2(adaptedOut, expected) > 1e-3, 'a trained adapter changes the output');
  // merged on save: a plain nanoVLM folder (no adapter tensors, no adapters in the sidecar)
  const dir = mkdtempSync(join(tmpdir(), 'lora-merged-'));
  await saveCheckpoint(model, dir, { model: { ...TINY_MODEL, adapters: [{ use: 'lora', targets: ALL }] } });
  const names = [...readSafetensors(join(dir, 'model.safetensors')).tensors.keys()];
  assert.ok(!names.some((n) => n.includes('lora')), names.join());
  assert.ok(!('adapters' in JSON.parse(readFileSync(join(dir, 'nanovlm-ts.json'), 'utf8')).model));
  const { default: plugins } = await import('../../../plugins/index.ts');
  const merged = await loadCheckpoint(dir, new Registry(plugins), { log: silentLog });
  assert.equal(merged.adapters.length, 0);
  assert.ok(relL2(logits(merged), adaptedOut) < 1e-5, `merged vs adapted rel L2 ${relL2(logits(merged), adaptedOut)}`);
  // generation's weights (the decoder's fast path with a cache, and its host decodeNext) are the merged ones
  const ids = tf.tensor2d([[5, 17, 33, 2]], [1, 4], 'int32');
  const plain = tf.tidy(() => model.decoder.forward(model.decoder.embed(ids)).dataSync() as Float32Array); // the adapters' path
  const cache = model.decoder.newCache(1);
  const cached = tf.tidy(() => model.decoder.forward(model.decoder.embed(ids.slice([0, 0], [1, 3]) as tf.Tensor2D), { cache }).dataSync() as Float32Array);
  const C = model.decoder.hiddenDim;
  assert.ok(relL2(cached, plain.slice(0, 3 * C)) < 1e-5, `fast path vs adapters rel L2 ${relL2(cached, plain.slice(0, 3 * C))}`);
  const next = model.decoder.decodeNext!(Int32Array.from([2]), cache, null); // [1, V], host path
  const headLast = tf.tidy(() => model.decoder.head(tf.tensor3d(plain.slice(3 * C), [1, 1, C])).dataSync() as Float32Array);
  assert.ok(relL2(next, headLast) < 1e-5, `decodeNext vs adapters rel L2 ${relL2(next, headLast)}`);
  cache.dispose();
  ids.dispose();
  merged.dispose();
  model.dispose();
});

test('only the adapters train: gradients and AdamW state for lora_A/lora_B alone, the base weights unchanged by a step', async () => {
  const model = await adapted(['decoder.*.attn.q_proj', 'decoder.*.attn.v_proj']);
  const registry = new Registry(builtins);
  const optimizer = await registry.create('optimizer', { use: 'adamw', lr: 1e-2 }, {
    recipe: {}, recipeDir: process.cwd(), seed: 0, log: silentLog, yamlPath: 'optimizer',
    built: { vision: model.vision, projector: model.projector, decoder: model.decoder },
  });
  const trainable = optimizer.groups.flatMap((g) => g.params);
  assert.equal(trainable.length, 2 * 2 * 2); // 2 blocks x (q, v) x (A, B)
  assert.ok(trainable.every((n) => /\.lora_[AB]\.weight$/.test(n)), trainable.join());
  assert.deepEqual([...optimizer.state().tensors.keys()].filter((k) => !/lora_[AB]/.test(k)), []);
  const before = new Map([...model.params].map(([n, v]) => [n, v.dataSync().slice()]));
  await trainStep(model, optimizer, [randomHostBatch(2, 3)], { maxGradNorm: 1 });
  const live = tf.memory().numTensors;
  await trainStep(model, optimizer, [randomHostBatch(2, 4)], { maxGradNorm: 1 });
  assert.equal(tf.memory().numTensors, live, 'live tensors flat across steps');
  for (const [n, v] of model.params) {
    const moved = relL2(v.dataSync(), before.get(n)!) > 0 || (before.get(n)!.every((x) => x === 0) && v.dataSync().some((x) => x !== 0));
    assert.equal(moved, trainable.includes(n), `${n} ${moved ? 'changed' : 'unchanged'}`);
  }
  optimizer.dispose();
  model.dispose();
});

test('dropout on the adapter input in training only; refused with activation checkpointing', async () => {
  const model = await adapted(['decoder.*'], { dropout: 0.5 });
  for (const [n, v] of model.params) if (n.endsWith('lora_B.weight')) v.assign(tf.onesLike(v));
  assert.deepEqual(logits(model), logits(model), 'eval: deterministic');
  assert.notDeepEqual(logits(model, true), logits(model), 'training: dropout');
  const b = tensorsOf(randomHostBatch(2, 11));
  assert.throws(
    () => tf.tidy(() => model.trainingLoss(b, true)),
    (e: unknown) => e instanceof UserError && /adapter "lora"/.test(e.message) && e.where.yamlPath === 'train.activation_checkpointing',
  );
  tf.dispose([b.images, b.inputIds, b.targets, b.attentionMask!]);
  assert.equal(model.adapters[0].training, false, 'training mode ends with the pass');
  model.dispose();
});

test('a target that matches no linear layer is an error naming its YAML path and the layer names', async () => {
  await assert.rejects(adapted(['decoder.*.attn.q_proj', 'decoder.*.attn.qproj']), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.match(e.message, /"decoder\.\*\.attn\.qproj" matches no linear layer/);
    assert.equal(e.where.yamlPath, 'model.adapters[0].targets[1]');
    assert.match(e.hint ?? '', /decoder\.blocks\.0\.attn\.q_proj|vision_encoder\.blocks\.0/);
    return true;
  });
});

test('LoRA training resumes exactly: the adapters and their optimizer state come back from the checkpoint (PEFT adapter files)', async () => {
  const recipe = smallRecipe(tmpOut(), { max_steps: 6, checkpoint_every: 3 });
  (recipe.model as Record<string, unknown>).adapters = [{ use: 'lora', r: 4, alpha: 8, targets: ['decoder.*.attn.q_proj', 'decoder.*.attn.v_proj', 'MP.proj'] }];
  const file = writeRecipe(recipe);
  const full = await runTrain(file);
  assert.equal(full.error, undefined, String(full.error));
  full.ctx.model!.dispose();
  const first = await runTrain(file, { onStep: (rec, _ctx, abort) => rec.step === 3 && abort() });
  assert.ok(first.error instanceof UserError, String(first.error));
  const ckpt = findLatestCheckpoint(first.ctx.runDir)!.folder;
  const config = JSON.parse(readFileSync(join(ckpt, 'adapter_config.json'), 'utf8'));
  assert.equal(config.peft_type, 'LORA');
  assert.equal(config.r, 4);
  assert.equal(config.lora_alpha, 8);
  assert.ok(config.target_modules.includes('decoder.blocks.0.attn.q_proj'));
  const keys = [...readSafetensors(join(ckpt, 'adapter_model.safetensors')).tensors.keys()];
  assert.ok(keys.includes('base_model.model.decoder.blocks.1.attn.v_proj.lora_B.weight'), keys.join());
  assert.ok(existsSync(join(ckpt, 'model.safetensors')));
  first.ctx.model!.dispose();
  const second = await runTrain(file, { resume: first.ctx.runDir });
  assert.equal(second.error, undefined, String(second.error));
  const resumed = [...first.steps, ...second.steps];
  assert.deepEqual(resumed.map((r) => r.step), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(resumed.map((r) => r.loss), full.steps.map((r) => r.loss), 'losses equal step for step');
  const a = readSafetensors(join(findLatestCheckpoint(full.ctx.runDir)!.folder, 'adapter_model.safetensors')).tensors;
  const b = readSafetensors(join(findLatestCheckpoint(second.ctx.runDir)!.folder, 'adapter_model.safetensors')).tensors;
  for (const [k, t] of a) assert.deepEqual(b.get(k)!.data, t.data, k);
  second.ctx.model!.dispose();
});

test('vlm inspect counts the adapters (describe over the linear layers) as the only trainable parameters, equal to the built ones', async () => {
  const { parameterReport } = await import('../../../core/commands/inspect.ts');
  const { resolveRecipe } = await import('../../../core/recipe/index.ts');
  const targets = ['decoder.*.attn.q_proj', 'vision_encoder.*.mlp.fc1', 'MP.proj'];
  const recipe = smallRecipe(tmpOut());
  (recipe.model as Record<string, unknown>).adapters = [{ use: 'lora', r: 4, alpha: 8, targets }];
  const registry = new Registry(builtins);
  const r = await resolveRecipe(writeRecipe(recipe), { registry });
  const report = parameterReport(r.data, registry);
  const built = await adapted(targets);
  const n = [...built.adapters[0].params.values()].reduce((s, v) => s + v.size, 0);
  built.dispose();
  assert.equal(report.modules.find((m) => m.module === 'adapters[0]')!.params, n);
  assert.equal(report.trainable, n);
  assert.equal(report.memory!.grads, 4 * n);
  // 2 blocks x q_proj [48, 48] + 2 blocks x fc1 [64, 32] + proj [48, 128], rank 4
  assert.equal(n, 4 * (2 * (48 + 48) + 2 * (32 + 64) + (128 + 48)));
});

test('--random-full-size (vlm bench / vlm memory) keeps the recipe\'s adapters', async () => {
  const { withFullSizeModel } = await import('../../../core/model/random-checkpoint.ts');
  const adapters = [{ use: 'lora', targets: ['q_proj'] }];
  const m = withFullSizeModel({ decoder: { use: 'llama' }, tokenizer: { use: 'bytes' }, adapters }, new Registry(builtins));
  assert.deepEqual(m.adapters, adapters);
  assert.equal(m.decoder.hidden_dim, 576);
});
