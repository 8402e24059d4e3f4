// Library entry point for using a trained model without the CLI: `loadModel(source)` accepts
//   - a model folder: config.json + model.safetensors (nanoVLM layout) [+ nanovlm-ts.json sidecar
//     with the recipe's model section] [+ tokenizer files];
//   - a run directory: its published `model/` folder, else the checkpoint named by
//     `checkpoints/latest`, else `checkpoints/best/`;
//   - a Hub repo id `owner/name[@revision]` (downloaded through core/hub resolveSource).
// The tokenizer and image processor are built from the sidecar's entries (a plugin that declares a
// folder file, Plugin.nanovlm.folderFile, reads it from the folder when present: tokenizer.json); a
// plain nanoVLM folder without sidecar gets the tokenizer and image processor plugins that declare
// nanoVLM interoperability, their options from config.json (lm_tokenizer, vit_img_size; for a HEAD
// folder, the plugins declaring HEAD's mapping, Plugin.nanovlm.head).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { UserError } from './errors.ts';
import { resolveSource } from './hub/index.ts';
import { loadCheckpoint } from './weights/model-folder.ts';
import { hasModelWeights } from './weights/model-weights.ts';
import { applyHeadVLMConfig, applyVLMConfig, nanovlmPlugin } from './model/config.ts';
import type { ImageProcessor, Logger, RegistryLike, Tokenizer } from './types.ts';
import type { VisionLanguageModel } from './model/vlm.ts';

export interface LoadedModel {
  model: VisionLanguageModel;
  tokenizer: Tokenizer;
  imageProcessor: ImageProcessor;
  /** the local folder the weights were read from */
  folder: string;
}

export interface LoadModelOptions {
  /** a registry with the built-in plugins (and any others the sidecar names) */
  registry: RegistryLike;
  log?: Logger;
  seed?: number;
}

const quietLog: Logger = { info() {}, warn() {}, debug() {} };

const isModelFolder = (d: string) => existsSync(join(d, 'config.json')) && hasModelWeights(d); // model.safetensors or sharded
const isDir = (d: string) => existsSync(d) && statSync(d).isDirectory();

/** The checkpoint folder `checkpoints/latest` points to (plain text: "step-N", a relative or absolute path, or JSON {path}). */
export function readLatestPointer(runDir: string): string | null {
  const pointer = join(runDir, 'checkpoints', 'latest');
  if (!existsSync(pointer)) return null;
  if (statSync(pointer).isDirectory()) return pointer; // a symlink or copied folder
  let target = readFileSync(pointer, 'utf8').trim();
  if (target.startsWith('{')) {
    const j = JSON.parse(target) as { path?: string; dir?: string; step?: number };
    target = j.path ?? j.dir ?? (j.step !== undefined ? `step-${j.step}` : '');
  }
  if (!target) return null;
  if (isAbsolute(target)) return target;
  for (const base of [join(runDir, 'checkpoints'), runDir]) if (isDir(join(base, target))) return resolve(base, target);
  return resolve(runDir, 'checkpoints', target);
}

/** A local folder holding config.json + model.safetensors for `source` (see the header). */
export async function resolveModelFolder(source: string): Promise<string> {
  const local = await resolveSource(source, { repoType: 'model' });
  if (isModelFolder(local)) return local;
  if (!isDir(local)) {
    throw new UserError(`--model ${source}: not a folder`, {
      hint: 'give a model folder (config.json + model.safetensors), a run directory, or a Hub repo id',
    });
  }
  // newest step-N first, for a run whose `latest` pointer is missing or names an incomplete folder
  const ckpts = join(local, 'checkpoints');
  const steps = isDir(ckpts)
    ? readdirSync(ckpts)
        .filter((f) => /^step-\d+$/.test(f))
        .sort((a, b) => Number(b.slice(5)) - Number(a.slice(5)))
        .map((f) => join(ckpts, f))
    : [];
  const candidates = [join(local, 'model'), readLatestPointer(local), ...steps, join(ckpts, 'best')];
  for (const c of candidates) if (c && isModelFolder(c)) return c;
  throw new UserError(`--model ${source}: no model found in ${local}`, {
    hint:
      'expected config.json + model.safetensors there, or a run directory with model/ (published) or ' +
      'checkpoints/latest (a checkpoint); has the run finished a checkpoint yet?',
  });
}

