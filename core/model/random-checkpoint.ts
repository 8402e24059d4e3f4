// A full-size nanoVLM v0.1 model with random weights, for measuring and testing the 222M model
// without downloading it: the components VLMConfig's defaults describe (SigLIP-B/16-224, pixel
// shuffle x2, SmolLM2-135M shapes: 222,081,600 parameters), initialised by the plugins with a seed.
//   - fullSizeModelSection(): the recipe model section (`vlm bench/memory --random-full-size`);
//   - writeRandomCheckpoint(folder): config.json + model.safetensors exactly as nanoVLM's
//     save_pretrained lays them out (tied head stored once as decoder.head.weight, inv_freq kept),
//     ~890 MB, written to a temporary folder and renamed (`scripts/random-checkpoint.ts`).
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { hfHome } from '../hub/config.ts';
import { recipeModelFromVLMConfig, VLM_CONFIG_DEFAULTS, type ModelSection } from './config.ts';
import { buildModel, saveCheckpoint, CONFIG_FILE, WEIGHTS_FILE } from '../weights/model-folder.ts';
import type { Logger, RegistryLike } from '../types.ts';

/** nanoVLM v0.1's full-size model section, every backbone randomly initialised (no `from`) */
export function fullSizeModelSection(registry: RegistryLike): ModelSection {
  return recipeModelFromVLMConfig(VLM_CONFIG_DEFAULTS, registry);
}

/** where the random checkpoint of a seed is kept: $HF_HOME/nanovlm-ts/random-nanoVLM-222M-seed<seed> */
export function randomCheckpointFolder(seed = 0, env: NodeJS.ProcessEnv = process.env): string {
  return join(hfHome(env), 'nanovlm-ts', `random-nanoVLM-222M-seed${seed}`);
}

/** true when `folder` holds a finished checkpoint (both files; they are renamed into place last) */
export function isCheckpointFolder(folder: string): boolean {
  return existsSync(join(folder, CONFIG_FILE)) && existsSync(join(folder, WEIGHTS_FILE));
}

/**
 * Build the model of `section` (default: the full-size one) with random weights from `seed` and
 * save it as a nanoVLM checkpoint into `folder` (replaced if present). Returns the parameter count.
 */
export async function writeRandomCheckpoint(
  folder: string,
  registry: RegistryLike,
  opts: { seed?: number; section?: ModelSection; log?: Logger } = {},
): Promise<number> {
  const section = opts.section ?? fullSizeModelSection(registry);
  const model = await buildModel(section, registry, { seed: opts.seed ?? 0, log: opts.log });
  const tmp = `${folder}.tmp-${process.pid}`;
  try {
    mkdirSync(dirname(folder), { recursive: true });
    rmSync(tmp, { recursive: true, force: true });
    await saveCheckpoint(model, tmp); // config.json + model.safetensors, no sidecar: a plain nanoVLM folder
    rmSync(folder, { recursive: true, force: true });
    renameSync(tmp, folder);
    return model.parameterCounts().total;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    model.dispose();
  }
}

/**
 * A recipe model section with its vision encoder, projector and decoder replaced by the full-size
 * random ones (`--random-full-size`); the tokenizer and image processor stay the recipe's.
 */
export function withFullSizeModel(model: Record<string, any> | undefined, registry: RegistryLike): Record<string, any> {
  const { tokenizer, image_processor, adapters } = model ?? {};
  return { ...fullSizeModelSection(registry), from: null, tokenizer, image_processor, ...(adapters ? { adapters } : {}) }; // model.adapters (LoRA) stay
}
