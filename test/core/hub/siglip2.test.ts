// SigLIP2 backbones (nanoVLM HEAD's default vision backbone is google/siglip2-base-patch16-512): a
// tiny backbone in that checkpoint's Hub layout (test/core/hub/fixtures/siglip2-tiny, made by
// make_siglip2.py: a full SiglipModel config with vision_config, the vision tower with its pooling
// head, the text tower, logit_scale/bias) loads with `from:` and gives the vision output of HEAD's
// own ViT.from_pretrained on the same files; a NaFlex SigLIP2 checkpoint, or another model type, is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { errors } from '../../../core/commands/compare.ts';
import { UserError } from '../../../core/errors.ts';
import { readSafetensors } from '../../../core/weights/safetensors.ts';
import { setup, silentLog } from '../../helpers/model.ts';

const SIGLIP2 = join(import.meta.dirname, 'fixtures', 'siglip2-tiny');
const tmp = mkdtempSync(join(tmpdir(), 'vlm-siglip2-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));
const ctx = { recipe: {}, recipeDir: tmp, yamlPath: 'model.vision', seed: 0, log: silentLog };

test("from: a SigLIP2 Hub-layout folder reproduces HEAD's ViT.from_pretrained (shapes from vision_config)", async () => {
  const registry = await setup();
  const exp = readSafetensors(join(SIGLIP2, 'expected.safetensors')).tensors;
  const vit = await registry.create('vision', { use: 'siglip-vit', from: SIGLIP2 }, ctx);
  assert.equal(vit.imageSize, 32);
  assert.equal(vit.hiddenDim, 32);
  assert.equal(vit.numTokens, 16);
  const images = tf.tensor4d(exp.get('images')!.data as Float32Array, exp.get('images')!.shape as [number, number, number, number]);
  const out = tf.tidy(() => vit.forward(images));
  assert.deepEqual(out.shape, exp.get('vit_out')!.shape);
  const e = errors(out.dataSync() as Float32Array, exp.get('vit_out')!.data as Float32Array);
  assert.ok(e.relL2 <= 1e-5 && e.maxAbs <= 1e-4, `vit_out ${JSON.stringify(e)}`);
  // the recorded vit_model_type is where the weights came from, as HEAD's config
  assert.equal((vit as unknown as { nanovlmConfig(): Record<string, unknown> }).nanovlmConfig().vit_model_type, SIGLIP2);
  tf.dispose([out, images]);
  vit.dispose();
  // describe() (vlm inspect, no build) reads the same shapes
  const d = registry.plugin('vision', 'siglip-vit')!.describe!({ from: SIGLIP2 }, {} as never);
  assert.equal(d.numTokens, 16);
  assert.equal(Object.values(d.params).reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0), 23840); // HEAD printed "Model has 23,840 parameters"
});

test('a NaFlex SigLIP2 checkpoint and a non-SigLIP config are refused with the file and what to use', async () => {
  const registry = await setup();
  for (const [type, re] of [
    ['siglip2', /model_type "siglip2" is a SigLIP2 NaFlex checkpoint/],
    ['clip', /model_type "clip" is not a SigLIP checkpoint/],
  ] as const) {
    const dir = join(tmp, type);
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(SIGLIP2, 'model.safetensors'), join(dir, 'model.safetensors'));
    const cfg = JSON.parse(readFileSync(join(SIGLIP2, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, model_type: type }));
    await assert.rejects(registry.create('vision', { use: 'siglip-vit', from: dir }, ctx), (e: UserError) => {
      assert.ok(e instanceof UserError);
      assert.match(e.message, re);
      assert.equal(e.where.file, join(dir, 'config.json'));
      return true;
    });
  }
});
