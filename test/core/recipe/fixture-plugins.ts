// Small stand-in plugins with fixed schemas, so the broken-recipe tests assert exact messages
// without depending on the built-in plugins' option lists.
import { definePlugin, type JSONSchema, type Plugin } from '../../../core/plugin.ts';
import type { PluginKind } from '../../../core/types.ts';
import { cli } from '../../../core/cli.ts';
import loadStage from '../../../plugins/stage/load.ts';
import trainStage from '../../../plugins/stage/train.ts';
import evalStage from '../../../plugins/stage/eval.ts';
import publishStage from '../../../plugins/stage/publish.ts';

function fake(kind: PluginKind, name: string, properties: Record<string, JSONSchema> = {}, required: string[] = []): Plugin {
  return definePlugin({
    kind,
    name,
    description: `test ${kind} ${name}`,
    options: { type: 'object', additionalProperties: false, properties, required } as const,
    create: () => ({}) as never,
  });
}

export const fixturePlugins: Plugin[] = [
  fake('vision', 'siglip-vit', { hidden_dim: { type: 'integer', minimum: 1, default: 768 }, image_size: { type: 'integer', default: 224 } }),
  fake('projector', 'pixel-shuffle', { factor: { type: 'integer', default: 2 } }),
  fake('decoder', 'llama', { hidden_dim: { type: 'integer', default: 576 }, vocab_size: { type: 'integer' } }, ['vocab_size']),
  fake('tokenizer', 'bytes'),
  fake('image-processor', 'resize', { size: { type: ['integer', 'null'], default: null } }),
  fake('dataset', 'synthetic-shapes', { split: { enum: ['train', 'val', 'test'], default: 'train' }, count: { type: 'integer', default: 100 }, limit: { type: ['integer', 'null'], default: null } }),
  fake('optimizer', 'adamw', { weight_decay: { type: 'number', default: 0.01 } }),
  fake('schedule', 'cosine-warmup', { warmup_ratio: { type: 'number', default: 0.03 } }),
  // the real stages' options (the recipe's train:, eval:, publish: sections) and what they need of a
  // recipe (their own checkRecipe) are part of validation
  { ...fake('stage', 'load'), checkRecipe: loadStage.checkRecipe },
  { ...fake('stage', 'train'), options: trainStage.options, checkRecipe: trainStage.checkRecipe },
  { ...fake('stage', 'eval'), options: evalStage.options },
  { ...fake('stage', 'publish'), options: publishStage.options },
];

/** `vlm validate <file> ...args` with the fixture plugins: exit code, stdout, stderr */
export async function validateWithFixtures(file: string, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await cli(['validate', file, ...args], {
    builtins: fixturePlugins,
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
  });
  return { code, out, err };
}
