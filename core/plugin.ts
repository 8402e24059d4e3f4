// What a plugin is: a plain object {kind, name, description, options, create}.
// `definePlugin` only gives types (like Vite's defineConfig): the options type of `create`
// is inferred from the JSON Schema literal in `options`.
import type { PluginKind, PluginContext, PluginProducts } from './types.ts';

/** A JSON Schema (the subset our recipes and plugins use; ajv validates the full language). */
export type JSONSchema = {
  type?: 'object' | 'string' | 'number' | 'integer' | 'boolean' | 'array' | 'null' | readonly string[];
  properties?: { readonly [k: string]: JSONSchema };
  required?: readonly string[];
  additionalProperties?: boolean | JSONSchema;
  items?: JSONSchema;
  enum?: readonly unknown[];
  const?: unknown;
  default?: unknown;
  description?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minItems?: number;
  maxItems?: number;
  minLength?: number;
  pattern?: string;
  oneOf?: readonly JSONSchema[];
  anyOf?: readonly JSONSchema[];
  examples?: readonly unknown[];
  [k: string]: unknown;
};

// ---- FromSchema: a small type-level reading of a JSON Schema literal --------------------------
type Prim<S> = S extends { enum: readonly (infer E)[] }
  ? E
  : S extends { const: infer C }
    ? C
    : S extends { type: 'string' }
      ? string
      : S extends { type: 'number' | 'integer' }
        ? number
        : S extends { type: 'boolean' }
          ? boolean
          : S extends { type: 'null' }
            ? null
            : S extends { type: 'array'; items: infer I }
              ? FromSchema<I>[]
              : S extends { type: 'array' }
                ? unknown[]
                : S extends { oneOf: readonly (infer O)[] }
                  ? FromSchema<O>
                  : S extends { anyOf: readonly (infer O)[] }
                    ? FromSchema<O>
                    : S extends { type: readonly (infer T)[] }
                      ? (T extends unknown ? (T extends 'object' ? Obj<S> : Prim<{ type: T }>) : never)
                      : S extends { properties: unknown }
                        ? Obj<S>
                        : unknown;
type Req<S> = S extends { required: readonly (infer R)[] } ? R : never;
// A property with a `default` is always present after validation (ajv useDefaults).
type HasDefault<P> = P extends { default: unknown } ? true : false;
type Obj<S> = S extends { properties: infer P }
  ? {
      -readonly [K in keyof P as K extends Req<S> ? K : HasDefault<P[K]> extends true ? K : never]: FromSchema<P[K]>;
    } & {
      -readonly [K in keyof P as K extends Req<S> ? never : HasDefault<P[K]> extends true ? never : K]?: FromSchema<
        P[K]
      >;
    }
  : Record<string, unknown>;
export type FromSchema<S> = S extends { type: 'object' } ? Obj<S> : Prim<S>;

// ---- the plugin object -------------------------------------------------------------------------
export interface Plugin<K extends PluginKind = PluginKind, O = any> {
  kind: K;
  /** the name a recipe uses in `use:` */
  name: string;
  description: string;
  /** JSON Schema of the options (everything in the recipe entry except `use`). */
  options: JSONSchema;
  /** set to the name of a built-in plugin this one deliberately replaces */
  replaces?: string;
  /** the file that defines it (definePlugin records its caller's file), shown by `vlm plugins` / `vlm inspect` */
  file?: string;
  /** nanoVLM v0.1 interoperability: this plugin builds nanoVLM's component of its kind (see NanovlmInterop) */
  nanovlm?: NanovlmInterop;
  /**
   * Stage plugins: what this stage needs of the recipe, checked with the rest of the recipe (`vlm
   * validate`, before a run starts) when the recipe lists the stage. Each problem is reported at its
   * YAML path (`atKey`: at the key rather than the value).
   */
  checkRecipe?(recipe: Record<string, any>): RecipeProblem[];
  /** Stage plugins: this stage evaluates a trained model; `vlm eval --model` runs it after loading the model */
  evaluates?: boolean;
  create(options: O, context: PluginContext): PluginProducts[K] | Promise<PluginProducts[K]>;
  /**
   * Model components only: parameter shapes from the options alone (no weights, no download),
   * for `vlm inspect`. `peers` carries the widths of the components built before this one.
   */
  describe?(options: O, peers: ModulePeers): ModuleDescription;
}

