// `vlm validate` / `vlm inspect` --help say what is checked and the exit codes; `vlm validate --data`
// opens the datasets and knows a small folder dataset cannot fill one batch (issue 20, items 10, 15).
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
