// nanoVLM checkpoints: a folder with `config.json` (exactly VLMConfig's fields) and `model.safetensors`
// (the state dict), as VisionLanguageModel.save_pretrained writes them, plus our sidecar
// `nanovlm-ts.json` ({format_version: 1, model: <recipe model section>}) naming the plugins.
// As safetensors.torch.save_model does, the tied head/embedding is stored once under the name that
// sorts first, `decoder.head.weight`, with `__metadata__` {"decoder.token_embedding.weight": "decoder.head.weight"};
// the RoPE buffer `decoder.rotary_embd.inv_freq` is stored too (nanoVLM's state dict has it).
// A model built with plugins that are not built in records them in the sidecar
// (`plugins: [{kind, name, module}]`, module = a path relative to the folder or a package name), and
// loadCheckpoint imports them before building the model, so the folder is usable without a recipe.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { UserError, UserErrors } from '../errors.ts';
import type { Logger, PluginContext, PluginKind, RegistryLike } from '../types.ts';
import { pluginEntries } from '../recipe/schema.ts';
import { hubCacheDir } from '../hub/config.ts';
import { VisionLanguageModel } from '../model/vlm.ts';
import {
  applyVLMConfig,
  checkVLMConfigFields,
  headImageTokenId,
  NEWER_NANOVLM_FIELDS,
  recipeModelFromVLMConfig,
  toHeadVLMConfig,
  VLM_CONFIG_DEFAULTS,
  type ConfigFormat,
  type ModelSection,
} from '../model/config.ts';
import { writeSafetensorsStreaming } from './safetensors.ts';
import { openModelWeights, WEIGHTS_FILE } from './model-weights.ts';
import { withoutInit } from '../ops.ts';
import { mergedWeight } from '../model/adapters.ts';
import { hostValues } from '../host.ts';

export const CONFIG_FILE = 'config.json';
export { WEIGHTS_FILE };
export const SIDECAR_FILE = 'nanovlm-ts.json';

/** Tied parameter -> the name nanoVLM's checkpoint stores it under (the alias sorting first). */
export const TIED_STORED_AS: Record<string, string> = {
  'decoder.token_embedding.weight': 'decoder.head.weight',
};
/** VLMConfig fields kept verbatim from a loaded config.json (informational strings and flags). */
const PASSTHROUGH_FIELDS = ['vit_model_type', 'lm_model_type', 'lm_tokenizer', 'vlm_checkpoint_path'];

function isTied(model: VisionLanguageModel): boolean {
  return model.nanovlmConfig().lm_tie_weights === true && !model.params.has('decoder.head.weight');
}

/** VLMConfig fields typed float in the dataclass */
const FLOAT_FIELDS = ['vit_dropout', 'vit_ln_eps', 'lm_rms_eps', 'lm_dropout', 'lm_attn_scaling'];

/** Python's repr of a float, as json.dumps writes it (1e-06, 0.0, 1.0). */
function pyFloat(x: number): string {
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : x < 0 ? '-Infinity' : 'NaN';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const exp = Math.floor(Math.log10(Math.abs(x)));
  if (exp < -4 || exp >= 16) {
    const [m, e] = x.toExponential().split('e');
    const n = Number(e);
    return `${m}e${n < 0 ? '-' : '+'}${String(Math.abs(n)).padStart(2, '0')}`;
  }
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}

/** json.dumps of a non-float value nested `level` deep with indent=4 (HEAD's vlm_extra_tokens is a dict) */
function pyJson(v: unknown, level: number): string {
  if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length) {
    const pad = '    '.repeat(level + 1);
    const items = Object.entries(v as Record<string, unknown>).map(([k, x]) => `${pad}${JSON.stringify(k)}: ${pyJson(x, level + 1)}`);
    return `{\n${items.join(',\n')}\n${'    '.repeat(level)}}`;
  }
  return JSON.stringify(v);
}

/** json.dumps(asdict(cfg), indent=4): float fields written as Python floats. */
export function formatVLMConfig(cfg: Record<string, unknown>): string {
  const lines = Object.entries(cfg).map(([k, v]) => {
    const isFloatField = FLOAT_FIELDS.includes(k);
    return `    ${JSON.stringify(k)}: ${isFloatField && typeof v === 'number' ? pyFloat(v) : pyJson(v, 1)}`;
  });
  return `{\n${lines.join(',\n')}\n}`;
}

