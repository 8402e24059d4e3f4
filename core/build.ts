// Build what a recipe describes, through the registry (core/ knows kinds, never plugin names):
//   tokenizer -> vision -> decoder -> projector (given vision and decoder) -> VisionLanguageModel
//   -> image processor (its size defaults to the vision encoder's image size)
// and the datasets of data.{train,val,eval}. If model.from names a nanoVLM checkpoint (local
// folder or Hub repo id), its weights are loaded; with no components in the recipe the
// checkpoint itself says which plugins to build.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from './errors.ts';
import { applyVLMConfig, NEWER_NANOVLM_FIELDS } from './model/config.ts';
import { usePlaceholderTokens } from './model/image-placeholders.ts';
import { resolveSource } from './hub/index.ts';
import { VisionLanguageModel } from './model/vlm.ts';
import { attachAdapters } from './model/adapters.ts';
import { loadCheckpoint, loadWeights } from './weights/model-folder.ts';
import { isWeightsFile } from './weights/model-weights.ts';
import type { Dataset, ImageProcessor, Optimizer, PluginContext, PluginProducts, RegistryLike, Schedule, Tokenizer } from './types.ts';

/** What build functions need to know about the run (a RunContext has all of it). */
export interface BuildContext {
  recipe: Record<string, any>;
  recipeDir: string;
  seed: number;
  log: PluginContext['log'];
  /** the recipe's source positions (errors point at file:line:col), when it came from a file */
  positions?: PluginContext['positions'];
}

export interface Components {
  model: VisionLanguageModel;
  tokenizer: Tokenizer;
  imageProcessor: ImageProcessor;
}

export async function buildComponents(recipe: Record<string, any>, registry: RegistryLike, ctx: BuildContext): Promise<Components> {
  const m = recipe.model ?? {};
  const base = { recipe, recipeDir: ctx.recipeDir, seed: ctx.seed, log: ctx.log, positions: ctx.positions };
  const built: Partial<PluginProducts> = {};
  const create = async <K extends keyof PluginProducts>(kind: K, key: string, entry = m[key]): Promise<PluginProducts[K]> =>
    registry.create(kind, entry, { ...base, yamlPath: `model.${key}`, built: { ...built } });

  const tokenizer = await create('tokenizer', 'tokenizer');
  built.tokenizer = tokenizer;

  let model: VisionLanguageModel;
  const folder = m.from ? await resolveCheckpoint(m.from, ctx).catch((e) => Promise.reject(at(e, ctx, 'model.from', FROM_HINT))) : undefined;
  if (m.vision && m.projector && m.decoder) {
    // with model.from, the checkpoint holds every weight: the backbones' own `from:` (Hub weights)
    // is neither resolved nor downloaded, as nanoVLM's from_pretrained never loads backbone weights
    // for a full checkpoint; the shapes it would have given come from the checkpoint's config.json
    const config = folder ? readCheckpointConfig(folder) : null;
    const entry = (kind: 'vision' | 'projector' | 'decoder') => (config && m[kind].from ? withoutFrom(m[kind], kind, registry, config, folder!) : m[kind]);
    const vision = (built.vision = await create('vision', 'vision', entry('vision')));
    const decoder = (built.decoder = await create('decoder', 'decoder', entry('decoder')));
    const projector = (built.projector = await create('projector', 'projector', entry('projector')));
    model = new VisionLanguageModel({ vision, projector, decoder });
    if (folder) {
      ctx.log.info(`loading weights from ${m.from}`);
      try {
        loadWeights(model, folder, ctx.log);
      } catch (e) {
        model.dispose();
        throw e;
      }
    }
  } else {
    // model.from alone: the checkpoint's config (or sidecar) names the components
    ctx.log.info(`building the model described by ${m.from}`);
    model = await loadCheckpoint(folder!, registry, { ...base, yamlPath: 'model.from' });
    Object.assign(built, { vision: model.vision, projector: model.projector, decoder: model.decoder });
  }

  // model.adapters (e.g. LoRA): on the loaded weights, which they freeze
  try {
    await attachAdapters(model, m.adapters, registry, base);
  } catch (e) {
    model.dispose();
    throw e;
  }
  const imageProcessor = await create('image-processor', 'image_processor');
  // model.image_tokens: prefix (v0.1) or placeholders (HEAD; null: what a model.from checkpoint is)
  const headCheckpoint = folder ? 'vlm_extra_tokens' in readCheckpointConfig(folder) : false;
  const placeholders = m.image_tokens === 'placeholders' || (m.image_tokens == null && headCheckpoint);
  if (!placeholders) model.imageTokenId = null;
  else if (model.imageTokenId === null || m.image_tokens === 'placeholders') {
    try {
      usePlaceholderTokens(model, tokenizer, headFields(registry, m.image_processor));
    } catch (e) {
      model.dispose();
      throw e;
    }
  }
  return { model, tokenizer, imageProcessor };
}

/**
 * The recipe's optimizer (its parameter groups over `model`) and, when the recipe has one, its
 * learning-rate schedule: what the train stage, `vlm bench` and `vlm memory` train with.
 */
