// `vlm inspect`: parameter counts from the plugins' describe() alone (no weights), equal to
// nanoVLM's for its default configuration, and every shipped recipe validates.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { cli } from '../../../core/cli.ts';
import { parameterReport } from '../../../core/commands/inspect.ts';
import { resolveRecipe } from '../../../core/recipe/index.ts';
import { Registry } from '../../../core/registry.ts';
import builtins from '../../../plugins/index.ts';
import { FIXTURES, needsShared, REPO_ROOT } from '../../helpers/shared.ts';

async function vlm(...argv: string[]) {
  let out = '';
  let err = '';
  const code = await cli(argv, { builtins, stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } });
  return { code, out, err };
}

test('default plugin options = nanoVLM v0.1: per-module counts equal the PyTorch ones', needsShared('fixtures/nanovlm/param_counts.json'), async () => {
  const ref = JSON.parse(readFileSync(join(FIXTURES, 'param_counts.json'), 'utf8'));
  const reg = new Registry(builtins);
  const r = await resolveRecipe(join(REPO_ROOT, 'test/core/commands/fixtures/nanovlm-defaults.yaml'), { registry: reg });
  const report = parameterReport(r.data, reg);
  assert.deepEqual(
    Object.fromEntries(report.modules.map((m) => [m.module, m.params])),
    ref.per_module,
  );
  assert.equal(report.total, ref.total_parameters);
  assert.equal(report.total, 222_081_600);
  assert.deepEqual(report.memory, { params: 4 * 222_081_600, grads: 4 * 222_081_600, adamw: 8 * 222_081_600, total: 16 * 222_081_600 });
  // optimizer.freeze: frozen parameters need no gradients and no AdamW state
  const frozen = await resolveRecipe(join(REPO_ROOT, 'test/core/commands/fixtures/nanovlm-defaults.yaml'), {
    registry: reg,
    overrides: ['optimizer={use: adamw, freeze: [vision_encoder, decoder]}'],
  });
  const f = parameterReport(frozen.data, reg);
  assert.equal(f.trainable, ref.per_module.MP);
  assert.equal(f.memory!.grads, 4 * ref.per_module.MP);
  assert.equal(f.memory!.total, 4 * 222_081_600 + 12 * ref.per_module.MP);
});

test('vlm inspect recipes/smol-222m.yaml: 222,081,600 parameters, offline', async () => {
  const r = await vlm('inspect', join(REPO_ROOT, 'recipes/smol-222m.yaml'));
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^ {2}total +222,081,600$/m);
  assert.match(r.out, /^ {2}model\.vision +vision\/siglip-vit +\(plugins\/vision\/siglip-vit\.ts\)$/m); // the file that defines it
  assert.match(r.out, /AdamW state/);
  const json = JSON.parse((await vlm('inspect', join(REPO_ROOT, 'recipes/smol-222m.yaml'), '--json')).out);
  assert.equal(json.parameters.total, 222_081_600);
});

test('a plugin without describe(): inspect says so instead of guessing', async () => {
  const reg = new Registry(builtins.map((p) => (p.kind === 'decoder' ? { ...p, describe: undefined } : p)));
  const r = await resolveRecipe(join(REPO_ROOT, 'test/core/commands/fixtures/nanovlm-defaults.yaml'), { registry: reg });
  const report = parameterReport(r.data, reg);
  assert.equal(report.total, null);
  assert.match(report.modules.find((m) => m.module === 'decoder')!.note!, /has no describe\(\)/);
});

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? yamlFiles(p) : p.endsWith('.yaml') ? [p] : [];
  });
}

test('every shipped recipe validates against the built-in plugins', async () => {
  const files = yamlFiles(join(REPO_ROOT, 'recipes'));
  assert.ok(files.length >= 2);
  const failures: string[] = [];
  for (const f of files) {
    const r = await vlm('validate', f);
    if (r.code !== 0) failures.push(r.err);
  }
  assert.deepEqual(failures, []);
});
