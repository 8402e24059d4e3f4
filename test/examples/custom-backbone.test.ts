// A user plugin end to end: recipes/examples/custom-backbone.yaml swaps the vision backbone for
// examples/custom-backbone/conv-encoder.ts (loaded from the recipe's `plugins:` list) and runs
// load -> train -> eval -> publish with nothing under core/ knowing about it.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cli } from '../../core/cli.ts';
import { readSafetensorsHeader } from '../../core/weights/safetensors.ts';
import builtins from '../../plugins/index.ts';
import { REPO_ROOT } from '../helpers/shared.ts';

process.env.CI = 'true';

test('the custom-backbone recipe runs end to end with the conv encoder', async () => {
  const out = mkdtempSync(join(tmpdir(), 'vlm-custom-'));
  let err = '';
  const code = await cli(
    [
      'run',
      join(REPO_ROOT, 'recipes/examples/custom-backbone.yaml'),
      `runtime.out_dir=${out}`,
      'runtime.backend=wasm',
      'train.max_steps=3',
      'train.batch_size=4',
      'data.train[0].count=32',
      'data.val[0].count=8',
      'data.eval[0].count=8',
      'model.vision.channels=[8, 16]',
      'model.vision.hidden_dim=16',
    ],
    { builtins, stdout: { write: () => true }, stderr: { write: (s: string) => (err += s) } },
  );
  assert.equal(code, 0, err);
  const [name] = readdirSync(out);
  const runDir = join(out, name);
  const steps = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((m) => typeof m.loss === 'number' && typeof m.step === 'number');
  assert.equal(steps.length, 3, 'three train steps logged');
  assert.ok(steps.every((m) => Number.isFinite(m.loss)));
  assert.ok(existsSync(join(runDir, 'eval', 'results.json')));
  const names = [...readSafetensorsHeader(join(runDir, 'model', 'model.safetensors')).entries.keys()];
  assert.ok(names.includes('vision_encoder.blocks.0.conv.weight'), names.join(', '));
  assert.ok(names.includes('vision_encoder.blocks.1.conv.weight'));
  const sidecar = JSON.parse(readFileSync(join(runDir, 'model', 'nanovlm-ts.json'), 'utf8'));
  assert.equal(sidecar.model.vision.use, 'conv-encoder');
  assert.match(err, /backend: wasm/);
});
