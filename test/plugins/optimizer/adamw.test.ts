// AdamW against the nanoVLM v0.1 fixture (one torch 1.13 AdamW step from the stored weights and
// gradients), parameter groups / freeze, optimizer state round trip, the cosine-warmup schedule
// against nanoVLM get_lr, and clip_grad_norm_.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useTestBackend } from '../../helpers/backend.ts';
import { FIXTURES, needsShared } from '../../helpers/shared.ts';
import { readSafetensors } from '../../../core/weights/safetensors.ts';
import { AdamW, assignGroups } from '../../../plugins/optimizer/adamw.ts';
import { cosineWarmupLr } from '../../../plugins/schedule/cosine-warmup.ts';
import constantPlugin from '../../../plugins/schedule/constant.ts';
import { clipGradNorm, globalNorm, accumulate } from '../../../core/train/grads.ts';
import { UserError } from '../../../core/errors.ts';

const TINY = join(FIXTURES, 'tiny');
const V1_GROUPS = [
  { name: 'MP', prefixes: ['MP'], lr: 2e-3 },
  { name: 'backbones', prefixes: ['decoder', 'vision_encoder'], lr: 1e-4 },
];
const DEFAULTS = { weight_decay: 0.01, betas: [0.9, 0.999], eps: 1e-8, freeze: [] as string[] };

function f32(t: { shape: number[]; data: unknown }): tf.Tensor {
  return tf.tensor(Float32Array.from(t.data as ArrayLike<number>), t.shape, 'float32');
}

async function loadFixture() {
  const weights = (await readSafetensors(join(TINY, 'model.safetensors'))).tensors;
  const expected = (await readSafetensors(join(TINY, 'expected.safetensors'))).tensors;
  const params = new Map<string, tf.Variable>();
  const grads = new Map<string, tf.Tensor>();
  // parameter names = the grad.* names (named_parameters order); the tied embedding is stored as decoder.head.weight
  for (const key of expected.keys()) {
    if (!key.startsWith('grad.') || key === 'grad_norm') continue;
    const name = key.slice('grad.'.length);
    const stored = weights.get(name) ?? (name === 'decoder.token_embedding.weight' ? weights.get('decoder.head.weight') : undefined);
    assert.ok(stored, `model.safetensors has ${name}`);
    params.set(name, tf.variable(f32(stored!), true));
    grads.set(name, f32(expected.get(key)!));
  }
  return { params, grads, expected };
}

test('AdamW: one step from the fixture weights and grads equals after_adamw.* (max abs <= 1e-6)', needsShared('fixtures', 'nanovlm', 'tiny'), async () => {
  await useTestBackend();
  const { params, grads, expected } = await loadFixture();
  assert.equal(params.size, 50);
  const opt = new AdamW(params, { ...DEFAULTS, groups: V1_GROUPS });
  assert.deepEqual(opt.groups.map((g) => [g.name, g.params.length]), [['MP', 1], ['backbones', 49]]);
  opt.step(grads, [2e-3, 1e-4]); // no schedule, as in the fixture
  let worst = 0;
  let worstName = '';
  for (const [name, p] of params) {
    const want = expected.get(`after_adamw.${name}`)!;
    const got = p.dataSync();
    for (let i = 0; i < got.length; i++) {
      const d = Math.abs(got[i] - (want.data as Float32Array)[i]);
      if (d > worst) [worst, worstName] = [d, name];
    }
  }
  assert.ok(worst <= 1e-6, `max abs ${worst} at ${worstName}`);
  if (process.env.VLM_TEST_VERBOSE) console.log(`after_adamw max abs ${worst} (${worstName})`);
  opt.dispose();
  for (const p of params.values()) p.dispose();
  for (const g of grads.values()) g.dispose();
});

