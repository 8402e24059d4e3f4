// Publishing a model in nanoVLM HEAD's format (the HEAD fixture, test/core/model/fixtures/head-tiny):
// the local publisher's folder has HEAD's config.json (byte-identical to what HEAD's save_pretrained
// wrote), and its model card names the nanoVLM version that loads it (4e0c096, not v0.1); a v0.1
// model's card still says v0.1. With a nanoVLM HEAD checkout (NANOVLM_HEAD=<folder>) and python3,
// HEAD's own VLMConfig(**json) accepts the published config.json, and with torch its ViT,
// ModalityProjector and LanguageModel built from it load the published weights strictly.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { modelCard } from '../../../core/model-card.ts';
import { Registry } from '../../../core/registry.ts';
import type { RunContext } from '../../../core/types.ts';
import { loadCheckpoint } from '../../../core/weights/model-folder.ts';
import builtins from '../../../plugins/index.ts';
import { writeModelFolder } from '../../../plugins/publisher/local.ts';
import { setup, silentLog } from '../../helpers/model.ts';

const HEAD_FIXTURE = join(import.meta.dirname, '..', '..', 'core', 'model', 'fixtures', 'head-tiny');
let root: string;
let published: string;

before(async () => {
  await setup();
  root = mkdtempSync(join(tmpdir(), 'vlm-head-publish-'));
  const registry = new Registry(builtins);
  const model = await loadCheckpoint(HEAD_FIXTURE, registry, { log: silentLog });
  const runDir = join(root, 'runs', 'head');
  mkdirSync(runDir, { recursive: true });
  const ctx: RunContext = {
    recipe: { name: 'head-tiny', model: { from: HEAD_FIXTURE } },
    recipePath: join(root, 'recipe.yaml'),
    recipeDir: root,
    runDir,
    backend: tf.getBackend(),
    registry,
    log: silentLog,
    signal: new AbortController().signal,
    seed: 0,
    model,
    datasets: { train: [], val: [], eval: [] },
    metrics() {},
    evalResults: [],
    artifacts: {},
    facts: {},
    flags: {},
  };
  published = await writeModelFolder(ctx, join(runDir, 'model'));
  model.dispose();
});
after(() => rmSync(root, { recursive: true, force: true }));

test("the published folder has HEAD's config.json, and the card names nanoVLM 4e0c096 as the version that loads it", () => {
  assert.equal(readFileSync(join(published, 'config.json'), 'utf8').trim(), readFileSync(join(HEAD_FIXTURE, 'config.json'), 'utf8').trim());
  const card = readFileSync(join(published, 'README.md'), 'utf8');
  assert.match(card, /is in the format of nanoVLM 4e0c096 \(the format of nanoVLM-450M/);
  assert.match(card, /### PyTorch \(nanoVLM 4e0c096\)/);
  assert.match(card, /git clone https:\/\/github\.com\/huggingface\/nanoVLM && cd nanoVLM && git checkout 4e0c096/);
  assert.match(card, /VisionLanguageModel\.from_pretrained\("<path\/to\/this\/folder>"\)/);
  assert.doesNotMatch(card, /--branch v0\.1/);
  assert.doesNotMatch(card, /v0\.1's own format/);
});

test('a v0.1 model card still names v0.1 (the default)', () => {
  const card = modelCard({ name: 'x', recipe: {} });
  assert.match(card, /### PyTorch \(nanoVLM v0\.1\)/);
  assert.match(card, /git clone --branch v0\.1/);
  assert.doesNotMatch(card, /4e0c096/);
});

/** why the HEAD round trip cannot run here, or null */
function headMissing(needTorch: boolean): string | null {
  const head = process.env.NANOVLM_HEAD;
  if (!head) return 'set NANOVLM_HEAD to a nanoVLM checkout at 4e0c096 (git clone https://github.com/huggingface/nanoVLM && git checkout 4e0c096) to run it';
  if (!existsSync(join(head, 'models', 'config.py'))) return `NANOVLM_HEAD=${head} has no models/config.py`;
  const py = spawnSync('python3', ['-c', needTorch ? 'import torch' : 'pass']);
  if (py.status !== 0) return needTorch ? 'python3 with torch is not installed (Debian: apt-get install python3-torch)' : 'python3 is not installed';
  return null;
}

const CONFIG_ROUND_TRIP = `
import json, sys
sys.path.insert(0, sys.argv[1])
from models.config import VLMConfig
from dataclasses import asdict
cfg = VLMConfig(**json.load(open(sys.argv[2])))
print(json.dumps(asdict(cfg), indent=4))
`;

test("HEAD's VLMConfig(**json) accepts the published config.json and writes it back unchanged", { skip: headMissing(false) ?? undefined }, () => {
  const r = spawnSync('python3', ['-c', CONFIG_ROUND_TRIP, process.env.NANOVLM_HEAD!, join(published, 'config.json')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), readFileSync(join(published, 'config.json'), 'utf8').trim());
});

const WEIGHTS_ROUND_TRIP = `
import json, struct, sys
import torch
sys.path.insert(0, sys.argv[1])
from models.config import VLMConfig
from models.vision_transformer import ViT
from models.modality_projector import ModalityProjector
from models.language_model import LanguageModel
cfg = VLMConfig(**json.load(open(sys.argv[2] + '/config.json')))
model = torch.nn.Module()
model.vision_encoder, model.MP, model.decoder = ViT(cfg), ModalityProjector(cfg), LanguageModel(cfg)
with open(sys.argv[2] + '/model.safetensors', 'rb') as f:
    n = struct.unpack('<Q', f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
sd = {k: torch.frombuffer(bytearray(data[e['data_offsets'][0]:e['data_offsets'][1]]), dtype=torch.float32).reshape(e['shape'])
      for k, e in header.items() if k != '__metadata__'}
# safetensors.torch.load_model: a tied tensor stored once, under the name the metadata maps to
for alias, kept in (header.get('__metadata__') or {}).items():
    if alias not in sd and kept in sd: sd[alias] = sd[kept]
missing, unexpected = model.load_state_dict(sd, strict=False)
print(json.dumps({'missing': missing, 'unexpected': unexpected, 'tied': model.decoder.head.weight is model.decoder.token_embedding.weight,
                  'params': sum(p.numel() for p in model.parameters())}))
`;

test("HEAD's modules built from the published config.json load the published weights (no missing or unexpected tensor)", { skip: headMissing(true) ?? undefined }, () => {
  const r = spawnSync('python3', ['-c', WEIGHTS_ROUND_TRIP, process.env.NANOVLM_HEAD!, published], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.deepEqual(out.missing, []);
  assert.deepEqual(out.unexpected, []);
  assert.equal(out.tied, true);
});
