// Loading a Hugging Face backbone checkpoint into a model plugin (nanoVLM's ViT.from_pretrained and
// LanguageModel.from_pretrained): the plumbing every backbone plugin shares. The plugin keeps what
// is its own next to its model: the config table (Hub config field -> option) and the key table
// (Hub tensor name -> parameter name, torchtune's _FROM_HF).
//   resolveBackbone   `from:` (repo id or folder) -> a local folder with config.json + model.safetensors
//                     (or a sharded model.safetensors.index.json + shards, core/weights/model-weights.ts)
//   readBackboneConfig / localBackboneConfig   its config.json (clear errors; describe() reads local ones only)
//   expandBlocks      a key table with `{i}` rows -> one row per block
//   loadHubTensors    every tensor checked (present, shape) before any is loaded, then assigned
//   backboneConfig    the plugin's defaults <- the checkpoint's shapes <- the recipe's options
//   buildBackbone     build without random init, load, dispose on failure
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import { mergeHubShapes } from '../model/config.ts';
import { withoutInit } from '../ops.ts';
import type { PluginContext } from '../types.ts';
import { isWeightsFile, openModelWeights } from '../weights/model-weights.ts';
import { resolveSource } from './index.ts';

/**
 * A backbone plugin's full config: its `defaults`, then the shapes of the checkpoint's config.json
 * (`hub`, with `from`; an option the recipe sets must agree with it, except the `soft` ones), then
 * the options the recipe sets (`from` and unset ones aside); `model_type` names the checkpoint.
 */
export function backboneConfig<C extends { model_type: string }>(
  defaults: C,
  options: Record<string, unknown>,
  hub: Record<string, unknown> | null,
  yamlPath: string,
  from?: string,
  soft: string[] = ['dropout'],
): C {
  const explicit = Object.fromEntries(Object.entries(options).filter(([k, v]) => k !== 'from' && v !== undefined && v !== null));
  const merged = hub ? mergeHubShapes(explicit, hub, { yamlPath, configFile: `${from}/config.json` }, soft) : explicit;
  return { ...defaults, ...merged, model_type: from ?? defaults.model_type } as C;
}

/** `from:` of a backbone: a local folder (relative to the recipe) or a Hub repo id, downloaded into the cache. */
export async function resolveBackbone(from: string, ctx: Pick<PluginContext, 'recipeDir' | 'yamlPath' | 'log'>): Promise<string> {
  return resolveSource(from, {
    baseDir: ctx.recipeDir, // a relative folder resolves against the recipe
    repoType: 'model',
    files: (p) => p === 'config.json' || isWeightsFile(p), // the single file or the index + shards
    log: (line) => ctx.log.info(`${ctx.yamlPath}: ${line}`),
  });
}