test('clip_grad_norm_: global norm equals the fixture grad_norm; clipping scales by max/(norm+1e-6)', needsShared('fixtures', 'nanovlm', 'tiny'), async () => {
  await useTestBackend();
  const { params, grads, expected } = await loadFixture();
  const want = (expected.get('grad_norm')!.data as Float32Array)[0];
  const norm = globalNorm(grads);
  assert.ok(Math.abs(norm.dataSync()[0] - want) / want <= 1e-5, `norm ${norm.dataSync()[0]} vs ${want}`);
  // not clipped: max_norm above the norm leaves gradients unchanged
  const a = clipGradNorm(grads, 100);
  const g0 = grads.get('MP.proj.weight')!.dataSync();
  assert.deepEqual(a.grads.get('MP.proj.weight')!.dataSync(), g0);
  // clipped to 1: new norm = norm / (norm + 1e-6) ~ 1
  const b = clipGradNorm(grads, 1.0);
  const nb = globalNorm(b.grads).dataSync()[0];
  assert.ok(Math.abs(nb - want / (want + 1e-6)) < 1e-5, `clipped norm ${nb}`);
  const ratio = b.grads.get('MP.proj.weight')!.dataSync()[3] / g0[3];
  assert.ok(Math.abs(ratio - 1 / (want + 1e-6)) < 1e-6);
  tf.dispose([norm, a.norm, b.norm, ...a.grads.values(), ...b.grads.values(), ...grads.values(), ...params.values()]);
});

test('parameter groups: every trainable parameter in exactly one group, freeze, errors name the parameter', () => {
  const names = ['vision_encoder.a.weight', 'MP.proj.weight', 'MPX.w', 'decoder.norm.weight'];
  const { groups, frozen } = assignGroups(names, {
    groups: [
      { name: 'mp', prefixes: ['MP', 'MPX'], lr: 1 },
      { name: 'rest', prefixes: ['decoder'], lr: 2 },
    ],
    freeze: ['vision_encoder'],
  });
  assert.deepEqual(frozen, ['vision_encoder.a.weight']);
  assert.deepEqual(groups.map((g) => g.params), [['MP.proj.weight', 'MPX.w'], ['decoder.norm.weight']]);
  // "MP" must not swallow "MPX.w": it is left in no group
  assert.throws(
    () => assignGroups(names, { groups: [{ name: 'mp', prefixes: ['MP'], lr: 1 }, { name: 'x', prefixes: ['decoder', 'vision_encoder'], lr: 1 }], freeze: [] }),
    (e: unknown) => e instanceof UserError && /"MPX\.w" is in no optimizer group/.test(e.message) && e.where.yamlPath === 'optimizer.groups',
  );
  assert.throws(
    () => assignGroups(names, { groups: [{ name: 'a', prefixes: [''], lr: 1 }, { name: 'b', prefixes: ['decoder'], lr: 1 }], freeze: [] }),
    (e: unknown) => e instanceof UserError && /"decoder\.norm\.weight" is in several optimizer groups: a, b/.test(e.message),
  );
  assert.throws(() => assignGroups(names, { freeze: ['nope'], lr: 1 }), /freeze prefix "nope" matches no parameter/);
  assert.throws(() => assignGroups(names, { freeze: [] }), /needs either `lr` or `groups`/);
  const single = assignGroups(names, { lr: 0.5, freeze: ['decoder'] });
  assert.deepEqual(single.groups, [{ name: 'all', params: ['vision_encoder.a.weight', 'MP.proj.weight', 'MPX.w'], lr: 0.5 }]);
});