/**
 * The keys (and shapes) nanoVLM's save_pretrained writes: every parameter, the tied embedding under
 * `decoder.head.weight`, and the buffers.
 */
export function stateDictKeys(params: Map<string, number[]>, buffers: Map<string, number[]>, tied: boolean): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const [name, shape] of params) out.set(tied && TIED_STORED_AS[name] ? TIED_STORED_AS[name] : name, shape);
  for (const [name, shape] of buffers) out.set(name, shape);
  return out;
}

/** The tensors to save, by stored name. */
export function stateDictToSave(model: VisionLanguageModel): Map<string, tf.Tensor> {
  const tied = isTied(model);
  const out = new Map<string, tf.Tensor>();
  const all = new Map<string, tf.Tensor>([...model.params, ...model.buffers]);
  const keys = stateDictKeys(
    new Map([...model.params].map(([n, v]) => [n, v.shape])),
    new Map([...model.buffers].map(([n, t]) => [n, t.shape])),
    tied,
  );
  const stored = new Map([...model.params.keys()].map((n) => [tied && TIED_STORED_AS[n] ? TIED_STORED_AS[n] : n, n]));
  for (const key of keys.keys()) out.set(key, all.get(stored.get(key) ?? key)!);
  return out;
}

/**
 * Write `config.json` + `model.safetensors` (+ `nanovlm-ts.json` when `sidecar` is given) into `folder`.
 * Files are written to temporary names and renamed, so a crash never leaves a half-written checkpoint file.
 */
export async function saveCheckpoint(
  model: VisionLanguageModel,
  folder: string,
  sidecar?: { model: Record<string, unknown>; plugins?: RecordedPlugin[] } | Record<string, unknown>,
): Promise<void> {
  mkdirSync(folder, { recursive: true });
  // sorted by name; each tensor is read from tfjs only when it is written (no second host copy).
  // With model.adapters: each adapted weight merged (W + delta, computed when written), the
  // adapters' own parameters left out: the folder is a plain nanoVLM checkpoint (core/model/adapters.ts)
  const entries = [...stateDictToSave(model)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const paramOf = new Map([...model.params].map(([n, v]) => [v as tf.Tensor, n]));
  const metadata: Record<string, string> = {};
  if (isTied(model)) for (const [alias, kept] of Object.entries(TIED_STORED_AS)) metadata[alias] = kept;
  const read = async (t: tf.Tensor): Promise<Float32Array> => {
    const merge = paramOf.has(t) ? mergedWeight(model, paramOf.get(t)!) : undefined;
    if (!merge) return (await t.data()) as Float32Array;
    const merged = merge();
    try {
      return (await merged.data()) as Float32Array;
    } finally {
      merged.dispose();
    }
  };
  await writeSafetensorsStreaming(
    join(folder, WEIGHTS_FILE),
    entries.filter(([, t]) => !(paramOf.has(t) && mergedWeight(model, paramOf.get(t)!) === null)).map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: () => read(t) })),
    Object.keys(metadata).length ? metadata : null,
  );
  writeAtomic(join(folder, CONFIG_FILE), formatVLMConfig(model.nanovlmConfig()));
  if (sidecar) {
    let modelSection = 'model' in sidecar && typeof sidecar.model === 'object' ? sidecar.model : sidecar;
    // the weights are merged: the folder's model has no adapters
    if (modelSection && typeof modelSection === 'object' && 'adapters' in modelSection) {
      const { adapters: _merged, ...rest } = modelSection as Record<string, unknown>;
      modelSection = rest;
    }
    const plugins = 'model' in sidecar && Array.isArray(sidecar.plugins) && sidecar.plugins.length ? { plugins: sidecar.plugins } : {};
    writeAtomic(join(folder, SIDECAR_FILE), JSON.stringify({ format_version: 1, model: modelSection, ...plugins }, null, 2) + '\n');
  }
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/**
 * Load `folder/model.safetensors` (or its shards: model.safetensors.index.json) into the model's variables. Every expected parameter must be present
 * (the tied embedding as `decoder.head.weight` or `decoder.token_embedding.weight`) with its shape;
 * unexpected tensors are an error (as PyTorch's strict load). NaN/Inf values are warned about.
 */
