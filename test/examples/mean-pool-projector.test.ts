// The plugin-author API used from outside the tree, the way a user does it: the example package
// examples/mean-pool-projector (its own package.json, `nanovlm-ts` as a file: dependency, a
// projector plugin importing only `nanovlm-ts/plugin-api`) is copied to a temporary folder,
// installed with npm (offline: the dependency is a link, nothing is downloaded), and its recipe is
// inspected and run with the `vlm` that npm installed into node_modules/.bin.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../helpers/shared.ts';

const EXAMPLE = join(REPO_ROOT, 'examples', 'mean-pool-projector');

test('the example plugin imports nothing of nanovlm-ts but its public API', () => {
  const src = readFileSync(join(EXAMPLE, 'index.ts'), 'utf8');
  const specs = [...src.matchAll(/from '([^']+)'/g)].map((m) => m[1]);
  assert.deepEqual([...new Set(specs)], ['nanovlm-ts/plugin-api']);
});

test('the example plugin package installs offline and its recipe runs with the installed vlm', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vlm-plugin-package-'));
  cpSync(EXAMPLE, dir, { recursive: true, filter: (p) => !p.includes('node_modules') && !p.includes(`${'/'}runs`) });
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  pkg.dependencies['nanovlm-ts'] = `file:${REPO_ROOT}`; // the copy lives elsewhere
  writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
  const npm = spawnSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: dir, encoding: 'utf8', timeout: 300_000 });
  assert.equal(npm.status, 0, `npm install failed:\n${npm.stdout}\n${npm.stderr}`);
  const vlm = join(dir, 'node_modules', '.bin', 'vlm');
  assert.ok(existsSync(vlm), 'npm installed the vlm command');
  const env = { ...process.env, CI: 'true' };
  const run = (...args: string[]) => spawnSync(vlm, args, { cwd: dir, encoding: 'utf8', env, timeout: 600_000 });

  const inspect = run('inspect', 'recipe.yaml');
  assert.equal(inspect.status, 0, inspect.stderr);
  assert.match(inspect.stdout, /model\.projector\s+projector\/mean-pool\s+\(.*index\.ts\)/);

  const out = join(dir, 'out');
  const r = run('run', 'recipe.yaml', `runtime.out_dir=${out}`, 'runtime.backend=wasm', 'train.max_steps=2', 'train.batch_size=4', 'data.train[0].count=16', 'data.val[0].count=4', 'data.eval[0].count=4', 'publish.publishers=[]');
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  const [runDir] = readdirSync(out);
  const steps = readFileSync(join(out, runDir, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"type":"train"'));
  assert.equal(steps.length, 2);
  assert.ok(existsSync(join(out, runDir, 'checkpoints')), 'a checkpoint was written');
});
