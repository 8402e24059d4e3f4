// The model a recipe describes, from its plugins' describe() alone (no weights, no download): each
// module's description in nanoVLM's order (vision_encoder, MP, decoder), and the linear layers an
// adapter's targets select from. `vlm inspect` counts parameters with it (core/commands/inspect.ts);
// recipe validation checks model.adapters' targets with it (core/recipe/validate.ts), so that a
// target matching no layer is reported by `vlm validate`, before anything is built.
import type { ModuleDescription, ModulePeers } from '../plugin.ts';
import type { Registry } from '../registry.ts';
import type { PluginKind } from '../types.ts';

/** nanoVLM's parameter-name prefix of each module */
export const MODULE_PREFIX: Record<string, string> = { vision_encoder: 'vision_encoder.', MP: 'MP.', decoder: 'decoder.' };

export interface DescribedModule {
  /** nanoVLM's module prefix without the dot: vision_encoder, MP, decoder */
  module: string;
  /** the plugin's name, '-' when the recipe names none */
  plugin: string;
  /** null where it cannot be described from the recipe (note says why) */
  desc: ModuleDescription | null;
  note?: string;
}

/** Describe model.vision, model.projector and model.decoder (each plugin's describe gets the peers described before it). */
export function describeModules(recipe: Record<string, any>, registry: Registry): DescribedModule[] {
  const m = recipe.model ?? {};
  const peers: ModulePeers = {};
  const describe = (kind: PluginKind, key: string, module: string): DescribedModule => {
    const entry = m[key];
    if (!entry) return { module, plugin: '-', desc: null, note: m.from ? `comes from model.from (${m.from})` : 'not in the recipe' };
    const plugin = registry.get(kind, entry.use);
    if (!plugin.describe) return { module, plugin: entry.use, desc: null, note: `plugin ${entry.use} has no describe(): count unknown until it is built` };
    const { use: _u, ...options } = entry;
    try {
      return { module, plugin: entry.use, desc: plugin.describe(options, peers) };
    } catch (e) {
      return { module, plugin: entry.use, desc: null, note: `describe() failed: ${(e as Error).message}` };
    }
  };
  const v = describe('vision', 'vision', 'vision_encoder');
  if (v.desc?.hiddenDim !== undefined && v.desc.numTokens !== undefined) peers.vision = { hiddenDim: v.desc.hiddenDim, numTokens: v.desc.numTokens };
  const d = describe('decoder', 'decoder', 'decoder');
  if (d.desc?.hiddenDim !== undefined) peers.decoder = { hiddenDim: d.desc.hiddenDim };
  const p = describe('projector', 'projector', 'MP');
  return [v, p, d];
}

/**
 * The model's linear layers (full names, weight shapes [out, in]), or null when a module could not
 * be described or does not say which its linear layers are (ModuleDescription.linearLayers unset).
 * partial: those of the modules that could, instead of null (vlm inspect's counts).
 */
export function linearLayersOf(modules: DescribedModule[], opts: { partial?: boolean } = {}): { name: string; shape: number[] }[] | null {
  if (!opts.partial && modules.some((x) => !x.desc?.linearLayers)) return null;
  return modules.flatMap(({ module, desc }) => (desc?.linearLayers ?? []).map((local) => ({ name: MODULE_PREFIX[module] + local, shape: desc!.params[`${local}.weight`] })));
}