export function loadWeights(model: VisionLanguageModel, folder: string, log?: Pick<Logger, 'warn'>): void {
  const f = openModelWeights(folder, 'a nanoVLM checkpoint folder has');
  const file = f.header.path;
  try {
    const tied = isTied(model);
    // 1. plan: where each parameter comes from; check names and shapes before touching any variable
    const plan: [tf.Variable, string][] = [];
    const problems: string[] = [];
    const used = new Set<string>();
    const adapterVars = model.adapterParams(); // model.adapters: never in a nanoVLM checkpoint (core/model/adapters.ts)
    for (const [name, v] of model.params) {
      if (adapterVars.has(v)) continue;
      const candidates = [name, ...(tied && TIED_STORED_AS[name] ? [TIED_STORED_AS[name]] : [])];
      const found = candidates.find((c) => f.has(c));
      if (!found) {
        problems.push(`missing tensor "${candidates.join('" or "')}" (shape [${v.shape}])`);
        continue;
      }
      candidates.forEach((c) => f.has(c) && used.add(c));
      const shape = f.header.entries.get(found)!.shape;
      if (shape.join() !== v.shape.join()) {
        problems.push(`tensor "${found}": expected shape [${v.shape}], found [${shape}]`);
        continue;
      }
      plan.push([v, found]);
    }
    for (const [name, t] of model.buffers) {
      if (!f.has(name)) continue; // buffers are recomputed; a file without them is fine
      used.add(name);
      const shape = f.header.entries.get(name)!.shape;
      if (shape.join() !== t.shape.join()) problems.push(`buffer "${name}": expected shape [${t.shape}], found [${shape}]`);
    }
    const unexpected = f.names.filter((n) => !used.has(n));
    if (unexpected.length) problems.push(`unexpected tensors: ${unexpected.slice(0, 8).join(', ')}${unexpected.length > 8 ? ` (+${unexpected.length - 8} more)` : ''}`);
    if (problems.length) {
      const shown = problems.length > 12 ? [...problems.slice(0, 12), `... and ${problems.length - 12} more`] : problems;
      throw new UserError(`${file} does not match the model built from its config:\n  - ${shown.join('\n  - ')}`, {
        where: { file },
        hint: 'the checkpoint and config.json (or nanovlm-ts.json) disagree; re-save the checkpoint or fix the config',
      });
    }
    // 2. load tensor by tensor (one host copy at a time)
    for (const [v, stored] of plan) {
      const t = f.read(stored);
      const data = t.data as Float32Array;
      if (data.some((x) => !Number.isFinite(x))) log?.warn(`${file}: tensor "${stored}" contains NaN or Inf values`);
      tf.tidy(() => v.assign(tf.tensor(data, v.shape, 'float32')));
    }
    // 3. inv_freq is recomputed from the config; a stored copy that disagrees means a config mismatch
    for (const [name, t] of model.buffers) {
      if (!f.has(name)) continue;
      const stored = f.read(name).data as Float32Array;
      const ours = hostValues(t, name) as Float32Array; // a host-built buffer (core/host.ts)
      const worst = stored.reduce((m, x, i) => Math.max(m, Math.abs(x - ours[i]) / Math.max(Math.abs(ours[i]), 1e-30)), 0);
      if (!(worst <= 1e-5)) log?.warn(`${file}: stored "${name}" differs from the one computed from config.json (relative ${worst.toExponential(2)}); lm_re_base or head dim may not match the weights`);
    }
  } finally {
    f.close();
  }
}

/** Recipe model section of a checkpoint folder: from nanovlm-ts.json, else mapped from config.json. */
export function checkpointModelSection(folder: string, registry: RegistryLike): { section: ModelSection; config: Record<string, unknown>; format: ConfigFormat } {
  const cfgFile = join(folder, CONFIG_FILE);
  if (!existsSync(cfgFile)) {
    throw new UserError(`${cfgFile} not found: ${folder} is not a nanoVLM checkpoint folder (config.json + model.safetensors)`, {
      where: { file: cfgFile },
    });
  }
  const raw = parseJson(cfgFile);
  const format = checkVLMConfigFields(raw, cfgFile);
  // HEAD: its defaults for any missing field (the shapes are mapped as v0.1's: same modules)
  const config = format === 'head' ? toHeadVLMConfig(raw) : raw;
  const sidecarFile = join(folder, SIDECAR_FILE);
  let section: ModelSection;
  if (existsSync(sidecarFile)) {
    const side = parseJson(sidecarFile);
    const m = side.model as Record<string, any> | undefined;
    if (!m || !m.vision || !m.projector || !m.decoder) {
      throw new UserError(`${sidecarFile}: "model" must have vision, projector and decoder entries`, { where: { file: sidecarFile } });
    }
    section = {
      vision: folderEntry(m.vision, 'vision', registry, config, cfgFile),
      projector: folderEntry(m.projector, 'projector', registry, config, cfgFile),
      decoder: folderEntry(m.decoder, 'decoder', registry, config, cfgFile),
    };
  } else {
    section = recipeModelFromVLMConfig(config, registry, cfgFile);
  }
  return { section, config, format };
}

