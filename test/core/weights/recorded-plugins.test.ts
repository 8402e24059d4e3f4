// A model trained with a user's plugin stays usable (issue 20, item 4): the published folder records
// the plugin module (nanovlm-ts.json `plugins`, a path relative to the folder), loadModel imports
// it from there, `--plugins` loads it from wherever it is now, a missing one is a clear error, and
// the model card says that the model needs the plugin (and that PyTorch nanoVLM cannot load it).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { main as generateMain } from '../../../core/commands/generate.ts';
import { loadModel } from '../../../core/load-model.ts';
import { loadPluginFlags, Registry } from '../../../core/registry.ts';
import type { RunContext } from '../../../core/types.ts';
import { buildModel } from '../../../core/weights/model-folder.ts';
import builtins from '../../../plugins/index.ts';
import { writeModelFolder } from '../../../plugins/publisher/local.ts';
import { useTestBackend } from '../../helpers/backend.ts';
import { commandEnv } from '../../helpers/tiny-run.ts';

const CONV = resolve('examples/custom-backbone/conv-encoder.ts');
const SECTION = {
  vision: { use: 'conv-encoder', image_size: 32, channels: [8, 16], hidden_dim: 32, ln_eps: 1e-6 },
  projector: { use: 'pixel-shuffle', factor: 2 },
  decoder: { use: 'llama', hidden_dim: 32, inter_dim: 64, n_heads: 4, n_kv_heads: 2, n_blocks: 1, vocab_size: 257, max_length: 64 },
  tokenizer: { use: 'bytes' },
  image_processor: { use: 'resize' },
};
const quiet = { info() {}, warn() {}, debug() {} };
let root: string;
let modelDir: string;
let image: string;

before(async () => {
  await useTestBackend();
  root = mkdtempSync(join(tmpdir(), 'vlm-plugin-model-'));
  // the user's project: plugins/conv.ts (a plugin file outside core/ and plugins/)
  mkdirSync(join(root, 'project', 'plugins'), { recursive: true });
  writeFileSync(join(root, 'project', 'plugins', 'conv.ts'), `export { default } from ${JSON.stringify(CONV)};\n`);
  const registry = new Registry(builtins);
  await registry.loadModules([{ spec: 'plugins/conv.ts', baseDir: join(root, 'project'), where: {} }]);
  const base = { recipe: { model: SECTION }, recipeDir: join(root, 'project'), seed: 0, log: quiet };
  const model = await buildModel(SECTION as any, registry, base);
  const built = { vision: model.vision, projector: model.projector, decoder: model.decoder };
  const tokenizer = await registry.create('tokenizer', SECTION.tokenizer, { ...base, yamlPath: 'model.tokenizer', built });
  const runDir = join(root, 'project', 'runs', 'conv-run');
  mkdirSync(runDir, { recursive: true });
  const ctx: RunContext = {
    recipe: { name: 'conv', model: SECTION },
    recipePath: join(root, 'project', 'recipe.yaml'),
    recipeDir: join(root, 'project'),
    runDir,
    backend: tf.getBackend(),
    registry,
    log: quiet,
    signal: new AbortController().signal,
    seed: 0,
    model,
    tokenizer,
    datasets: { train: [], val: [], eval: [] },
    metrics() {},
    evalResults: [],
    artifacts: {},
    facts: { train_seconds: 0.1, stage_train_seconds: 0.14, best: { metric: 'val_loss', value: 1.5, step: 20 } },
    flags: {},
  };
  modelDir = await writeModelFolder(ctx, join(runDir, 'model'));
  model.dispose();
  image = join(root, 'red.png');
  await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 255, g: 0, b: 0 } } }).png().toFile(image);
});

after(() => rmSync(root, { recursive: true, force: true }));

test('the published folder records the plugin module relative to itself; loadModel imports it with only the built-ins registered', async () => {
  const side = JSON.parse(readFileSync(join(modelDir, 'nanovlm-ts.json'), 'utf8'));
  assert.deepEqual(side.plugins, [{ kind: 'vision', name: 'conv-encoder', module: '../../../plugins/conv.ts' }]);
  const loaded = await loadModel(modelDir, { registry: new Registry(builtins) });
  assert.equal(loaded.model.imageSize, 32);
  loaded.model.dispose();
});