export async function buildOptimizer(
  recipe: Record<string, any>,
  registry: RegistryLike,
  ctx: BuildContext,
  model: VisionLanguageModel,
  tokenizer?: Tokenizer,
): Promise<{ optimizer: Optimizer; schedule?: Schedule }> {
  if (!recipe.optimizer) throw new UserError('the recipe has no optimizer', { where: { yamlPath: 'optimizer' }, hint: 'add an optimizer entry, e.g. optimizer: { use: <name>, lr: 1e-4 } (vlm plugins lists them)' });
  const base = { recipe, recipeDir: ctx.recipeDir, seed: ctx.seed, log: ctx.log, positions: ctx.positions, built: { vision: model.vision, projector: model.projector, decoder: model.decoder, ...(tokenizer ? { tokenizer } : {}) } };
  const optimizer = await registry.create('optimizer', recipe.optimizer, { ...base, yamlPath: 'optimizer' });
  const schedule = recipe.schedule ? await registry.create('schedule', recipe.schedule, { ...base, yamlPath: 'schedule' }) : undefined;
  return { optimizer, schedule };
}

/** nanoVLM HEAD VLMConfig fields that the image processor's plugin maps (Plugin.nanovlm.config), from its recipe entry */
function headFields(registry: RegistryLike, entry: { use?: string; [k: string]: unknown } | undefined): Record<string, unknown> {
  const map = entry?.use ? registry.plugin('image-processor', entry.use)?.nanovlm?.config : undefined;
  const out: Record<string, unknown> = {};
  for (const [field, option] of Object.entries(map ?? {})) if ((NEWER_NANOVLM_FIELDS as readonly string[]).includes(field) && entry![option] !== undefined) out[field] = entry![option];
  return out;
}

/** the config.json of a checkpoint folder */
function readCheckpointConfig(folder: string): Record<string, unknown> {
  const file = join(folder, 'config.json');
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file}: ${(e as Error).message}`, { where: { file }, hint: 'model.from must name a nanoVLM checkpoint folder (config.json + model.safetensors)' });
  }
}

/** A component entry without its `from:`; the VLMConfig fields its plugin maps and the entry does not set come from config.json. */
function withoutFrom(entry: Record<string, unknown>, kind: 'vision' | 'projector' | 'decoder', registry: RegistryLike, config: Record<string, unknown>, folder: string): { use: string } {
  const { from: _from, ...rest } = entry as { use: string; from?: unknown };
  const plugin = registry.plugin(kind, rest.use);
  return plugin?.nanovlm?.config ? { ...applyVLMConfig({ use: rest.use }, plugin, config, join(folder, 'config.json')), ...rest } : rest;
}

/** model.from: a local folder (relative to the recipe) or a Hub repo id (downloaded into the cache). */
async function resolveCheckpoint(from: string, ctx: BuildContext): Promise<string> {
  const wanted = ['config.json', 'nanovlm-ts.json'];
  return resolveSource(from, { baseDir: ctx.recipeDir, repoType: 'model', files: (p) => wanted.includes(p) || isWeightsFile(p), log: (l) => ctx.log.info(l) });
}

/** a UserError without a place gets the recipe position of `yamlPath` (when the recipe's positions are known) */
function at(e: unknown, ctx: BuildContext, yamlPath: string, hint?: string): unknown {
  if (!(e instanceof UserError) || e.where.file || e.where.yamlPath) return e;
  const where = ctx.positions ? ctx.positions.lookup(yamlPath) : { yamlPath };
  return new UserError(e.message, { where, hint: e.hint ?? hint, cause: e }); // the specific hint wins
}

const FROM_HINT = 'model.from is a checkpoint folder (relative to the recipe) or a Hub repo id owner/name[@revision]';

export interface Datasets {
  train: Dataset[];
  val: Dataset[];
  eval: Dataset[];
}

export async function buildDatasets(recipe: Record<string, any>, registry: RegistryLike, ctx: BuildContext): Promise<Datasets> {
  const out: Datasets = { train: [], val: [], eval: [] };
  for (const role of ['train', 'val', 'eval'] as const) {
    const entries: any[] = recipe.data?.[role] ?? [];
    for (let i = 0; i < entries.length; i++) {
      out[role].push(
        await registry.create('dataset', entries[i], {
          recipe,
          recipeDir: ctx.recipeDir,
          seed: ctx.seed,
          log: ctx.log,
          positions: ctx.positions,
          yamlPath: `data.${role}[${i}]`,
          role,
        }),
      );
      // the name keys the metrics (<evaluator>/<name>/<metric>): two alike would overwrite each other
      const first = out[role].findIndex((d) => d.name === out[role][i].name);
      if (first < i) {
        throw new UserError(`data.${role}[${first}] and data.${role}[${i}] are both named "${out[role][i].name}"`, {
          where: { yamlPath: `data.${role}[${i}].name` },
          hint: `give one of them another name: (e.g. name: ${out[role][i].name}-2); metric keys are <evaluator>/<name>/<metric>`,
        });
      }
    }
  }
  return out;
}
