// The evaluators run once on the final weights (issue 20, item 12): the train stage's last
// evaluation is reported by the eval stage instead of being computed twice; and the default recipe
// evaluates during training (a validation-loss series, not a single dot).
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { main as runMain } from '../../../core/commands/run.ts';
import { definePlugin } from '../../../core/plugin.ts';
import { resolveRecipe } from '../../../core/recipe/index.ts';
import { Registry } from '../../../core/registry.ts';
import builtins from '../../../plugins/index.ts';
import { commandEnv } from '../../helpers/tiny-run.ts';
import { smallRecipe, tmpOut, writeRecipe } from '../../helpers/run.ts';

const calls: number[] = [];
const counting = definePlugin({
  kind: 'evaluator',
  name: 'counting',
  description: 'counts its evaluations',
  options: { type: 'object', additionalProperties: false, properties: { data: { type: 'string', enum: ['val', 'eval'], default: 'eval' } } } as const,
  create: (o) => ({
    name: 'counting',
    data: o.data,
    async evaluate(_ctx: unknown, ds: { name: string }) {
      calls.push(1);
      return { evaluator: 'counting', dataset: ds.name, metrics: { n: calls.length } };
    },
  }),
});

// an evaluator that measures the validation loss (Evaluator.measuresValLoss, as the built-in
// val-loss declares): the train stage's evaluation skips it, under any name
const lossCalls: number[] = [];
const measuringLoss = definePlugin({
  kind: 'evaluator',
  name: 'my-loss',
  description: 'declares that it measures the validation loss',
  options: { type: 'object', additionalProperties: false, properties: {} } as const,
  create: () => ({
    name: 'my-loss',
    data: 'val' as const,
    measuresValLoss: true,
    async evaluate(_ctx: unknown, ds: { name: string }) {
      lossCalls.push(1);
      return { evaluator: 'my-loss', dataset: ds.name, metrics: { loss: 1 } };
    },
  }),
});

const out = tmpOut();
after(() => rmSync(out, { recursive: true, force: true }));

let runs = 0;
async function run(train: Record<string, unknown>, evaluators: { use: string }[] = [{ use: 'counting' }]) {
  calls.length = 0;
  lossCalls.length = 0;
  runs += 1; // a name per run: two runs within one second would otherwise get the same run directory
  const recipe = writeRecipe(
    smallRecipe(out, { max_steps: 2, checkpoint_every: null, ...train }, {
      name: `final-eval-${runs}`,
      stages: ['load', 'train', 'eval'],
      eval: { evaluators },
      data: {
        train: [{ use: 'synthetic-shapes', split: 'train', count: 16, format: 'open' }],
        val: [{ use: 'synthetic-shapes', split: 'val', count: 4, format: 'open' }],
        eval: [{ use: 'synthetic-shapes', split: 'test', count: 4, format: 'multiple-choice' }],
      },
    }),
  );
  const c = commandEnv([...builtins, counting, measuringLoss]);
  const code = await runMain([recipe], c.env);
  assert.equal(code, 0, c.err());
  const runDir = c.err().match(/^done: (.+)$/m)![1];
  return { runDir, err: c.err() };
}

test('the final weights are evaluated once: the eval stage reports the train stage\'s last evaluation', async () => {
  const { runDir, err } = await run({ eval_every: null });
  assert.equal(calls.length, 1);
  assert.match(err, /not evaluating twice/);
  const { results } = JSON.parse(readFileSync(join(runDir, 'eval', 'results.json'), 'utf8'));
  assert.deepEqual(results.map((r: { evaluator: string; dataset: string }) => `${r.evaluator}/${r.dataset}`), ['counting/shapes-test']);
  // evaluating every step: steps 1 and 2, nothing more
  await run({ eval_every: 1 });
  assert.equal(calls.length, 2);
});

test('an evaluator declaring measuresValLoss is left to the eval stage (the train stage computes val_loss itself)', async () => {
  const { runDir, err } = await run({ eval_every: null }, [{ use: 'counting' }, { use: 'my-loss' }]);
  // training evaluated `counting` once and skipped my-loss; its evaluation was then incomplete, so the
  // eval stage evaluated both
  assert.equal(lossCalls.length, 1);
  assert.equal(calls.length, 2);
  assert.doesNotMatch(err, /not evaluating twice/);
  const { results } = JSON.parse(readFileSync(join(runDir, 'eval', 'results.json'), 'utf8'));
  assert.deepEqual(results.map((r: { evaluator: string; dataset: string }) => `${r.evaluator}/${r.dataset}`), ['counting/shapes-test', 'my-loss/shapes-val']);
});

test('the default recipe evaluates during training (eval_every below max_steps)', async () => {
  const r = await resolveRecipe(resolve('recipes/shapes-tiny.yaml'), { registry: new Registry(builtins) });
  const { eval_every, max_steps } = r.data.train;
  assert.ok(typeof eval_every === 'number' && eval_every < max_steps && max_steps / eval_every >= 3, `eval_every ${eval_every}, max_steps ${max_steps}`);
});
