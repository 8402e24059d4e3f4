// Fault injection, Hub and security, through the real CLI:
//   - HF_TOKEN never appears in anything a FAILED command produces, even with --debug (stack traces
//     and error causes printed) and a server that echoes the Authorization header back in its
//     error bodies (the fake Hub of test/helpers/fake-hub.ts on 127.0.0.1): stdout, stderr, and every file in the
//     workspace (run directory, run.log, model card, the HF cache). test/core/hub/ checks the successful
//     publish and load paths; these are the error paths.
//   - a model folder that contains plugin code is never executed by `vlm generate --model` or by
//     `model.from:`; a plugin module runs only when a recipe lists it under `plugins:`.
import assert from 'node:assert/strict';
import { cpSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { startFakeHub, type FakeHub } from '../../helpers/fake-hub.ts';
import { assertUnchanged, assertUserError, hasStack, png, runDirIn, snapshot, tinyRecipe, vlm, workspace, type CliResult } from '../../helpers/cli-faults.ts';

const TOKEN = 'hf_FaultSuiteSecret0123456789abcdefXYZ';

function allFiles(d: string): string[] {
  if (!existsSync(d)) return [];
  return readdirSync(d).flatMap((n) => {
    const p = join(d, n);
    return statSync(p).isDirectory() ? allFiles(p) : [p];
  });
}

/** the token (or any hf_ token-shaped string) in the output or in any file below `dir` */
function leaks(r: CliResult, dir: string): string[] {
  const found: string[] = [];
  const check = (what: string, text: string) => {
    if (text.includes(TOKEN) || text.includes(TOKEN.slice(3)) || /hf_[A-Za-z0-9]{30,}/.test(text)) found.push(what);
  };
  check('stdout', r.stdout);
  check('stderr', r.stderr);
  for (const f of allFiles(dir)) check(f, readFileSync(f).toString('latin1'));
  return found;
}

describe('HF_TOKEN never leaks from a failed command, even with --debug', () => {
  let hub: FakeHub;
  let cwd: string;
  const env = () => ({ HF_TOKEN: TOKEN, HF_ENDPOINT: hub.url, HF_HUB_OFFLINE: undefined });

  before(async () => {
    hub = await startFakeHub();
    hub.faults.echoToken = true; // error bodies repeat "Bearer <token>"
    cwd = workspace();
    writeFileSync(join(cwd, 'photo.png'), png(32, 32));
  });
  after(() => hub.close());

  it('vlm run with a hub publisher the Hub rejects: exit 1, the local model folder complete, the token nowhere', async () => {
    const recipe = tinyRecipe({ name: 'leak-publish', publish: { repo_id: 'alice/faults-model', publishers: [{ use: 'local' }, { use: 'hub' }] } });
    writeFileSync(join(cwd, 'publish.yaml'), stringify(recipe));
    const r = await vlm(['run', 'publish.yaml', '--debug'], { cwd, env: env() });
    assert.equal(r.code, 1, r.all);
    assert.match(r.stderr, /error: .*token/i, 'the error is about the token');
    assert.match(r.stderr, /you sent: Bearer \*\*\*/, 'the server echoed the token (the case is exercised) and it shows redacted');
    const runDir = join(cwd, 'runs', readdirSync(join(cwd, 'runs')).find((d) => d.startsWith('leak-publish'))!);
    assert.ok(existsSync(join(runDir, 'model', 'model.safetensors')) && existsSync(join(runDir, 'model', 'README.md')), 'the finished local publish is kept');
    assert.ok(existsSync(join(runDir, 'checkpoints', 'latest')), 'the checkpoints are kept');
    assert.deepEqual(leaks(r, cwd), []);
  });

  it('model.from a repo the Hub refuses: exit 1, the token nowhere', async () => {
    const recipe = tinyRecipe({ name: 'leak-from', model: { ...(tinyRecipe().model as object), from: 'alice/private-base' } });
    writeFileSync(join(cwd, 'from.yaml'), stringify(recipe));
    const r = await vlm(['run', 'from.yaml', '--debug'], { cwd, env: env() });
    assert.equal(r.code, 1, r.all);
    assert.match(r.stderr, /alice\/private-base/, 'the repo is named');
    assert.match(r.stderr, /error: from\.yaml:\d+:\d+ model\.from: .*did not accept the token from \$HF_TOKEN/, 'the recipe position and the cause');
    assert.match(r.stderr, /-> the token is invalid, expired or revoked: create a new one/, 'the Hub hint (what to do about the token) is kept');
    assert.deepEqual(leaks(r, cwd), []);
  });

  it('vlm generate --model <repo id> refused, and an unreachable endpoint: the token nowhere', async () => {
    const r1 = await vlm(['generate', '--model', 'alice/private-base', '--image', 'photo.png', '--debug'], { cwd, env: env() });
    assert.equal(r1.code, 1, r1.all);
    assert.deepEqual(leaks(r1, cwd), []);
    const r2 = await vlm(['generate', '--model', 'alice/private-base', '--image', 'photo.png'], { cwd, env: { ...env(), HF_ENDPOINT: 'http://127.0.0.1:9' } });
    assertUserError(r2, /cannot reach http:\/\/127\.0\.0\.1:9/);
    assert.deepEqual(leaks(r2, cwd), []);
  });
});

describe('plugin code inside a model folder is not executed unless a recipe lists it', () => {
  let cwd: string;
  let model: string;
  const marker = () => join(cwd, 'EXECUTED');
  const evil = (tag: string) => `import { appendFileSync } from 'node:fs';\nappendFileSync(${JSON.stringify(join('MARKER_DIR', 'EXECUTED'))}.replace('MARKER_DIR', process.cwd()), ${JSON.stringify(tag + '\n')});\nexport default [];\n`;

  before(async () => {
    cwd = workspace();
    writeFileSync(join(cwd, 'package.json'), '{"type": "module"}\n'); // so a listed .ts module can load
    writeFileSync(join(cwd, 'photo.png'), png(32, 32));
    writeFileSync(join(cwd, 'r.yaml'), stringify(tinyRecipe({ train: { max_steps: 1 } })));
    const r = await vlm(['run', 'r.yaml'], { cwd });
    assert.equal(r.code, 0, r.all);
    // a downloaded "model" that carries code: plugin files, and a sidecar naming a plugin they define
    model = join(cwd, 'downloaded-model');
    cpSync(join(runDirIn(cwd)!, 'model'), model, { recursive: true });
    for (const f of ['evil.ts', 'index.ts', 'index.js', 'plugin.mjs']) writeFileSync(join(model, f), evil(f));
    const side = JSON.parse(readFileSync(join(model, 'nanovlm-ts.json'), 'utf8'));
    side.plugins = ['./evil.ts'];
    side.model.plugins = ['./evil.ts'];
    side.model.vision.use = 'evil-vit';
    writeFileSync(join(model, 'nanovlm-ts.json'), JSON.stringify(side, null, 2));
  });

  it('vlm generate --model <folder with plugin files>: the unknown plugin is an error naming the folder; nothing executed', async () => {
    const before = snapshot(model);
    const r = await vlm(['generate', '--model', 'downloaded-model', '--image', 'photo.png'], { cwd });
    assertUserError(r, /downloaded-model model\.vision\.use: unknown vision plugin "evil-vit"/, /-> vision plugins: siglip-vit/);
    assert.ok(!existsSync(marker()), 'plugin code from the model folder ran');
    assertUnchanged(before, snapshot(model));
  });

  it('model.from: <folder with plugin files>: refused the same way; nothing executed', async () => {
    writeFileSync(join(cwd, 'from.yaml'), stringify(tinyRecipe({ name: 'from-evil', model: { from: 'downloaded-model', tokenizer: { use: 'bytes' }, image_processor: { use: 'resize' } } })));
    const r = await vlm(['run', 'from.yaml'], { cwd });
    assertUserError(r, /unknown vision plugin "evil-vit"/);
    assert.ok(!hasStack(r.all));
    assert.ok(!existsSync(marker()), 'plugin code from the model folder ran');
  });

  it('listed under plugins: in the recipe, the same module is loaded (the user chose to run it)', async () => {
    writeFileSync(join(cwd, 'listed.yaml'), 'plugins: [ ./downloaded-model/evil.ts ]\n' + stringify(tinyRecipe({ name: 'listed' })));
    const r = await vlm(['validate', 'listed.yaml'], { cwd });
    assert.ok(existsSync(marker()), `a listed module is imported:\n${r.all}`);
    assert.equal(readFileSync(marker(), 'utf8'), 'evil.ts\n', 'only the listed file ran');
    assertUserError(r, /plugins\[0\]: plugin module \.\/downloaded-model\/evil\.ts exports no plugin/);
  });
});
