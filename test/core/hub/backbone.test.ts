// `from:` a Hub repo id, against the fake Hub on 127.0.0.1 (test/helpers/fake-hub.ts): SigLIP and Llama
// backbones download into the cache and reproduce the fixture's vit_out / lm_hidden; a nanoVLM
// checkpoint repo loads and reproduces the logits; offline mode then works from the cache.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FIXTURES, needsShared } from '../../helpers/shared.ts';
import { pointAtFakeHub, startFakeHub, type FakeHub } from '../../helpers/fake-hub.ts';
import { errors } from '../../../core/commands/compare.ts';
import { resolveSource } from '../../../core/hub/index.ts';
import { loadCheckpoint } from '../../../core/weights/model-folder.ts';
import { readSafetensors } from '../../../core/weights/safetensors.ts';
import { loadInputs, setup, silentLog } from '../../helpers/model.ts';

const TINY = join(FIXTURES, 'tiny');
const HF = join(TINY, 'hf-backbones');
const shared = needsShared('fixtures', 'nanovlm', 'tiny', 'hf-backbones');
let hub: FakeHub;
let home: string;
const savedEnv = { ...process.env };

before(async () => {
  hub = await startFakeHub();
  home = pointAtFakeHub(hub, 'vlm-model-hub-');
});
after(async () => {
  await hub.close();
  process.env = savedEnv;
  rmSync(home, { recursive: true, force: true });
});

const files = (dir: string) => ({
  'config.json': readFileSync(join(dir, 'config.json'), 'utf8'),
  'model.safetensors': new Uint8Array(readFileSync(join(dir, 'model.safetensors'))),
});

test('siglip-vit and llama `from: owner/name` download, load and match the fixture', shared, async () => {
  const registry = await setup();
  hub.addRepo('model', 'tiny-org/siglip-tiny', { ...files(join(HF, 'siglip')), 'README.md': 'x' });
  hub.addRepo('model', 'tiny-org/llama-tiny', files(join(HF, 'llama')));
  const expected = readSafetensors(join(HF, 'expected.safetensors')).tensors;
  const ctx = { recipe: {}, recipeDir: tmpdir(), yamlPath: 'model.vision', seed: 0, log: silentLog };

  const check = async (offline: boolean) => {
    if (offline) process.env.HF_HUB_OFFLINE = '1';
    try {
      const vit = await registry.create('vision', { use: 'siglip-vit', from: 'tiny-org/siglip-tiny' }, ctx);
      const x = loadInputs(join(TINY, 'inputs.safetensors'));
      const out = tf.tidy(() => vit.forward(x.images));
      const e = errors((await out.data()) as Float32Array, expected.get('vit_out')!.data as Float32Array);
      assert.ok(e.relL2 <= 1e-5 && e.maxAbs <= 1e-4, `vit_out ${JSON.stringify(e)}`);
      tf.dispose([out, ...Object.values(x)]);
      vit.dispose();

      const dec = await registry.create('decoder', { use: 'llama', from: 'tiny-org/llama-tiny', vocab_size: 300 }, { ...ctx, yamlPath: 'model.decoder' });
      const ids = expected.get('hf_input_ids')!;
      const idsT = tf.tensor(Int32Array.from(ids.data as BigInt64Array, Number), ids.shape as number[], 'int32') as unknown as tf.Tensor2D;
      const h = tf.tidy(() => dec.forward(dec.embed(idsT)));
      const eh = errors((await h.data()) as Float32Array, expected.get('lm_hidden')!.data as Float32Array);
      assert.ok(eh.relL2 <= 1e-5 && eh.maxAbs <= 1e-4, `lm_hidden ${JSON.stringify(eh)}`);
      tf.dispose([h, idsT]);
      dec.dispose();
    } finally {
      delete process.env.HF_HUB_OFFLINE;
    }
  };
  await check(false);
  const downloads = hub.requests.filter((r) => r.path.includes('/resolve/')).length;
  assert.ok(downloads >= 4, 'config.json and model.safetensors of both repos were downloaded');
  assert.ok(!hub.requests.some((r) => r.path.includes('README.md')), 'only the files the loader needs');
  await check(true); // from the cache, no network
  assert.equal(hub.requests.filter((r) => r.path.includes('/resolve/')).length, downloads);
});

test('a nanoVLM checkpoint repo on the Hub loads and reproduces the logits', needsShared('fixtures', 'nanovlm', 'tiny'), async () => {
  const registry = await setup();
  hub.addRepo('model', 'someone/nanoVLM-tiny', files(TINY));
  const folder = await resolveSource('someone/nanoVLM-tiny', { repoType: 'model', files: ['config.json', 'model.safetensors'] });
  const model = await loadCheckpoint(folder, registry, { log: silentLog });
  const x = loadInputs(join(TINY, 'inputs.safetensors'));
  const logits = model.forward(x.inputIds, x.images, x.attentionMask);
  const exp = readSafetensors(join(TINY, 'expected.safetensors')).tensors.get('logits')!;
  const mask = x.attentionMask.dataSync();
  const V = logits.shape[2];
  const e = errors((await logits.data()) as Float32Array, exp.data as Float32Array, (i) => mask[Math.floor(i / V)] !== 0); // valid text positions
  assert.ok(e.relL2 <= 1e-5 && e.maxAbs <= 1e-4, JSON.stringify(e));
  tf.dispose([logits, ...Object.values(x)]);
  model.dispose();
});
