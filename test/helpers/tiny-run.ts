// A tiny model folder and run directory for command tests, made without training (random weights):
// a project folder with a recipe whose data paths are relative (a `folder` dataset of 4 PNGs with
// multiple-choice rows), a run directory as `vlm run` leaves it (recipe.yaml resolved, run.json,
// model/ with config.json + model.safetensors + nanovlm-ts.json), all under one temp folder.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import type { CommandEnv } from '../../core/cli.ts';
import type { Plugin } from '../../core/plugin.ts';
import { recipeToYaml, resolveRecipe } from '../../core/recipe/index.ts';
import { createRegistry, Registry } from '../../core/registry.ts';
import { buildModel, saveCheckpoint } from '../../core/weights/model-folder.ts';
import builtins from '../../plugins/index.ts';

export const TINY_MODEL = {
  vision: { use: 'siglip-vit', hidden_dim: 32, inter_dim: 64, patch_size: 8, image_size: 32, n_heads: 4, n_blocks: 1 },
  projector: { use: 'pixel-shuffle', factor: 2 },
  decoder: { use: 'llama', hidden_dim: 32, inter_dim: 64, n_heads: 4, n_kv_heads: 2, n_blocks: 1, vocab_size: 257, max_length: 96 },
  tokenizer: { use: 'bytes' },
  image_processor: { use: 'resize' },
};

const quiet = { info() {}, warn() {}, debug() {} };

/** 4 solid-colour PNGs and a data.jsonl of multiple-choice rows in `dir` */
export async function writeFolderDataset(dir: string, rows = 4): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const colours = ['red', 'green', 'blue', 'white'];
  const rgb = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]];
  const lines: string[] = [];
  for (let i = 0; i < rows; i++) {
    const [r, g, b] = rgb[i % 4];
    await sharp({ create: { width: 32, height: 32, channels: 3, background: { r, g, b } } }).png().toFile(join(dir, `${i}.png`));
    lines.push(JSON.stringify({ image: `${i}.png`, question: 'What colour is the image?', choices: colours, answer: 'ABCD'[i % 4] }));
  }
  writeFileSync(join(dir, 'data.jsonl'), lines.join('\n') + '\n');
}

export interface TinyRun {
  root: string;
  /** project/recipe.yaml: data paths relative to project/ */
  recipe: string;
  runDir: string;
  /** runDir/model */
  modelDir: string;
}

/** The recipe text of the project (out_dir is absolute, under root). */
export function tinyRecipe(root: string, extra = ''): string {
  return [
    'name: tiny',
    `runtime: { backend: auto, seed: 0, out_dir: ${JSON.stringify(join(root, 'runs'))} }`,
    'model:',
    ...Object.entries(TINY_MODEL).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`),
    'data:',
    '  train: [ { use: folder, path: data/not-there } ]',
    '  eval: [ { use: folder, path: data/colours } ]',
    'optimizer: { use: adamw }',
    'schedule: { use: constant }',
    'eval: { evaluators: [ { use: multiple-choice, batch_size: 4 } ] }',
    extra,
  ].join('\n') + '\n';
}

export async function makeTinyRun(opts: { registry?: Registry; sidecar?: Record<string, unknown> } = {}): Promise<TinyRun> {
  const root = mkdtempSync(join(tmpdir(), 'vlm-tiny-run-'));
  const project = join(root, 'project');
  await writeFolderDataset(join(project, 'data', 'colours'));
  const recipe = join(project, 'recipe.yaml');
  writeFileSync(recipe, tinyRecipe(root));
  const registry = opts.registry ?? new Registry(builtins);
  const resolved = await resolveRecipe(recipe, { registry });
  const runDir = join(root, 'runs', 'tiny-20261207-000000');
  mkdirSync(runDir, { recursive: true });
  writeFileSync(join(runDir, 'recipe.yaml'), recipeToYaml(resolved));
  writeFileSync(join(runDir, 'run.json'), JSON.stringify({ recipe, overrides: [] }));
  const model = await buildModel(TINY_MODEL as any, registry, { recipe: { model: TINY_MODEL }, recipeDir: project, seed: 0, log: quiet });
  const modelDir = join(runDir, 'model');
  await saveCheckpoint(model, modelDir, opts.sidecar ?? { format_version: 1, model: TINY_MODEL });
  model.dispose();
  return { root, recipe, runDir, modelDir };
}

/** A CommandEnv with the built-in plugins that records what the command writes. */
export function commandEnv(plugins: readonly Plugin[] = builtins): { env: CommandEnv; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const stdout = { write: (x: string) => void (out += x) };
  const stderr = { write: (x: string) => void (err += x) };
  const env: CommandEnv = {
    registry: createRegistry(plugins),
    builtins: plugins,
    debug: false,
    stdout,
    stderr,
    log: { info: (m) => stderr.write(m + '\n'), warn: (m) => stderr.write(`warning: ${m}\n`), debug() {} },
  };
  return { env, out: () => out, err: () => err };
}