/** The folder's config.json; `what` names the checkpoint kind in errors ("a Llama checkpoint folder needs config.json"). */
export function readBackboneConfig(folder: string, what: string): Record<string, unknown> {
  const file = join(folder, 'config.json');
  if (!existsSync(file)) throw new UserError(`${file} not found: a ${what} checkpoint folder needs config.json`, { where: { file } });
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file} is not valid JSON: ${(e as Error).message}`, { where: { file } });
  }
}

/** For describe() (no download): the config.json of a local `from:` folder, or null. */
export function localBackboneConfig(from: string | null | undefined, what: string): Record<string, unknown> | null {
  return from && existsSync(join(from, 'config.json')) ? readBackboneConfig(from, what) : null;
}

/** `[hf, ours]` rows whose names hold `{i}` -> one row per block 0..nBlocks-1 (other rows once). */
export function expandBlocks(table: readonly (readonly [string, string])[], nBlocks: number): [string, string][] {
  const out: [string, string][] = [];
  for (const [hf, ours] of table) {
    if (!hf.includes('{i}')) out.push([hf, ours]);
    else for (let i = 0; i < nBlocks; i++) out.push([hf.replaceAll('{i}', String(i)), ours.replaceAll('{i}', String(i))]);
  }
  return out;
}

/** One parameter loaded from the checkpoint: `from` tensors concatenated along dim 0 (torch.cat(..., 0)) into `to`. */
export interface HubTensor {
  from: string[];
  to: string;
  /** used instead of `from` when the checkpoint lacks from[0] (an untied head saved without lm_head) */
  orElse?: string[];
}

export interface LoadHubOptions {
  /** the checkpoint kind, for errors: `missing tensor "x" (a ${what} checkpoint has it)` */
  what: string;
  /**
   * Parameters that may have more rows than the checkpoint's tensor (a recipe vocabulary larger
   * than the checkpoint's): `extendRows(to, data, want)` returns the parameter's full data, the
   * checkpoint's rows first.
   */
  extendable?: (to: string) => boolean;
  extendRows?: (to: string, data: Float32Array, want: number[]) => Float32Array;
}

/**
 * Load `table` from `folder`'s weights (model.safetensors, or sharded) into `params`: first every tensor is checked
 * (present, shape; leading 1s of the parameter's shape ignored: [N, D] fills [1, N, D]), then
 * loaded tensor by tensor, so a bad checkpoint changes nothing.
 */
export function loadHubTensors(params: Map<string, tf.Variable>, folder: string, table: HubTensor[], opts: LoadHubOptions): void {
  const f = openModelWeights(folder, `a ${opts.what} checkpoint folder has`);
  const file = f.header.path;
  try {
    const names = (t: HubTensor) => (t.orElse && !f.has(t.from[0]) ? t.orElse : t.from);
    const shapeOf = (t: HubTensor): number[] => {
      const shapes = names(t).map((hf) => {
        if (!f.has(hf)) throw new UserError(`${file}: missing tensor "${hf}" (a ${opts.what} checkpoint has it)`, { where: { file } });
        return f.header.entries.get(hf)!.shape;
      });
      return [shapes.reduce((a, s) => a + s[0], 0), ...shapes[0].slice(1)];
    };
    const label = (t: HubTensor) => (names(t).length === 1 ? `"${names(t)[0]}"` : `cat([${names(t).map((p) => `"${p}"`).join(', ')}])`);
    const squeeze = (s: number[]) => s.slice(s.findIndex((d) => d !== 1) === -1 ? s.length : s.findIndex((d) => d !== 1));
    // 1. every tensor present with the right shape before anything is loaded
    for (const t of table) {
      const shape = shapeOf(t);
      const want = params.get(t.to)!.shape;
      const extendable = !!opts.extendable?.(t.to) && shape.length === 2 && want.length === 2 && shape[0] < want[0] && shape[1] === want[1];
      if (!extendable && squeeze(shape).join() !== squeeze(want).join()) {
        throw new UserError(`${file}: ${label(t)} has shape [${shape}], ${t.to} expects [${want}]`, { where: { file } });
      }
    }
    // 2. load tensor by tensor
    for (const t of table) {
      const parts = names(t).map((hf) => f.read(hf).data as Float32Array);
      let data = parts[0];
      if (parts.length > 1) {
        data = new Float32Array(parts.reduce((a, d) => a + d.length, 0)); // torch.cat(parts, dim=0)
        let o = 0;
        for (const d of parts) {
          data.set(d, o);
          o += d.length;
        }
      }
      const v = params.get(t.to)!;
      if (data.length < v.size) data = opts.extendRows!(t.to, data, v.shape);
      tf.tidy(() => v.assign(tf.tensor(data, v.shape, 'float32')));
    }
  } finally {
    f.close();
  }
}

/** Build a backbone: plainly, or (with a checkpoint folder) without random init, then `load` it; disposed if loading fails. */
export async function buildBackbone<M extends { dispose(): void }>(folder: string | null, build: () => M, load: (model: M, folder: string) => void): Promise<M> {
  if (!folder) return build();
  const model = await withoutInit(build); // weights loaded below
  try {
    load(model, folder);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}
