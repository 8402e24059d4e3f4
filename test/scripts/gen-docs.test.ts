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
  const missing = md.split('\n').filter((l) => l.startsWith('| `') && /\|\s*\|$/.test(l));
  assert.deepEqual(missing, []);
});

test('the README recipe example is 10 lines and validates', async () => {
  const { cli } = await import('../../core/cli.ts');
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const yaml = /```yaml\n([\s\S]*?)```/.exec(readme)![1];
  assert.equal(yaml.trimEnd().split('\n').length, 10);
  const file = join(mkdtempSync(join(tmpdir(), 'vlm-readme-')), 'my.yaml');
  writeFileSync(file, yaml);
  let err = '';
  const code = await cli(['validate', file], { builtins, stdout: { write: () => true }, stderr: { write: (s: string) => (err += s) } });
  assert.equal(code, 0, err);
});