test('the model card says the model needs the plugin, and that PyTorch nanoVLM cannot load it; numbers are readable', () => {
  const card = readFileSync(join(modelDir, 'README.md'), 'utf8');
  assert.match(card, /## Plugins this model needs/);
  assert.match(card, /\| vision \| `conv-encoder` \| `\.\.\/\.\.\/\.\.\/plugins\/conv\.ts` \|/);
  assert.match(card, /vlm generate --model <path\/to\/this\/folder> --plugins \.\.\/\.\.\/\.\.\/plugins\/conv\.ts --image/);
  assert.match(card, /PyTorch nanoVLM cannot load this model: its vision \(`conv-encoder`\) is not one of nanoVLM's modules/);
  assert.doesNotMatch(card, /from_pretrained/);
  // the TypeScript snippet shows where `registry` comes from
  assert.match(card, /const registry = createRegistry\(builtins\);/);
  // item 15: seconds, the best checkpoint, which duration is which
  assert.match(card, /\| Training loop time \(all runs of it, resumes included\) \| 0\.1 s \|/);
  assert.match(card, /\| Stage train \(wall clock, this process\) \| 0\.1 s \|/);
  assert.match(card, /\| Best checkpoint \| step 20: val_loss 1\.5000 \|/);
  assert.doesNotMatch(card, /0\.1000|\{"/);
});

test('a moved plugin module: a clear error naming it and --plugins; `vlm generate --plugins <file>` works', async () => {
  const moved = join(root, 'elsewhere.ts');
  renameSync(join(root, 'project', 'plugins', 'conv.ts'), moved);
  try {
    await assert.rejects(loadModel(modelDir, { registry: new Registry(builtins) }), (e: Error & { hint?: string }) => {
      assert.match(e.message, /this model needs the vision plugin "conv-encoder", which is not built in: its module \.\.\/\.\.\/\.\.\/plugins\/conv\.ts/);
      assert.match(e.hint ?? '', /--plugins <file\.ts \| package>/);
      return true;
    });
    const reg = new Registry(builtins);
    await loadPluginFlags(reg, [moved]);
    (await loadModel(modelDir, { registry: reg })).model.dispose();
    const c = commandEnv();
    const code = await generateMain(['--model', modelDir, '--image', image, '--plugins', moved, '--max-new-tokens', '2', '--backend', tf.getBackend()], c.env);
    assert.equal(code, 0, c.err());
    assert.match(c.out(), />> Generation 1: /);
  } finally {
    renameSync(moved, join(root, 'project', 'plugins', 'conv.ts'));
  }
});

test('a recorded module inside the model folder (what a download brings) is never run; --plugins runs it when the user chooses', async () => {
  const { cpSync, existsSync } = await import('node:fs');
  const copy = join(root, 'downloaded');
  cpSync(modelDir, copy, { recursive: true });
  const marker = join(root, 'ran.txt');
  writeFileSync(join(copy, 'conv.ts'), `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(marker)}, 'ran');\nexport { default } from ${JSON.stringify(CONV)};\n`);
  const side = JSON.parse(readFileSync(join(copy, 'nanovlm-ts.json'), 'utf8'));
  side.plugins = [{ kind: 'vision', name: 'conv-encoder', module: './conv.ts' }];
  writeFileSync(join(copy, 'nanovlm-ts.json'), JSON.stringify(side));
  await assert.rejects(loadModel(copy, { registry: new Registry(builtins) }), (e: Error & { hint?: string }) => {
    assert.match(e.message, /a file that came with the model: plugin code inside a model folder \(or the Hub cache\) is never run automatically/);
    assert.match(e.hint ?? '', /--plugins .*downloaded[/\\]conv\.ts/);
    return true;
  });
  assert.equal(existsSync(marker), false, 'code inside the model folder ran');
  const reg = new Registry(builtins);
  await loadPluginFlags(reg, [join(copy, 'conv.ts')]);
  (await loadModel(copy, { registry: reg })).model.dispose();
  assert.equal(existsSync(marker), true);
});

test('`vlm serve --plugins <file>` serves a model that needs a plugin the folder cannot run by itself', async () => {
  const { cpSync } = await import('node:fs');
  const { startServe } = await import('../../../core/commands/serve.ts');
  const copy = join(root, 'served');
  cpSync(modelDir, copy, { recursive: true });
  writeFileSync(join(copy, 'conv.ts'), `export { default } from ${JSON.stringify(CONV)};\n`);
  const side = JSON.parse(readFileSync(join(copy, 'nanovlm-ts.json'), 'utf8'));
  side.plugins = [{ kind: 'vision', name: 'conv-encoder', module: './conv.ts' }];
  writeFileSync(join(copy, 'nanovlm-ts.json'), JSON.stringify(side));
  // without the flag: the refusal that names --plugins
  await assert.rejects(startServe([copy, '--port', '0', '--backend', 'wasm'], commandEnv([...builtins]).env), /plugin code inside a model folder/);
  // with it: the server starts and lists the model
  const served = (await startServe([copy, '--port', '0', '--backend', 'wasm', '--plugins', join(copy, 'conv.ts')], commandEnv([...builtins]).env))!;
  try {
    const r = await fetch(new URL("/v1/models", served.url));
    assert.equal(r.status, 200);
    const body = (await r.json()) as { data: { id: string }[] };
    assert.equal(body.data.length, 1);
  } finally {
    await served.close();
  }
});