/**
 * A component entry for weights that come from a checkpoint folder: `from` dropped (the backbones'
 * Hub weights are never resolved nor downloaded: the folder holds every weight, as nanoVLM's
 * from_pretrained), and, for a plugin declaring nanoVLM's config fields (Plugin.nanovlm.config),
 * those fields taken from the folder's config.json, the truth for the shapes (a recipe that took
 * them from a Hub backbone's config does not list them).
 */
export function folderEntry(entry: Record<string, unknown>, kind: PluginKind, registry: RegistryLike, config: Record<string, unknown>, cfgFile: string): { use: string; [k: string]: unknown } {
  const e = Object.fromEntries(Object.entries(entry).filter(([k]) => k !== 'from')) as { use: string; [k: string]: unknown };
  const plugin = registry.plugin(kind, e.use);
  return plugin?.nanovlm?.config ? applyVLMConfig(e, plugin, config, cfgFile) : e;
}

function parseJson(file: string): Record<string, unknown> {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8'));
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v;
  } catch (e) {
    throw new UserError(`${file} is not valid JSON: ${(e as Error).message}`, { where: { file } });
  }
}

/** A plugin that a saved model needs and nanovlm-ts does not include. */
export interface RecordedPlugin {
  kind: PluginKind;
  name: string;
  /** the module: a path relative to the model folder (posix separators), or an npm package name */
  module: string;
}

/**
 * The plugins of a model section (`vision`, `projector`, `decoder`, `tokenizer`, `image_processor`
 * entries) that came from user modules, as the sidecar of a folder written to `folder` records them.
 */
export function recordPlugins(section: Record<string, unknown>, registry: RegistryLike, folder: string): RecordedPlugin[] {
  const out: RecordedPlugin[] = [];
  for (const { kind, entry } of pluginEntries({ model: section })) {
    const name = entry.use as string;
    const src = registry.source(kind, name);
    if (!src || src === 'built-in') continue;
    const module = isAbsolute(src) ? relative(resolve(folder), src).split(sep).join('/') : src;
    if (!out.some((p) => p.kind === kind && p.name === name)) out.push({ kind, name, module });
  }
  return out;
}

/** The plugins a checkpoint folder's sidecar records (empty for a plain nanoVLM folder). */
export function recordedPlugins(folder: string): RecordedPlugin[] {
  const file = join(folder, SIDECAR_FILE);
  if (!existsSync(file)) return [];
  const list = parseJson(file).plugins;
  // anything else than {kind, name, module} entries is ignored: the model's plugins then stay unknown
  if (!Array.isArray(list)) return [];
  return list.filter((p): p is RecordedPlugin => !!p && typeof p.kind === 'string' && typeof p.name === 'string' && typeof p.module === 'string');
}

/** `child` is `dir` or below it */
const isInside = (child: string, dir: string) => {
  const r = relative(resolve(dir), resolve(child));
  return r === '' || (!r.startsWith('..') && !isAbsolute(r));
};

/** a recorded module: a path (resolved against the folder) unless it is a package name */
const isRecordedPath = (m: string) => m.startsWith('.') || isAbsolute(m) || /\.[mc]?[jt]s$/.test(m) && !m.startsWith('@');

/**
 * Import the plugin modules a checkpoint folder records, for the plugins the registry does not have
 * yet (`--plugins` may have loaded them already, from wherever the user keeps them). Code that comes
 * with a model is never run automatically: a recorded file inside the model folder or the Hub cache
 * (what a download brings) is refused, with the --plugins line that loads it if the user trusts it.
 */
