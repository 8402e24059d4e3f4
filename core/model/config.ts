// nanoVLM v0.1's VLMConfig (models/config.py) as data, and how a config.json becomes a recipe model
// section: each plugin that builds nanoVLM's component declares which VLMConfig fields are its
// options (Plugin.nanovlm.config, next to the plugin); core/ names none of them. A checkpoint's config.json
// holds exactly these fields, in this order, so PyTorch `VLMConfig(**json)` accepts it.
import { UserError } from '../errors.ts';
import { closest } from '../recipe/did-you-mean.ts';
import { NANOVLM_HEAD_EXTRA_TOKENS } from '../data/image-string.ts';
import type { NanovlmFormat, Plugin } from '../plugin.ts';
import type { PluginKind, RegistryLike } from '../types.ts';

/** VLMConfig defaults, field order as in the dataclass. */
export const VLM_CONFIG_DEFAULTS = {
  vit_hidden_dim: 768,
  vit_inter_dim: 4 * 768,
  vit_patch_size: 16,
  vit_img_size: 224,
  vit_n_heads: 12,
  vit_dropout: 0.0,
  vit_n_blocks: 12,
  vit_ln_eps: 1e-6,
  vit_cls_flag: false,
  vit_model_type: 'google/siglip-base-patch16-224',

  lm_hidden_dim: 576,
  lm_inter_dim: 1536,
  lm_rms_eps: 1e-5,
  lm_re_base: 100000,
  lm_max_position_embeddings: 8192,
  lm_vocab_size: 49152,
  lm_n_heads: 9,
  lm_n_kv_heads: 3,
  lm_dropout: 0.0,
  lm_n_blocks: 30,
  lm_attn_scaling: 1.0,
  lm_max_length: 128 - 49,
  lm_use_tokens: false,
  lm_tie_weights: true,
  lm_model_type: 'HuggingFaceTB/SmolLM2-135M',
  lm_tokenizer: 'HuggingFaceTB/cosmo2-tokenizer',
  lm_eos_token_id: 0,

  mp_pixel_shuffle_factor: 2,

  vlm_load_backbone_weights: true,
  vlm_checkpoint_path: 'checkpoints/nanoVLM-222M',
};
export type VLMConfig = typeof VLM_CONFIG_DEFAULTS;
export const VLM_CONFIG_FIELDS = Object.keys(VLM_CONFIG_DEFAULTS) as (keyof VLMConfig)[];

/** Exactly the VLMConfig fields, in order: values from `parts`, defaults for the rest, unknown keys dropped. */
export function toVLMConfig(parts: Record<string, unknown>): VLMConfig {
  const out: Record<string, unknown> = {};
  for (const f of VLM_CONFIG_FIELDS) out[f] = f in parts && parts[f] !== undefined ? parts[f] : VLM_CONFIG_DEFAULTS[f];
  return out as VLMConfig;
}

/**
 * Fields that nanoVLM's VLMConfig gained after v0.1 (v0.2 731d8c6 and HEAD 4e0c096, models/config.py).
 * Their presence means a checkpoint of the newer model family (image tokens as placeholders in the
 * text, image splitting, chat template).
 */
export const NEWER_NANOVLM_FIELDS = [
  'lm_base_vocab_size',
  'extra_token_amount',
  'lm_chat_template',
  'mp_image_token_length',
  'max_img_size',
  'resize_to_max_side_len',
  'vlm_extra_tokens',
  'hf_repo_name',
] as const;

/** HEAD's default ChatML template (VLMConfig.lm_chat_template) */
export const NANOVLM_HEAD_CHAT_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/** nanoVLM HEAD (4e0c096)'s VLMConfig defaults, field order as in the dataclass (the 450M model). */
export const HEAD_VLM_CONFIG_DEFAULTS: Record<string, unknown> = {
  vit_hidden_dim: 768,
  vit_inter_dim: 4 * 768,
  vit_patch_size: 16,
  vit_img_size: 512,
  vit_n_heads: 12,
  vit_dropout: 0.0,
  vit_n_blocks: 12,
  vit_ln_eps: 1e-6,
  vit_cls_flag: false,
  vit_model_type: 'google/siglip2-base-patch16-512',
  lm_hidden_dim: 960,
  lm_inter_dim: 2560,
  lm_rms_eps: 1e-5,
  lm_re_base: 100000,
  lm_max_position_embeddings: 8192,
  lm_base_vocab_size: 49152,
  extra_token_amount: 66,
  lm_vocab_size: 49152 + 66,
  lm_n_heads: 15,
  lm_n_kv_heads: 5,
  lm_dropout: 0.0,
  lm_n_blocks: 32,
  lm_attn_scaling: 1.0,
  lm_max_length: 4096,
  lm_use_tokens: false,
  lm_tie_weights: true,
  lm_model_type: 'HuggingFaceTB/SmolLM2-360M-Instruct',
  lm_tokenizer: 'HuggingFaceTB/SmolLM2-360M-Instruct',
  lm_chat_template: NANOVLM_HEAD_CHAT_TEMPLATE,
  mp_pixel_shuffle_factor: 4,
  mp_image_token_length: 64,
  max_img_size: 2048,
  resize_to_max_side_len: true,
  vlm_extra_tokens: NANOVLM_HEAD_EXTRA_TOKENS,
  vlm_load_backbone_weights: true,
  vlm_checkpoint_path: 'checkpoints',
  hf_repo_name: 'nanoVLM',
};
export const HEAD_VLM_CONFIG_FIELDS = Object.keys(HEAD_VLM_CONFIG_DEFAULTS);

