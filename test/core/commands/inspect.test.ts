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

test("vlm inspect recipes/nanovlm-450m.yaml: HEAD's defaults, HEAD's parameter count 460,113,984, offline", async () => {
  const saved = { offline: process.env.HF_HUB_OFFLINE, endpoint: process.env.HF_ENDPOINT };
  process.env.HF_HUB_OFFLINE = '1'; // nothing may be downloaded to describe it
  process.env.HF_ENDPOINT = 'http://127.0.0.1:9'; // and no Hub to reach anyway
  try {
    const file = join(REPO_ROOT, 'recipes/nanovlm-450m.yaml');
    assert.equal((await vlm('validate', file)).code, 0);
    const r = await vlm('inspect', file);
    assert.equal(r.code, 0, r.err);
    // sum(p.numel()) of HEAD's VisionLanguageModel(VLMConfig()) per module (test/core/model/nanovlm-head.test.ts)
    assert.match(r.out, /^ {2}vision_encoder +siglip-vit +86,433,024$/m);
    assert.match(r.out, /^ {2}MP +pixel-shuffle +11,796,480$/m);
    assert.match(r.out, /^ {2}decoder +llama +361,884,480$/m);
    assert.match(r.out, /^ {2}total +460,113,984$/m);
    assert.equal(JSON.parse((await vlm('inspect', file, '--json')).out).parameters.total, 460_113_984);
    // the model section is HEAD's default VLMConfig mapped onto our plugins, plus its tokenizer and processor
    const { HEAD_VLM_CONFIG_DEFAULTS: H, recipeModelFromVLMConfig } = await import('../../../core/model/config.ts');
    const reg = new Registry(builtins);
    const m = (await resolveRecipe(file, { registry: reg })).data.model as Record<string, any>;
    const mapped = recipeModelFromVLMConfig(H, reg);
    for (const kind of ['vision', 'projector', 'decoder'] as const) {
      for (const [k, v] of Object.entries(mapped[kind])) if (k !== 'eos_token_id' && k !== 'dropout' && k !== 'cls_flag' && k !== 'attn_scaling') assert.deepEqual(m[kind][k], v, `model.${kind}.${k}`);
    }
    assert.equal(m.vision.from, H.vit_model_type);
    assert.equal(m.decoder.from, H.lm_model_type);
    assert.equal(m.tokenizer.from, H.lm_tokenizer);
    assert.equal(m.tokenizer.chat_template, H.lm_chat_template);
    assert.deepEqual(Object.entries(m.tokenizer.extra_special_tokens), Object.entries(H.vlm_extra_tokens as Record<string, string>)); // same order: the ids follow it
    assert.equal(m.decoder.vocab_size, (H.lm_base_vocab_size as number) + (H.extra_token_amount as number));
    assert.deepEqual([m.image_processor.use, m.image_processor.max_size, m.image_processor.resize_to_max_side], ['split', H.max_img_size, H.resize_to_max_side_len]);
    const r2 = (await resolveRecipe(file, { registry: reg })).data as Record<string, any>;
    // TrainConfig / train.py: lr_mp, lr_vision_backbone, lr_language_backbone, max_grad_norm, max_training_steps
    assert.deepEqual(r2.optimizer.groups.map((g: { lr: number }) => g.lr), [0.00512, 5e-5, 5e-5]);
    assert.deepEqual([r2.train.max_grad_norm, r2.train.max_steps, r2.train.batch_size, r2.train.grad_accum], [1.0, 40000, 2, 8]);
  } finally {
    for (const [k, v] of [['HF_HUB_OFFLINE', saved.offline], ['HF_ENDPOINT', saved.endpoint]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
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
