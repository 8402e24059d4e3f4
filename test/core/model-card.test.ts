// The model card: front matter the Hub reads, the sections the issue asks for, and no token.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { baseModels, hubDatasets, modelCard } from '../../core/model-card.ts';

const recipe = {
  name: 'smol-ft',
  model: {
    from: null,
    vision: { use: 'siglip-vit', from: 'google/siglip-base-patch16-224', image_size: 224 },
    projector: { use: 'pixel-shuffle', factor: 2 },
    decoder: { use: 'llama', from: 'HuggingFaceTB/SmolLM2-135M@main' },
    tokenizer: { use: 'hf', from: 'HuggingFaceTB/cosmo2-tokenizer' },
  },
  data: {
    train: [{ use: 'parquet', from: 'HuggingFaceM4/the_cauldron', subset: 'ai2d', split: 'train' }],
    val: [{ use: 'synthetic-shapes', split: 'val', count: 200 }],
  },
  train: { batch_size: 8, grad_accum: 2, epochs: 1, max_steps: null },
  optimizer: { use: 'adamw' },
  publish: { license: 'mit', publishers: [{ use: 'local' }, { use: 'hub', repo_id: 'alice/smol-ft' }] },
};

describe('model card', () => {
  const card = modelCard({
    name: 'smol-ft',
    recipe,
    repoId: 'alice/smol-ft',
    tags: ['shapes'],
    evalResults: [
      { evaluator: 'multiple-choice', dataset: 'shapes/test', metrics: { accuracy: 0.925, n: 200 }, breakdown: { color: { accuracy: 0.9, n: 100 } } },
    ],
    facts: { train_seconds: 3725.4, train_steps: 500, hardware: '2 CPU cores', parameters: { total: 1 }, leaked: 'hf_abcdefghijklmnop123' },
    backend: 'wasm',
    parameterCounts: { vision_encoder: 100, MP: 20, decoder: 300, total: 420 },
    files: [{ path: 'model.safetensors', size: 343416 }],
  });

  it('has the front matter the Hub reads', () => {
    const m = /^---\n([\s\S]*?)\n---\n/.exec(card);
    assert.ok(m, 'no front matter');
    const front = parse(m[1]);
    assert.equal(front.library_name, 'nanovlm-ts');
    assert.equal(front.license, 'mit');
    assert.equal(front.pipeline_tag, 'image-text-to-text');
    assert.ok(front.tags.includes('shapes') && front.tags.includes('nanovlm'));
    assert.deepEqual(front.base_model, ['google/siglip-base-patch16-224', 'HuggingFaceTB/SmolLM2-135M']);
    assert.deepEqual(front.datasets, ['HuggingFaceM4/the_cauldron']);
  });

  it('says what it was trained on, how it scored, on what, and how to load it', () => {
    assert.match(card, /`data\.train\[0\]`: `parquet` \(from: HuggingFaceM4\/the_cauldron, subset: ai2d, split: train\)/);
    assert.match(card, /\| multiple-choice \| shapes\/test \| accuracy \| 0\.9250 \|/);
    assert.match(card, /\| color \| 0\.9000 \| 100 \|/);
    assert.match(card, /\| Training loop time \(all runs of it, resumes included\) \| 1 h 2 min 5 s \|\n\| Optimizer steps \| 500 \|\n\| Hardware \| 2 CPU cores \|\n\| Backend \| tfjs wasm \|/);
    assert.ok(!card.includes('| Parameters |'));
    assert.match(card, /\| \*\*total\*\* \| \| \*\*420\*\* \|/);
    assert.match(card, /loadModel\('alice\/smol-ft'/);
    assert.match(card, /VisionLanguageModel\.from_pretrained\("alice\/smol-ft"\)/);
    assert.match(card, /git clone --branch v0\.1 /, 'names the nanoVLM version whose VLMConfig accepts this config.json');
    assert.match(card, /\| `model\.safetensors` \| 343,416 \|/);
  });

  it('never contains a token', () => {
    assert.ok(!card.includes('hf_abcdefghijklmnop123'));
    assert.match(card, /hf_\*\*\*/);
  });

  it('a recipe without backbones or Hub datasets has neither key', () => {
    const front = parse(/^---\n([\s\S]*?)\n---\n/.exec(modelCard({ name: 'x', recipe: { model: {} } }))![1]);
    assert.equal(front.base_model, undefined);
    assert.equal(front.datasets, undefined);
    assert.equal(front.license, 'apache-2.0');
    assert.deepEqual(baseModels({ model: { from: 'lusxvr/nanoVLM-222M', vision: { from: './local/dir' } } }), ['lusxvr/nanoVLM-222M']);
    assert.deepEqual(hubDatasets({ data: { train: [{ use: 'folder', path: './data' }] } }), []);
  });
});
