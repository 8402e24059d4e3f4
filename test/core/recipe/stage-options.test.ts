// A stage owns its options: the recipe's section named after a stage (`train:`, `eval:`, ...) is
// checked against that stage plugin's options schema, by the same path as every plugin entry. A
// user's replacement train stage (test/core/recipe/stage-options/stages.ts) declares options the
// built-in one does not have; a recipe using them validates, a violation is reported with file,
// line, column and YAML path, and the stage is created with its section's options.
import assert from 'node:assert/strict';
import { dirname, join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { resolveRecipe, recipeToYaml } from '../../../core/recipe/index.ts';
import { stageEntry } from '../../../core/recipe/schema.ts';
import { Registry } from '../../../core/registry.ts';
import { fixturePlugins, validateWithFixtures } from './fixture-plugins.ts';
import { created } from './stage-options/stages.ts';

const DIR = join(dirname(fileURLToPath(import.meta.url)), 'stage-options');
const rel = (f: string) => relative(process.cwd(), join(DIR, f));

const validate = (file: string, ...args: string[]) => validateWithFixtures(join(DIR, file), ...args);

test("a replacement stage's own options validate; defaults are filled in; the stage gets them", async () => {
  const r = await validate('ok.yaml');
  assert.equal(r.code, 0, r.err);
  const registry = new Registry(fixturePlugins);
  const recipe = await resolveRecipe(join(DIR, 'ok.yaml'), { registry, overrides: ['train.steps=7'] });
  assert.deepEqual(recipe.data.train, { steps: 7, schedule_note: 'none' }); // the override typed by the stage's schema
  assert.deepEqual(recipe.data.report, { format: 'html' });
  // the resolved recipe lists the stage sections before `stages`, in their order
  assert.match(recipeToYaml(recipe), /\ntrain:\n {2}steps: 7\n {2}schedule_note: none\nreport:\n {2}format: html\nstages:/);
  created.length = 0;
  for (const name of ['train', 'report']) {
    await registry.create('stage', stageEntry(recipe.data, name), { recipe: recipe.data, recipeDir: DIR, yamlPath: 'stages', seed: 0, log: console as never });
  }
  assert.deepEqual(created, [
    { stage: 'train', steps: 7, schedule_note: 'none' },
    { stage: 'report', format: 'html' },
  ]);
});

test("a violation of a stage's options: file, line, column and YAML path, every problem at once", async () => {
  const r = await validate('bad.yaml');
  assert.equal(r.code, 1);
  const f = rel('bad.yaml');
  assert.deepEqual(r.err.trimEnd().split('\n'), [
    '3 problems:',
    `error: ${f}:4:10 train.steps: must be >= 1, got number 0 (plugin my-train)`,
    `error: ${f}:5:3 train.batch_size: unknown option "batch_size"; known options: steps, schedule_note (plugin my-train)`,
    `error: ${f}:7:11 report.format: must be one of "md", "html", got string "pdf" (did you mean "md"?) (plugin report)`,
  ]);
  assert.doesNotMatch(r.err, /at .*\.ts:\d+/); // no stack trace
});

test('a misspelt stage section: did you mean the stage', async () => {
  const r = await validate('ok.yaml', 'reprot.format=md');
  assert.equal(r.code, 1);
  assert.match(r.err, /override reprot\.format=md: reprot: unknown key "reprot" \(did you mean "report"\?\)/);
});
