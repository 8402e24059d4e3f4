// recipes/finetune-222m.yaml, offline: it validates without the network; its memory estimate at the
// full size fits the wasm heap (batch 8, checkpointing, host AdamW state); and it runs end to end
// through the same loading code as the Hub one — `model.from: lusxvr/nanoVLM-222M` and the cosmo2
// tokenizer served by the local fake Hub (test/hub/fake-hub.ts) — on a user's folder dataset, then
// publishes a plain nanoVLM checkpoint. The served checkpoint is written by
// core/model/random-checkpoint.ts (what scripts/random-checkpoint.ts writes at full size) with the
// real 49,152-token vocabulary but narrow layers: the full-size one is ~890 MB, too much for the suite.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { DATA, needsShared, REPO_ROOT } from '../../helpers/shared.ts';
import { useTestBackend } from '../../helpers/backend.ts';
import { startFakeHub, type FakeHub } from '../../helpers/fake-hub.ts';
import { cli } from '../../../core/cli.ts';
import builtins from '../../../plugins/index.ts';
import { Registry } from '../../../core/registry.ts';
import { resolveRecipe } from '../../../core/recipe/index.ts';
import { VLM_CONFIG_DEFAULTS } from '../../../core/model/config.ts';
import { estimateTrainingMemory, WASM_HEAP_LIMIT, type ShapeConfig } from '../../../core/train/memory.ts';
import { writeRandomCheckpoint } from '../../../core/model/random-checkpoint.ts';
import { readSafetensorsHeader } from '../../../core/weights/safetensors.ts';

const RECIPE = join(REPO_ROOT, 'recipes', 'finetune-222m.yaml');
let hub: FakeHub;
let home: string;
const saved = { ...process.env };
before(async () => {
  hub = await startFakeHub();
  home = mkdtempSync(join(tmpdir(), 'vlm-finetune-'));
  Object.assign(process.env, { HF_HOME: home, HF_ENDPOINT: hub.url });
  for (const k of ['HF_TOKEN', 'HF_HUB_OFFLINE', 'HF_HUB_CACHE']) delete process.env[k];
});
after(async () => {
  await hub.close();
  process.env = saved;
  rmSync(home, { recursive: true, force: true });
});

test('finetune-222m validates offline, and its full-size step fits the wasm heap', async () => {
  process.env.HF_HUB_OFFLINE = '1';
  try {
    const r = await resolveRecipe(RECIPE, { registry: new Registry(builtins) });
    assert.equal(r.data.model.from, 'lusxvr/nanoVLM-222M');
    assert.equal(r.data.data.train[0].use, 'folder');
    const t = r.data.train;
    const n = 222_081_600;
    const e = estimateTrainingMemory(VLM_CONFIG_DEFAULTS as unknown as ShapeConfig, {
      batchSize: t.batch_size,
      totalParams: n,
      trainableParams: n,
      largestParam: 49152 * 576,
      checkpoint: t.activation_checkpointing,
      clipping: !!t.max_grad_norm,
      optimizerState: r.data.optimizer.host_state ? { backend: 0, host: 8 * n } : { backend: 8 * n, host: 0 },
    });
    assert.equal(t.batch_size, 8);
    assert.ok(e.total < 0.9 * WASM_HEAP_LIMIT, `estimated ${e.total} bytes`);
  } finally {
    delete process.env.HF_HUB_OFFLINE;
  }
});

test('finetune-222m runs from the Hub ids (fake Hub) on a folder dataset and publishes a nanoVLM checkpoint', needsShared('data', 'tokenizers', 'smollm2'), async (t) => {
  const backend = await useTestBackend();
  const work = mkdtempSync(join(tmpdir(), 'vlm-finetune-run-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  // the checkpoint the Hub serves as lusxvr/nanoVLM-222M: nanoVLM v0.1's components, narrow, real vocabulary
  const ckpt = join(work, 'ckpt');
  const section = {
    vision: { use: 'siglip-vit', hidden_dim: 32, inter_dim: 64, patch_size: 16, image_size: 224, n_heads: 2, n_blocks: 1 },
    projector: { use: 'pixel-shuffle', factor: 2 },
    decoder: { use: 'llama', hidden_dim: 32, inter_dim: 64, n_heads: 2, n_kv_heads: 1, n_blocks: 1, vocab_size: 49152, max_length: 79 },
  };
  await writeRandomCheckpoint(ckpt, new Registry(builtins), { seed: 1, section });
  assert.deepEqual(readdirSync(ckpt).sort(), ['config.json', 'model.safetensors'], 'a plain nanoVLM folder');
  hub.addRepo('model', 'lusxvr/nanoVLM-222M', { 'config.json': readFileSync(join(ckpt, 'config.json'), 'utf8'), 'model.safetensors': new Uint8Array(readFileSync(join(ckpt, 'model.safetensors'))) });
  const tok = join(DATA, 'tokenizers', 'smollm2');
  hub.addRepo('model', 'HuggingFaceTB/cosmo2-tokenizer', { 'tokenizer.json': readFileSync(join(tok, 'tokenizer.json')), 'tokenizer_config.json': readFileSync(join(tok, 'tokenizer_config.json')) });
  // a user's folder: 4 images + data.jsonl
  const data = join(work, 'my-data');
  mkdirSync(data);
  const lines: string[] = [];
  for (let i = 0; i < 4; i++) {
    await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 60 * i, g: 100, b: 200 - 40 * i } } }).png().toFile(join(data, `${i}.png`));
    lines.push(JSON.stringify({ image: `${i}.png`, question: 'What colour is it?', answer: ['blue', 'violet', 'red', 'orange'][i] }));
  }
  writeFileSync(join(data, 'data.jsonl'), lines.join('\n') + '\n');
  let err = '';
  const code = await cli(
    ['run', RECIPE, `data.train[0].path=${data}`, 'train.batch_size=2', 'train.max_steps=2', `runtime.out_dir=${join(work, 'runs')}`, `runtime.backend=${backend}`],
    { builtins, stdout: { write: () => true }, stderr: { write: (s: string) => ((err += s), true) } },
  );
  assert.equal(code, 0, err);
  assert.ok(hub.requests.some((r) => r.path.includes('lusxvr/nanoVLM-222M')), 'the checkpoint came from the (fake) Hub');
  const [run] = readdirSync(join(work, 'runs'));
  const model = join(work, 'runs', run, 'model');
  assert.ok(existsSync(join(model, 'config.json')) && existsSync(join(model, 'model.safetensors')));
  const keys = [...readSafetensorsHeader(join(model, 'model.safetensors')).entries.keys()];
  assert.deepEqual(keys.sort(), [...readSafetensorsHeader(join(ckpt, 'model.safetensors')).entries.keys()].sort(), 'the same state-dict keys as the nanoVLM checkpoint it started from');
  const metrics = readFileSync(join(work, 'runs', run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.type === 'train');
  assert.equal(metrics.length, 2);
  assert.ok(metrics.every((m) => Number.isFinite(m.loss)));
});
