// The LoRA proof of issue 14 on a tiny model: LoRA-fine-tune a few steps, publish (the adapters
// merged into model.safetensors), load the published folder with PyTorch nanoVLM v0.1's own
// from_pretrained (bench/reference/nanovlm_222m.py --dump, v0.1's code unchanged), let PyTorch write
// its outputs for fixed inputs, and `vlm compare` ours on the same folder against them.
// A DEVELOPER CHECK, not a CI test: it needs python3 with torch (Debian: python3-torch) and a
// nanoVLM v0.1 checkout (git clone --branch v0.1 https://github.com/huggingface/nanoVLM
// /tmp/nanovlm-v0.1, or NANOVLM_V01=<folder>), neither of which CI installs; without them it skips
// with a message saying what is missing (in CI too). docs/training.md (LoRA) describes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compareFixture } from '../../../core/commands/compare.ts';
import { createRegistry } from '../../../core/registry.ts';
import { readSafetensors } from '../../../core/weights/safetensors.ts';
import { writeModelFolder } from '../../../plugins/publisher/local.ts';
import builtins from '../../../plugins/index.ts';
import { runTrain, smallRecipe, tmpOut, writeRecipe } from '../../helpers/run.ts';
import { REPO_ROOT } from '../../helpers/shared.ts';

const NANOVLM = process.env.NANOVLM_V01 ?? '/tmp/nanovlm-v0.1';
const PYTHON = process.env.NANOVLM_PYTHON ?? '/usr/bin/python3';

function missing(): string | null {
  if (!existsSync(join(NANOVLM, 'models', 'vision_language_model.py'))) return `no nanoVLM v0.1 checkout at ${NANOVLM} (git clone --branch v0.1 https://github.com/huggingface/nanoVLM ${NANOVLM}, or set NANOVLM_V01)`;
  const torch = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
  if (torch.status !== 0) return `${PYTHON} cannot import torch (Debian: apt-get install python3-torch; or set NANOVLM_PYTHON)`;
  return null;
}

const why = missing();
test('LoRA fine-tune -> publish merged -> PyTorch nanoVLM v0.1 loads the folder -> vlm compare passes (developer check)', { skip: why ? `developer check skipped: ${why}` : false }, async () => {
  const recipe = smallRecipe(tmpOut(), { max_steps: 4, checkpoint_every: null }, { stages: ['load', 'train'] });
  (recipe.model as Record<string, unknown>).adapters = [{ use: 'lora', r: 4, alpha: 8, targets: ['decoder.*.attn.q_proj', 'decoder.*.attn.v_proj', 'MP.proj', 'vision_encoder.*.mlp.fc1'] }];
  recipe.optimizer = { use: 'adamw', lr: 1e-2 };
  const run = await runTrain(writeRecipe(recipe));
  assert.equal(run.error, undefined, String(run.error));
  const model = run.ctx.model!;
  // the adapters trained (B moved off zero), so the merged weights differ from the base ones
  const bNorm = [...model.params].filter(([n]) => n.endsWith('lora_B.weight')).reduce((s, [, v]) => s + Array.from(v.dataSync()).reduce((a: number, x: number) => a + x * x, 0), 0);
  assert.ok(bNorm > 0, 'lora_B trained');
  const folder = await writeModelFolder(run.ctx, join(mkdtempSync(join(tmpdir(), 'lora-publish-')), 'model'), { adapter_files: true });
  model.dispose();
  const names = [...readSafetensors(join(folder, 'model.safetensors')).tensors.keys()];
  assert.ok(!names.some((n) => n.includes('lora')), 'a plain nanoVLM state dict');
  assert.ok(existsSync(join(folder, 'adapter_model.safetensors')));

  const out = mkdtempSync(join(tmpdir(), 'lora-pytorch-'));
  const py = spawnSync(PYTHON, [join(REPO_ROOT, 'bench/reference/nanovlm_222m.py'), '--nanovlm', NANOVLM, '--dump', folder, '--out', out], { encoding: 'utf8' });
  assert.equal(py.status, 0, py.stderr + py.stdout);
  const rows = await compareFixture({ model: folder, inputs: join(out, 'inputs.safetensors'), expected: join(out, 'expected.safetensors'), registry: createRegistry(builtins) });
  assert.deepEqual(rows.map((r) => r.name).sort(), ['decoder_hidden', 'logits', 'loss', 'mp_out', 'vision_out']);
  for (const r of rows) assert.ok(r.pass, `${r.name}: rel L2 ${r.relL2}, max abs ${r.maxAbs} (${r.note})`);
});
