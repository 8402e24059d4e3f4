// docs/recipes.md is generated from the schemas (npm run docs): fail when it is stale.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import builtins from '../../plugins/index.ts';
import { RECIPES_MD, renderRecipesMd } from '../../scripts/gen-docs.ts';

test('docs/recipes.md is up to date (run `npm run docs`)', () => {
  const want = renderRecipesMd(builtins);
  const have = readFileSync(RECIPES_MD, 'utf8');
  assert.ok(have === want, 'docs/recipes.md is stale: run `npm run docs` and commit it');
});

test('every recipe-schema property and every built-in plugin option has a description', () => {
  const md = renderRecipesMd(builtins);
  const missing = md.split('\n').filter((l) => l.startsWith('| `') && / \| $/.test(l));
  assert.deepEqual(missing, []);
});