/** The sidecar's model section (`nanovlm-ts.json`), or null for a plain nanoVLM folder. */
export function readSidecar(folder: string): Record<string, any> | null {
  const p = join(folder, 'nanovlm-ts.json');
  if (!existsSync(p)) return null;
  try {
    const j = JSON.parse(readFileSync(p, 'utf8'));
    return j?.model ?? null;
  } catch (e) {
    throw new UserError(`${p}: invalid JSON (${(e as Error).message})`, { where: { file: p } });
  }
}

/** Tokenizer and image-processor recipe entries for the model in `folder`. */
export function componentEntries(folder: string, registry: RegistryLike): {
  tokenizer: { use: string; [k: string]: unknown };
  imageProcessor: { use: string; [k: string]: unknown };
} {
  const sidecar = readSidecar(folder);
  const config = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8'));
  // a nanoVLM HEAD folder (get_tokenizer, get_image_processor: the extra tokens and chat template
  // from the config, images split into tiles) is built with the plugins declaring HEAD's mapping
  // (Plugin.nanovlm.head), a v0.1 folder with those declaring v0.1's
  const head = !sidecar?.tokenizer && 'vlm_extra_tokens' in config;
  const fromConfig = (kind: 'tokenizer' | 'image-processor') => {
    const p = nanovlmPlugin(registry, kind, head ? 'head' : 'v0.1');
    return head ? applyHeadVLMConfig({ use: p.name }, p, config) : applyVLMConfig({ use: p.name }, p, config, join(folder, 'config.json'));
  };
  /** a sidecar entry as it is, or the nanoVLM plugin of `kind` with its options from config.json */
  const entry = (kind: 'tokenizer' | 'image-processor', given: { use: string; [k: string]: unknown } | undefined) => {
    const e = given ? { ...given } : fromConfig(kind);
    // the folder's own file (tokenizer.json) wins over where the entry points
    const ff = registry.plugin(kind, e.use)?.nanovlm?.folderFile;
    if (ff && existsSync(join(folder, ff.file))) e[ff.option] = folder;
    return e;
  };
  return { tokenizer: entry('tokenizer', sidecar?.tokenizer), imageProcessor: entry('image-processor', sidecar?.tokenizer ? sidecar.image_processor : undefined) };
}

/** Load model + tokenizer + image processor from a model folder, run directory or Hub repo id. */
export async function loadModel(source: string, opts: LoadModelOptions): Promise<LoadedModel> {
  const log = opts.log ?? quietLog;
  const folder = await resolveModelFolder(source);
  log.debug(`loading model from ${folder}`);
  const sidecar = readSidecar(folder);
  const recipe = { model: sidecar ?? {} };
  const base = { recipe, recipeDir: folder, seed: opts.seed ?? 0, log };
  const model = await loadCheckpoint(folder, opts.registry, { ...base, yamlPath: 'model' });
  try {
    const entries = componentEntries(folder, opts.registry);
    const built = { vision: model.vision, projector: model.projector, decoder: model.decoder };
    const tokenizer = await opts.registry.create('tokenizer', entries.tokenizer, { ...base, yamlPath: 'model.tokenizer', built });
    const imageProcessor = await opts.registry.create('image-processor', entries.imageProcessor, {
      ...base,
      yamlPath: 'model.image_processor',
      built: { ...built, tokenizer },
    });
    if (model.imageTokenId !== null && tokenizer.tokenToId?.('<|image|>') !== model.imageTokenId) {
      throw new UserError(
        `${folder}: the model's image token is id ${model.imageTokenId} but the tokenizer's <|image|> is ${tokenizer.tokenToId?.('<|image|>') ?? 'missing'}`,
        { hint: "the tokenizer does not belong to this model: it needs the config's vlm_extra_tokens after lm_base_vocab_size tokens" },
      );
    }
    if (imageProcessor.size !== model.imageSize) {
      throw new UserError(
        `${folder}: the image processor makes ${imageProcessor.size}px images but the vision encoder takes ${model.imageSize}px`,
        { where: { file: join(folder, 'nanovlm-ts.json'), yamlPath: 'model.image_processor.size' }, hint: 'fix or remove image_processor.size in the sidecar' },
      );
    }
    return { model, tokenizer, imageProcessor, folder };
  } catch (e) {
    model.dispose();
    throw e;
  }
}