/**
 * How a plugin maps to nanoVLM v0.1 (declared by the plugin, used by core/ without naming it): a
 * plain nanoVLM checkpoint folder (config.json, no sidecar) is built with the plugins of each kind
 * that declare it, and `vlm compare` uses them for the fixture's components.
 */
export interface NanovlmInterop {
  /** VLMConfig field -> this plugin's option (config.json -> recipe entry), e.g. {lm_hidden_dim: 'hidden_dim'} */
  config?: Readonly<Record<string, string>>;
  /** a file of a model folder that, when present, points an option at the folder: {file: 'tokenizer.json', option: 'from'} */
  folderFile?: { file: string; option: string };
  /** the options that reproduce nanoVLM v0.1's component where it has no config fields (train.py's optimizer and its groups) */
  options?: Readonly<Record<string, unknown>>;
  /**
   * nanoVLM HEAD (4e0c096), whose config.json has the newer fields (vlm_extra_tokens, ...): the same
   * mapping for a HEAD checkpoint, when this plugin builds HEAD's component (its tokenizer with the
   * extra tokens and chat template, its tile-splitting image processor, train.py's optimizer groups).
   * `folderFile` above applies to both.
   */
  head?: {
    /** HEAD VLMConfig field -> this plugin's option (missing fields: HEAD's defaults) */
    config?: Readonly<Record<string, string>>;
    /** the options that reproduce HEAD's component where it has no config fields */
    options?: Readonly<Record<string, unknown>>;
  };
}

/** Which nanoVLM a checkpoint's config.json comes from: v0.1, or HEAD (4e0c096). */
export type NanovlmFormat = 'v0.1' | 'head';

/** Does `plugin` declare how it builds nanoVLM `format`'s component of its kind? */
export function declaresNanovlm(plugin: Plugin, format: NanovlmFormat = 'v0.1'): boolean {
  const n = plugin.nanovlm;
  if (!n) return false;
  return format === 'head' ? !!n.head : !!(n.config || n.folderFile || n.options);
}

/** A problem a plugin finds in a recipe (Plugin.checkRecipe). */
export interface RecipeProblem {
  path: (string | number)[];
  message: string;
  hint?: string;
  atKey?: boolean;
}

export interface ModulePeers {
  vision?: { hiddenDim: number; numTokens: number };
  decoder?: { hiddenDim: number };
  /** for adapters: the model's linear layers, full names and weight shapes [out, in] */
  linearLayers?: { name: string; shape: number[] }[];
  /** for adapters: the entry's YAML path (model.adapters[0]), for errors */
  yamlPath?: string;
}
export interface ModuleDescription {
  /** local parameter name -> shape (tied parameters listed once) */
  params: Record<string, number[]>;
  hiddenDim?: number;
  numTokens?: number;
  /** the local names of its linear layers (Module.linearLayers), for adapters */
  linearLayers?: string[];
}

/** Identity helper that infers the option type of `create` from the `options` schema literal. */
export function definePlugin<K extends PluginKind, const S extends JSONSchema>(plugin: {
  kind: K;
  name: string;
  description: string;
  options: S;
  replaces?: string;
  nanovlm?: NanovlmInterop;
  checkRecipe?(recipe: Record<string, any>): RecipeProblem[];
  evaluates?: boolean;
  create(options: FromSchema<S>, context: PluginContext): PluginProducts[K] | Promise<PluginProducts[K]>;
  describe?(options: FromSchema<S>, peers: ModulePeers): ModuleDescription;
}): Plugin<K, FromSchema<S>> {
  const p = plugin as Plugin<K, FromSchema<S>>;
  p.file ??= callerFile();
  return p;
}

/** The file of definePlugin's caller, from the stack (file:// URLs as paths), or undefined. */
function callerFile(): string | undefined {
  const frames = (new Error().stack ?? '').split('\n').slice(1);
  for (const f of frames) {
    const m = /\(?((?:file:\/\/)?\/[^():]+):\d+:\d+\)?$/.exec(f.trim());
    if (!m) continue;
    const file = m[1].startsWith('file://') ? decodeURIComponent(new URL(m[1]).pathname) : m[1];
    if (!/[\\/]core[\\/]plugin\.ts$/.test(file)) return file;
  }
  return undefined;
}

export function isPlugin(x: unknown): x is Plugin {
  const p = x as Plugin;
  return (
    !!p &&
    typeof p === 'object' &&
    typeof p.kind === 'string' &&
    typeof p.name === 'string' &&
    typeof p.create === 'function' &&
    typeof p.options === 'object'
  );
}
