// Build what a recipe describes, through the registry (core/ knows kinds, never plugin names):
//   tokenizer -> vision -> decoder -> projector (given vision and decoder) -> VisionLanguageModel
//   -> image processor (its size defaults to the vision encoder's image size)
// and the datasets of data.{train,val,eval}. If model.from names a nanoVLM checkpoint (local
// folder or Hub repo id), its weights are loaded; with no components in the recipe the
// checkpoint itself says which plugins to build.
import { UserError } from './errors.ts';
import { resolveSource } from './hub/index.ts';
import type { Registry } from './registry.ts';
import { VisionLanguageModel } from './model/vlm.ts';
import { loadCheckpoint, loadWeights } from './weights/model-folder.ts';
import type { Dataset, ImageProcessor, Optimizer, PluginContext, PluginProducts, RegistryLike, Schedule, Tokenizer } from './types.ts';

/** What build functions need to know about the run (a RunContext has all of it). */
export interface BuildContext {
  recipe: Record<string, any>;
  recipeDir: string;
  seed: number;
  log: PluginContext['log'];
}

export interface Components {
  model: VisionLanguageModel;
  tokenizer: Tokenizer;
  imageProcessor: ImageProcessor;
}

export async function buildComponents(recipe: Record<string, any>, registry: RegistryLike, ctx: BuildContext): Promise<Components> {
  const m = recipe.model ?? {};
  const base = { recipe, recipeDir: ctx.recipeDir, seed: ctx.seed, log: ctx.log };
  const built: Partial<PluginProducts> = {};
  const create = async <K extends keyof PluginProducts>(kind: K, key: string): Promise<PluginProducts[K]> =>
    registry.create(kind, m[key], { ...base, yamlPath: `model.${key}`, built: { ...built } });

  const tokenizer = await create('tokenizer', 'tokenizer');
  built.tokenizer = tokenizer;

  let model: VisionLanguageModel;
  const folder = m.from ? await resolveCheckpoint(m.from, ctx).catch((e) => Promise.reject(at(e, registry, 'model.from', FROM_HINT))) : undefined;
  if (m.vision && m.projector && m.decoder) {
    const vision = (built.vision = await create('vision', 'vision'));
    const decoder = (built.decoder = await create('decoder', 'decoder'));
    const projector = (built.projector = await create('projector', 'projector'));
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

  const imageProcessor = await create('image-processor', 'image_processor');
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
  const base = { recipe, recipeDir: ctx.recipeDir, seed: ctx.seed, log: ctx.log, built: { vision: model.vision, projector: model.projector, decoder: model.decoder, ...(tokenizer ? { tokenizer } : {}) } };
  const optimizer = await registry.create('optimizer', recipe.optimizer, { ...base, yamlPath: 'optimizer' });
  const schedule = recipe.schedule ? await registry.create('schedule', recipe.schedule, { ...base, yamlPath: 'schedule' }) : undefined;
  return { optimizer, schedule };
}

/** model.from: a local folder (relative to the recipe) or a Hub repo id (downloaded into the cache). */
async function resolveCheckpoint(from: string, ctx: BuildContext): Promise<string> {
  const wanted = ['config.json', 'model.safetensors', 'nanovlm-ts.json'];
  return resolveSource(from, { baseDir: ctx.recipeDir, repoType: 'model', files: (p) => wanted.includes(p), log: (l) => ctx.log.info(l) });
}

/** a UserError without a place gets the recipe position of `yamlPath` (when the registry knows positions) */
function at(e: unknown, registry: RegistryLike, yamlPath: string, hint?: string): unknown {
  if (!(e instanceof UserError) || e.where.file || e.where.yamlPath) return e;
  const positions = (registry as Partial<Registry>).positions;
  const where = positions ? positions.lookup(yamlPath) : { yamlPath };
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