/** Exactly HEAD's VLMConfig fields, in order: values from `parts`, HEAD's defaults for the rest. */
export function toHeadVLMConfig(parts: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of HEAD_VLM_CONFIG_FIELDS) out[f] = f in parts && parts[f] !== undefined ? parts[f] : HEAD_VLM_CONFIG_DEFAULTS[f];
  return out;
}

/** The nanoVLM version a config.json was written by, as far as nanovlm-ts reads it. */
export type ConfigFormat = 'v0.1' | 'head';

function unknownFields(file: string, unknown: string[], fields: string[], version: string): UserError {
  const guesses = unknown.map((k) => {
    const c = closest(k, fields);
    return c ? `${k} (did you mean ${c}?)` : k;
  });
  return new UserError(`${file}: unknown field${unknown.length > 1 ? 's' : ''} ${guesses.join(', ')}: not a field of nanoVLM ${version}'s VLMConfig`, {
    where: { file },
    hint: `remove ${unknown.length > 1 ? 'them' : 'it'} or fix the name; the fields are ${fields.join(', ')}`,
  });
}

/**
 * Which nanoVLM wrote a config.json: v0.1's VLMConfig, or HEAD's (4e0c096: the newer fields, no
 * lm_eos_token_id). A field neither knows is refused (ignoring it could run the model with the wrong
 * input format), and so is v0.2 (731d8c6: newer fields beside lm_eos_token_id), which neither path implements.
 */
export function checkVLMConfigFields(cfg: Record<string, unknown>, file = 'config.json'): ConfigFormat {
  const newer = Object.keys(cfg).filter((k) => (NEWER_NANOVLM_FIELDS as readonly string[]).includes(k));
  if (newer.length && 'lm_eos_token_id' in cfg) {
    throw new UserError(
      `${file} is a nanoVLM v0.2 checkpoint (it has ${newer.join(', ')} beside lm_eos_token_id): nanovlm-ts reads nanoVLM v0.1 and HEAD (4e0c096) checkpoints; ` +
        `v0.2's input format (one image block per sample, no splitting) is neither`,
      { where: { file }, hint: 'use a nanoVLM v0.1 or HEAD checkpoint' },
    );
  }
  const format: ConfigFormat = newer.length ? 'head' : 'v0.1';
  const fields = format === 'head' ? HEAD_VLM_CONFIG_FIELDS : (VLM_CONFIG_FIELDS as string[]);
  const unknown = Object.keys(cfg).filter((k) => !fields.includes(k));
  if (unknown.length) throw unknownFields(file, unknown, fields, format === 'head' ? 'HEAD' : 'v0.1');
  return format;
}

/**
 * HEAD: the id of `<|image|>`, whose positions take the image embeddings. HEAD's tokenizer
 * (get_tokenizer with extra_special_tokens) appends vlm_extra_tokens after the base vocabulary in
 * order, so it is lm_base_vocab_size + the position of image_token. Also checks that the
 * vocabulary holds them and that mp_image_token_length is what the projector makes.
 */
export function headImageTokenId(cfg: Record<string, unknown>, file = 'config.json'): number {
  const c = toHeadVLMConfig(cfg);
  const extra = c.vlm_extra_tokens as Record<string, string>;
  const keys = extra && typeof extra === 'object' ? Object.keys(extra) : [];
  const at = keys.indexOf('image_token');
  if (at < 0) throw new UserError(`${file}: vlm_extra_tokens has no image_token`, { where: { file } });
  const base = Number(c.lm_base_vocab_size);
  if (!(Number(c.lm_vocab_size) >= base + keys.length)) {
    throw new UserError(`${file}: lm_vocab_size ${c.lm_vocab_size} cannot hold lm_base_vocab_size ${base} + ${keys.length} vlm_extra_tokens`, { where: { file } });
  }
  const side = Number(c.vit_img_size) / Number(c.vit_patch_size);
  const tokens = (side * side) / Number(c.mp_pixel_shuffle_factor) ** 2;
  if (tokens !== c.mp_image_token_length) {
    throw new UserError(`${file}: mp_image_token_length ${c.mp_image_token_length}, but the projector makes ${tokens} tokens per image ((vit_img_size / vit_patch_size)^2 / mp_pixel_shuffle_factor^2)`, { where: { file } });
  }
  return base + at;
}

