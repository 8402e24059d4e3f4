// `vlm generate` defaults (issue 20, items 7 and 11): one greedy answer unless a sampling flag is
// given (--sample: nanoVLM v0.1's five sampled answers); a mistyped local --model path is reported
// as a missing folder at once (no Hub retries).
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { main as generateMain } from '../../../core/commands/generate.ts';
import { useTestBackend } from '../../helpers/backend.ts';
import { commandEnv, makeTinyRun, type TinyRun } from '../../helpers/tiny-run.ts';

let t: TinyRun;
let image: string;
const cwd = process.cwd();

before(async () => {
  await useTestBackend();
  t = await makeTinyRun();
  image = join(t.root, 'project', 'data', 'colours', '0.png');
});

after(() => {
  process.chdir(cwd);
  rmSync(t.root, { recursive: true, force: true });
});

async function generate(...flags: string[]): Promise<string> {
  const c = commandEnv();
  const code = await generateMain(['--model', t.runDir, '--image', image, '--max-new-tokens', '4', '--backend', tf.getBackend(), ...flags], c.env);
  assert.equal(code, 0, c.err());
  return c.out().split('Outputs:\n')[1];
}

test('the default is one greedy answer: the same as --greedy, whatever the seed', async () => {
  const byDefault = await generate();
  assert.equal(byDefault.trim().split('\n').length, 1);
  assert.match(byDefault, /^ {2}>> Generation 1: /);
  assert.equal(await generate('--greedy'), byDefault);
  assert.equal(await generate('--seed', '9'), byDefault);
});

test('--sample samples five answers as nanoVLM v0.1; --num sets how many; --greedy with --sample is refused', async () => {
  const sampled = await generate('--sample');
  assert.equal(sampled.trim().split('\n').length, 5);
  assert.equal(await generate('--sample'), sampled); // seeded
  assert.equal((await generate('--temperature', '2', '--num', '3')).trim().split('\n').length, 3);
  await assert.rejects(generate('--greedy', '--sample'), /cannot be combined/);
});

test('--model runs/nope: "no local folder", not a Hub request', async () => {
  process.chdir(t.root);
  try {
    // (a Hub request would end in "cannot reach the Hub" or an HTTP error instead)
    await assert.rejects(generateMain(['--model', 'runs/nope', '--image', image], commandEnv().env), (e: Error) => /^no local folder runs\/nope \(/.test(e.message));
  } finally {
    process.chdir(cwd);
  }
});
