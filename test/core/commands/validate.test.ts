// `vlm validate` / `vlm inspect` --help say what is checked and the exit codes; `vlm validate --data`
// opens the datasets and knows a small folder dataset cannot fill one batch (issue 20, items 10, 15);
// a LoRA target matching no linear layer is found by `vlm validate`, before the model is built.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { main as inspectMain } from '../../../core/commands/inspect.ts';
import { main as validateMain } from '../../../core/commands/validate.ts';
import { commandEnv, tinyRecipe, writeFolderDataset } from '../../helpers/tiny-run.ts';

const root = mkdtempSync(join(tmpdir(), 'vlm-validate-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('--help of validate and inspect: what is checked, and the exit codes', async () => {
  const v = commandEnv();
  assert.equal(await validateMain(['--help'], v.env), 0);
  for (const s of ['every plugin entry', 'the stage names', 'extends', 'Exit code 0', '1: a problem', '--data']) assert.ok(v.out().includes(s), s);
  const i = commandEnv();
  assert.equal(await inspectMain(['--help'], i.env), 0);
  for (const s of ['resolved recipe', 'plugin graph', 'memory estimate', 'Exit code 0', '1: the recipe has a problem']) assert.ok(i.out().includes(s), s);
  assert.ok(i.out().split('\n').length > 5);
});

test('validate --data: a folder dataset too small for one batch is reported before any run', async () => {
  await writeFolderDataset(join(root, 'data', 'small'));
  const recipe = join(root, 'r.yaml');
  writeFileSync(recipe, tinyRecipe(root).replace('data/not-there', 'data/small').replace('data/colours', 'data/small') + 'train: { batch_size: 16 }\nstages: [load, train]\n');
  const plain = commandEnv();
  assert.equal(await validateMain([recipe], plain.env), 0); // without --data, nothing is opened
  await assert.rejects(validateMain([recipe, '--data'], commandEnv().env), (e: Error & { hint?: string }) => {
    assert.match(e.message, /data\.train holds 4 samples \(small: 4\), fewer than one optimizer step takes \(train\.batch_size 16 x grad_accum 1 = 16\)/);
    assert.match(e.hint ?? '', /train\.batch_size=4/);
    return true;
  });
  const ok = commandEnv();
  assert.equal(await validateMain([recipe, '--data', 'train.batch_size=4'], ok.env), 0);
  assert.match(ok.out(), /datasets opened: train small; val -; eval small/);
});

test('validate: a LoRA target that matches no linear layer is reported at its file:line and YAML path, without building the model', async () => {
  const recipe = join(root, 'lora.yaml');
  const adapters = '  adapters: [ { use: lora, r: 2, targets: [q_proj, "decoder.*.attn.qproj"] } ]\n';
  writeFileSync(recipe, tinyRecipe(root).replace('data:\n', adapters + 'data:\n'));
  const line = tinyRecipe(root).replace('data:\n', adapters + 'data:\n').split('\n').findIndex((l) => l.startsWith('  adapters:')) + 1;
  await assert.rejects(validateMain([recipe], commandEnv().env), (e: Error & { errors?: { message: string; where: { file?: string; line?: number; yamlPath?: string }; hint?: string }[] }) => {
    const errors = e.errors ?? [e as never];
    assert.equal(errors.length, 1, e.message);
    const [err] = errors;
    assert.match(err.message, /lora target "decoder\.\*\.attn\.qproj" matches no linear layer of the model/);
    assert.equal(err.where.yamlPath, 'model.adapters[0].targets[1]');
    assert.equal(err.where.file, recipe);
    assert.equal(err.where.line, line);
    assert.match(err.hint ?? '', /decoder\.blocks\.0\.attn\.q_proj|vision_encoder\.blocks\.0/);
    return true;
  });
  const ok = commandEnv();
  assert.equal(await validateMain([recipe, 'model.adapters[0].targets[1]=decoder.*.attn.v_proj'], ok.env), 0, ok.err());
  assert.match(ok.out(), /ok/);
});
