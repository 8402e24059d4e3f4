// The publish stage as a new user meets it (issue 20, item 6): --dry-run does not warn about the
// upload it will not make; a `local.path` holding someone else's folder is refused when the run
// starts (with the entry's index in the YAML path), not after training; an absolute `local.path`
// is printed as itself in the run's summary.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, test } from 'node:test';
import { main as runMain } from '../../../core/commands/run.ts';
import { UserError } from '../../../core/errors.ts';
import builtins from '../../../plugins/index.ts';
import publishStage from '../../../plugins/stage/publish.ts';
import { commandEnv } from '../../helpers/tiny-run.ts';
import { smallRecipe, tmpOut, writeRecipe } from '../../helpers/run.ts';

const saved = { ...process.env };
afterEach(() => {
  process.env = { ...saved };
});
const root = mkdtempSync(join(tmpdir(), 'vlm-publish-'));
after(() => rmSync(root, { recursive: true, force: true }));

function create(publish: Record<string, unknown>, flags: Record<string, boolean> = {}): string[] {
  const warnings: string[] = [];
  const log = { info() {}, debug() {}, warn: (m: string) => warnings.push(m) };
  publishStage.create({} as never, { recipe: { name: 'x', publish }, recipeDir: root, log, flags } as never);
  return warnings;
}

test('--dry-run: no warning about HF_HUB_OFFLINE or a missing token (nothing is uploaded)', () => {
  delete process.env.HF_TOKEN;
  process.env.HF_HOME = '/nonexistent-hf-home';
  process.env.HF_HUB_OFFLINE = '1';
  const hub = { publishers: [{ use: 'hub', repo_id: 'alice/m' }] };
  assert.equal(create(hub).length, 2);
  assert.deepEqual(create(hub, { dryRun: true }), []);
  // the repo id is still checked in a dry run
  assert.throws(() => create({ publishers: [{ use: 'hub', repo_id: 'not a repo' }] }, { dryRun: true }), UserError);
});

test('a local path holding a folder nanovlm-ts did not write is refused at the start, with its index', () => {
  mkdirSync(join(root, 'mine'));
  writeFileSync(join(root, 'mine', 'notes.txt'), 'keep me');
  assert.throws(() => create({ publishers: [{ use: 'hub', repo_id: 'alice/m' }, { use: 'local', path: 'mine' }] }), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.match(e.message, /mine already exists and is not a model folder written by nanovlm-ts/);
    assert.equal(e.where.yamlPath, 'publish.publishers[1].path');
    return true;
  });
  assert.deepEqual(create({ publishers: [{ use: 'local', path: 'mine' }] }, { force: true }), []);
  assert.deepEqual(create({ publishers: [{ use: 'local', path: 'new-folder' }] }), []);
});

test('an absolute local.path is printed as itself in the summary', async () => {
  const out = tmpOut();
  const dest = join(root, 'abs-model');
  const recipe = writeRecipe(smallRecipe(out, {}, { stages: ['load', 'publish'], publish: { publishers: [{ use: 'local', path: dest }] } }));
  const c = commandEnv(builtins);
  assert.equal(await runMain([recipe], c.env), 0, c.err());
  assert.match(c.err(), new RegExp(`^  model: ${dest.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`, 'm'));
  rmSync(out, { recursive: true, force: true });
});