test('AdamW: frozen parameters do not move; per-group weight decay; state round trip continues identically', async () => {
  await useTestBackend();
  const make = () =>
    new Map<string, tf.Variable>([
      ['MP.w', tf.variable(tf.tensor1d([0.5, -0.25, 1.5]), true, undefined)],
      ['decoder.w', tf.variable(tf.tensor1d([1, 2, 3]), true)],
      ['vision_encoder.w', tf.variable(tf.tensor1d([7, 8]), true)],
    ]);
  const grads = new Map<string, tf.Tensor>([
    ['MP.w', tf.tensor1d([0.1, -0.2, 0.3])],
    ['decoder.w', tf.tensor1d([0, 0, 0])],
    ['vision_encoder.w', tf.tensor1d([1, 1])],
  ]);
  const opts = {
    ...DEFAULTS,
    groups: [
      { name: 'mp', prefixes: ['MP'], lr: 0.1 },
      { name: 'dec', prefixes: ['decoder'], lr: 0.1, weight_decay: 0.5 },
    ],
    freeze: ['vision_encoder'],
  };
  const p1 = make();
  const o1 = new AdamW(p1, opts);
  o1.step(grads, [0.1, 0.1]);
  // zero gradient: only the decay moves it, p * (1 - lr * wd) with the group's wd 0.5
  assert.deepEqual([...p1.get('decoder.w')!.dataSync()].map((x) => +x.toFixed(5)), [0.95, 1.9, 2.85]);
  assert.deepEqual([...p1.get('vision_encoder.w')!.dataSync()], [7, 8]);
  o1.step(grads, [0.05, 0.05]);
  o1.step(grads, [0.02, 0.02]);

  const p2 = make();
  const o2 = new AdamW(p2, opts);
  o2.step(grads, [0.1, 0.1]);
  const saved = o2.state();
  const copy = { step: saved.step, tensors: new Map([...saved.tensors].map(([k, t]) => [k, (t as tf.Tensor).clone()])) };
  o2.dispose();
  const o3 = new AdamW(p2, opts);
  o3.loadState(copy);
  assert.equal(o3.state().step, 1);
  o3.step(grads, [0.05, 0.05]);
  o3.step(grads, [0.02, 0.02]);
  for (const k of p1.keys()) assert.deepEqual(p2.get(k)!.dataSync(), p1.get(k)!.dataSync(), k);
  // a state for another model is refused with a message naming the tensor
  const o4 = new AdamW(new Map([['MP.q', tf.variable(tf.zeros([2]))]]), { ...DEFAULTS, lr: 1 });
  assert.throws(() => o4.loadState(copy), /optimizer state has no "MP\.q\.exp_avg"/);
  tf.dispose([...copy.tensors.values(), ...grads.values()]);
  for (const o of [o1, o3, o4]) o.dispose();
});

test('AdamW.step leaks no tensors', async () => {
  await useTestBackend();
  const params = new Map([['MP.w', tf.variable(tf.randomNormal([4, 4], 0, 1, 'float32', 1))]]);
  const grads = new Map<string, tf.Tensor>([['MP.w', tf.randomNormal([4, 4], 0, 1, 'float32', 2)]]);
  const opt = new AdamW(params, { ...DEFAULTS, lr: 1e-3 });
  opt.step(grads, [1e-3]);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) opt.step(grads, [1e-3]);
  assert.equal(tf.memory().numTensors, before);
  const acc = new Map<string, tf.Tensor>();
  accumulate(acc, grads, 0.25);
  accumulate(acc, grads, 0.75);
  assert.ok(Math.abs(acc.get('MP.w')!.dataSync()[0] - grads.get('MP.w')!.dataSync()[0]) < 1e-6);
  assert.equal(tf.memory().numTensors, before + 1);
  tf.dispose([...acc.values(), ...grads.values(), ...params.values()]);
  opt.dispose();
});

test('cosine-warmup equals nanoVLM v0.1 get_lr', () => {
  // hand-evaluated from train.py get_lr with max_lr 2e-3, max_steps 1000 (warmup 30.0 steps)
  const max = 2e-3;
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) <= 1e-15 + 1e-12 * Math.abs(b), `${a} vs ${b}`);
  close(cosineWarmupLr(0, max, 1000), (max * 1) / 30);
  close(cosineWarmupLr(29, max, 1000), max);
  close(cosineWarmupLr(30, max, 1000), max); // decay_ratio 0
  close(cosineWarmupLr(515, max, 1000), 2e-4 + 0.5 * (1 + Math.cos(Math.PI * 0.5)) * 1.8e-3);
  close(cosineWarmupLr(1000, max, 1000), 2e-4);
  close(cosineWarmupLr(1001, max, 1000), 2e-4);
  // short runs: warmup_steps is a float (nanoVLM does not round it)
  close(cosineWarmupLr(0, 1, 50), 1 / 1.5);
  close(cosineWarmupLr(1, 1, 50), 2 / 1.5); // above max_lr: nanoVLM's quirk, kept
  close(cosineWarmupLr(2, 1, 50), 0.1 + 0.5 * (1 + Math.cos((Math.PI * 0.5) / 48.5)) * 0.9);
});

test('constant schedule with warmup', async () => {
  const s = await constantPlugin.create({ warmup_steps: 4 }, {} as never);
  assert.deepEqual([0, 1, 3, 4, 99].map((i) => s.lr(i, 1, 100)), [0.25, 0.5, 1, 1, 1]);
});