export type ModelSection = {
  vision: { use: string; [k: string]: unknown };
  projector: { use: string; [k: string]: unknown };
  decoder: { use: string; [k: string]: unknown };
};

/** The registered plugin of `kind` that declares nanoVLM interoperability (Plugin.nanovlm) for `format`, or a clear error. */
export function nanovlmPlugin(registry: RegistryLike, kind: PluginKind, format: NanovlmFormat = 'v0.1'): Plugin {
  const p = registry.nanovlmPlugin(kind, format);
  if (!p) {
    const head = format === 'head';
    throw new UserError(`no ${kind} plugin declares nanoVLM ${head ? 'HEAD' : ''} interoperability (\`nanovlm:${head ? ' {head: ...}' : ''}\` in its definition), so a plain nanoVLM ${head ? 'HEAD ' : ''}checkpoint cannot be built`, {
      hint: `register the built-in plugins, or a plugin that declares \`nanovlm: ${head ? '{head: {config: {...}}}' : '{config: {...}}'}\``,
    });
  }
  return p;
}

/**
 * `entry` with the HEAD VLMConfig fields its plugin maps (`nanovlm.head.config`) set from `cfg`
 * (missing fields: HEAD's defaults, toHeadVLMConfig).
 */
export function applyHeadVLMConfig(entry: { use: string; [k: string]: unknown }, plugin: Plugin, cfg: Record<string, unknown>): { use: string; [k: string]: unknown } {
  const out = { ...entry };
  const c = toHeadVLMConfig(cfg);
  for (const [field, option] of Object.entries(plugin.nanovlm?.head?.config ?? {})) if (c[field] !== undefined) out[option] = c[field];
  return out;
}

/**
 * `entry` with the VLMConfig fields its plugin maps (`nanovlm.config`) set from `cfg` (missing
 * fields: VLMConfig's defaults); fields of a type VLMConfig does not have are refused.
 */
export function applyVLMConfig(entry: { use: string; [k: string]: unknown }, plugin: Plugin, cfg: Record<string, unknown>, file = 'config.json'): { use: string; [k: string]: unknown } {
  const out = { ...entry };
  for (const [field, option] of Object.entries(plugin.nanovlm?.config ?? {})) {
    const d = (VLM_CONFIG_DEFAULTS as Record<string, unknown>)[field];
    const v = field in cfg ? cfg[field] : d;
    if (v === undefined) continue;
    if (d !== undefined && typeof d !== typeof v) {
      throw new UserError(`${file}: field ${field} should be a ${typeof d}, found ${JSON.stringify(v)}`, { where: { file } });
    }
    out[option] = v;
  }
  return out;
}

/** A plain nanoVLM config.json -> the recipe model section that builds the same model (with the plugins declaring `nanovlm`). */
export function recipeModelFromVLMConfig(cfg: Record<string, unknown>, registry: RegistryLike, file = 'config.json'): ModelSection {
  if (cfg.lm_use_tokens === true) {
    throw new UserError(`${file}: lm_use_tokens = true is not a VLM checkpoint (nanoVLM's VLM uses embeddings)`, {
      where: { file },
    });
  }
  const entry = (kind: PluginKind) => {
    const p = nanovlmPlugin(registry, kind);
    return applyVLMConfig({ use: p.name }, p, cfg, file);
  };
  return { vision: entry('vision'), projector: entry('projector'), decoder: entry('decoder') };
}

/**
 * Merge shape fields read from a Hub backbone's config.json into plugin options. A field the
 * recipe set explicitly must agree with the Hub config (otherwise a UserError naming both);
 * unset fields take the Hub value. `soft` fields (e.g. dropout) keep the recipe value when set.
 */
export function mergeHubShapes<T extends Record<string, unknown>>(
  options: T,
  hub: Record<string, unknown>,
  where: { yamlPath: string; configFile: string },
  soft: string[] = [],
): T {
  const out: Record<string, unknown> = { ...options };
  for (const [k, v] of Object.entries(hub)) {
    if (v === undefined) continue;
    if (out[k] === undefined || out[k] === null) out[k] = v;
    else if (out[k] !== v && !soft.includes(k)) {
      throw new UserError(
        `${k}: the recipe sets ${JSON.stringify(out[k])} but the backbone's ${where.configFile} says ${JSON.stringify(v)}`,
        { where: { yamlPath: `${where.yamlPath}.${k}` }, hint: `remove ${k} from the recipe (it is read from the backbone) or make it match` },
      );
    }
  }
  return out as T;
}
