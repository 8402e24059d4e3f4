// Adapters on linear layers (model.adapters): building them through the registry, the weights a
// checkpoint stores (the base weights with each adapter merged in: W + delta, so that the folder is
// a plain nanoVLM checkpoint), and the PEFT adapter files written beside them, as PEFT's
// save_pretrained writes them (https://github.com/huggingface/peft, src/peft/utils/save_and_load.py):
//   adapter_config.json           peft_type, r, lora_alpha, target_modules, ... (the adapters' own)
//   adapter_model.safetensors     "base_model.model.<layer>.lora_A.weight" ... (the adapter name
//                                 "default" left out of the keys, as get_peft_model_state_dict does)
// Trainer checkpoints carry the adapter files: --resume loads them into the adapters of the model
// rebuilt from the recipe (the base weights are frozen, so the recipe's model.from gives them again).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import type { Adapter, PluginContext, RegistryLike } from '../types.ts';
import { openSafetensors, writeSafetensors, type TensorToWrite } from '../weights/safetensors.ts';
import { writeFileSynced } from '../train/trainer-checkpoints.ts';
import type { VisionLanguageModel } from './vlm.ts';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
/** PEFT's prefix of the adapter keys (PeftModel.base_model.model = the wrapped model) */
export const PEFT_KEY_PREFIX = 'base_model.model.';

/** Build model.adapters[i] over the model's components and attach them (the base model is then frozen). */
export async function attachAdapters(
  model: VisionLanguageModel,
  entries: unknown,
  registry: RegistryLike,
  base: Omit<PluginContext, 'registry' | 'yamlPath' | 'built'>,
): Promise<void> {
  if (entries === undefined || entries === null) return;
  const list = entries as { use: string; [k: string]: unknown }[];
  for (let i = 0; i < list.length; i++) {
    const yamlPath = `model.adapters[${i}]`;
    const adapter = await registry.create('adapter', list[i], { ...base, yamlPath, built: { vision: model.vision, projector: model.projector, decoder: model.decoder } });
    model.addAdapter(adapter, yamlPath);
  }
}

/** full layer name -> the adapter on it */
function adaptedLayers(model: VisionLanguageModel): Map<string, Adapter> {
  const out = new Map<string, Adapter>();
  for (const a of model.adapters) for (const layer of a.layers) out.set(layer, a);
  return out;
}

/**
 * What a checkpoint stores for parameter `name`: null for an adapter's parameter (never in a
 * nanoVLM checkpoint), a function computing W + delta for an adapted layer's weight (a new tensor
 * the caller disposes), undefined when the parameter is stored as it is.
 */
export function mergedWeight(model: VisionLanguageModel, name: string): null | (() => tf.Tensor) | undefined {
  if (!model.adapters.length) return undefined;
  if (model.adapterParams().has(model.params.get(name)!)) return null;
  if (!name.endsWith('.weight')) return undefined;
  const layer = name.slice(0, -'.weight'.length);
  const adapter = adaptedLayers(model).get(layer);
  if (!adapter) return undefined;
  const w = model.params.get(name)!;
  return () => tf.tidy(() => tf.add(w, adapter.linear(layer).delta())); // [out, in]
}

/** adapter_config.json of the model's adapters (PEFT LoraConfig fields; several entries: rank_pattern / alpha_pattern per layer) */
export function peftConfig(model: VisionLanguageModel, baseModel: string | null): Record<string, unknown> {
  const configs: Record<string, unknown>[] = model.adapters.map((a) => ({ ...a.peftConfig(), target_modules: a.layers }));
  const first = configs[0];
  const out: Record<string, unknown> = { ...first, base_model_name_or_path: baseModel, inference_mode: true };
  if (configs.length > 1) {
    const types = new Set(configs.map((c) => c.peft_type));
    if (types.size > 1) throw new UserError(`model.adapters mixes adapter types (${[...types].join(', ')}): one PEFT adapter file cannot describe them`, { where: { yamlPath: 'model.adapters' } });
    out.target_modules = configs.flatMap((c) => c.target_modules as string[]);
    const pattern = (key: string) => Object.fromEntries(configs.slice(1).flatMap((c) => (c[key] !== first[key] ? (c.target_modules as string[]).map((l) => [l, c[key]]) : [])));
    out.rank_pattern = pattern('r');
    out.alpha_pattern = pattern('lora_alpha');
  }
  return out;
}

/** Write adapter_config.json + adapter_model.safetensors (PEFT key names) into `folder`. */
export async function saveAdapterFiles(model: VisionLanguageModel, folder: string, baseModel: string | null = null): Promise<void> {
  const tensors = new Map<string, TensorToWrite>();
  for (const a of model.adapters) {
    for (const [name, v] of a.params) tensors.set(PEFT_KEY_PREFIX + name, { dtype: 'F32', shape: v.shape, data: (await v.data()) as Float32Array });
  }
  writeSafetensors(join(folder, ADAPTER_WEIGHTS_FILE), new Map([...tensors].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))), { format: 'pt' });
  writeFileSynced(join(folder, ADAPTER_CONFIG_FILE), JSON.stringify(peftConfig(model, baseModel), null, 2) + '\n');
}

/** Load `folder`/adapter_model.safetensors into the model's adapters (every adapter parameter must be there, with its shape). */
export function loadAdapterWeights(model: VisionLanguageModel, folder: string): void {
  const file = join(folder, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(file)) {
    throw new UserError(`${file} not found: the checkpoint has no adapter weights, but the recipe has model.adapters`, {
      where: { file },
      hint: 'resume with the recipe that wrote the checkpoint (the same model.adapters)',
    });
  }
  const f = openSafetensors(file);
  try {
    const problems: string[] = [];
    const plan: [tf.Variable, string][] = [];
    for (const a of model.adapters) {
      for (const [name, v] of a.params) {
        const key = PEFT_KEY_PREFIX + name;
        if (!f.has(key)) problems.push(`missing tensor "${key}"`);
        else if (f.header.entries.get(key)!.shape.join() !== v.shape.join()) problems.push(`tensor "${key}": expected shape [${v.shape}], found [${f.header.entries.get(key)!.shape}]`);
        else plan.push([v, key]);
      }
    }
    const expected = new Set(plan.map(([, k]) => k));
    const unexpected = f.names.filter((n) => !expected.has(n) && !problems.some((p) => p.includes(`"${n}"`)));
    if (unexpected.length) problems.push(`unexpected tensors: ${unexpected.slice(0, 8).join(', ')}`);
    if (problems.length) {
      throw new UserError(`${file} does not match the recipe's adapters:\n  - ${problems.slice(0, 12).join('\n  - ')}`, {
        where: { file },
        hint: 'resume with the recipe that wrote the checkpoint (the same model.adapters targets and r)',
      });
    }
    for (const [v, key] of plan) tf.tidy(() => v.assign(tf.tensor(f.read(key).data as Float32Array, v.shape, 'float32')));
  } finally {
    f.close();
  }
}