export async function loadRecordedPlugins(folder: string, registry: RegistryLike): Promise<void> {
  const sidecarFile = join(folder, SIDECAR_FILE);
  for (const p of recordedPlugins(folder)) {
    if (registry.has(p.kind, p.name)) continue;
    const path = isRecordedPath(p.module) ? resolve(folder, p.module) : null;
    if (path && (isInside(path, folder) || isInside(path, hubCacheDir()))) {
      throw new UserError(`this model needs the ${p.kind} plugin "${p.name}" from ${p.module}, a file that came with the model: plugin code inside a model folder (or the Hub cache) is never run automatically`, {
        where: { file: sidecarFile },
        hint: `read it first; if you trust it, load it yourself: --plugins ${path}`,
      });
    }
    if (path && !existsSync(path)) {
      throw new UserError(`this model needs the ${p.kind} plugin "${p.name}", which is not built in: its module ${p.module} (recorded in ${SIDECAR_FILE}, relative to the model folder) is not at ${path}`, {
        where: { file: sidecarFile },
        hint: `pass the plugin module on the command line: --plugins <file.ts | package> (vlm generate, eval, compare), or put the module back at ${path}`,
      });
    }
    await registry.loadModules([{ spec: path ?? p.module, baseDir: folder, where: { file: sidecarFile } }]);
    if (!registry.has(p.kind, p.name)) {
      throw new UserError(`${p.module} (recorded in ${SIDECAR_FILE}) no longer provides the ${p.kind} plugin "${p.name}"`, {
        where: { file: sidecarFile },
        hint: 'pass the module that provides it with --plugins <file.ts | package>',
      });
    }
  }
}

/**
 * Build the model a checkpoint folder describes through the registry (vision, then decoder, then the
 * projector with both built), then load its weights.
 */
export async function loadCheckpoint(
  folder: string,
  registry: RegistryLike,
  context: Partial<Omit<PluginContext, 'registry'>> = {},
): Promise<VisionLanguageModel> {
  await loadRecordedPlugins(folder, registry);
  const { section, config, format } = checkpointModelSection(folder, registry);
  let model: VisionLanguageModel;
  try {
    model = await withoutInit(() => buildModel(section, registry, context)); // every weight is loaded below
  } catch (e) {
    throw blameFolder(e, folder);
  }
  try {
    for (const k of PASSTHROUGH_FIELDS) if (typeof config[k] === 'string') model.configOverrides[k] = config[k];
    if (format === 'head') {
      // nanoVLM HEAD: image tokens are placeholders in the text; its own fields are kept for saving
      model.imageTokenId = headImageTokenId(config, join(folder, CONFIG_FILE));
      for (const k of NEWER_NANOVLM_FIELDS) model.configOverrides[k] = config[k];
    }
    loadWeights(model, folder, context.log);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

/** A model section that cannot be built (unknown plugin, inconsistent shapes): say which folder describes it. */
function blameFolder(e: unknown, folder: string): unknown {
  const list = e instanceof UserErrors ? e.errors : e instanceof UserError ? [e] : [];
  for (const u of list) {
    if (u.where.file) continue;
    u.where.file = folder;
    if (!u.hint) (u as { hint?: string }).hint = `${CONFIG_FILE} / ${SIDECAR_FILE} there describe a model that cannot be built; re-save the checkpoint or fix them`;
  }
  return e;
}

const quietLog: Logger = { info: () => {}, warn: (m) => console.warn(m), debug: () => {} };

/** Build vision, decoder, then projector (given both) from a model section, and wrap them. */
export async function buildModel(
  section: ModelSection,
  registry: RegistryLike,
  context: Partial<Omit<PluginContext, 'registry'>> = {},
): Promise<VisionLanguageModel> {
  const base: Omit<PluginContext, 'registry'> = {
    recipe: context.recipe ?? { model: section },
    recipeDir: context.recipeDir ?? process.cwd(),
    yamlPath: 'model',
    seed: context.seed ?? 0,
    log: context.log ?? quietLog,
    built: {},
  };
  const vision = await registry.create('vision', section.vision, { ...base, yamlPath: 'model.vision' });
  const decoder = await registry.create('decoder', section.decoder, { ...base, yamlPath: 'model.decoder', built: { vision } });
  const projector = await registry.create('projector', section.projector, {
    ...base,
    yamlPath: 'model.projector',
    built: { vision, decoder },
  });
  return new VisionLanguageModel({ vision, projector, decoder });
}
