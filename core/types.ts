// The contracts between the core and the plugins: what each kind of plugin produces, and the
// run context that stages share. Shapes are written as in nanoVLM: B batch, T text length,
// N image tokens, D / C widths, V vocabulary.
import type * as tf from '@tensorflow/tfjs';

export type PluginKind =
  | 'vision'
  | 'projector'
  | 'decoder'
  | 'tokenizer'
  | 'image-processor'
  | 'dataset'
  | 'optimizer'
  | 'schedule'
  | 'evaluator'
  | 'publisher'
  | 'stage'
  | 'adapter';

export const PLUGIN_KINDS: readonly PluginKind[] = [
  'vision',
  'projector',
  'decoder',
  'tokenizer',
  'image-processor',
  'dataset',
  'optimizer',
  'schedule',
  'evaluator',
  'publisher',
  'stage',
  'adapter',
];

// ---- model components ------------------------------------------------------------------------

/**
 * Parameters of one module, keyed by their nanoVLM state-dict name relative to the module (e.g.
 * "blocks.0.attn.qkv_proj.weight"), stored in PyTorch layout (Linear weight [out, in]). A variable
 * with `trainable` false is frozen (model.adapters freezes the base model, as PEFT does).
 */
export type ParamMap = Map<string, tf.Variable>;

/**
 * What an adapter adds to one linear layer (model.adapters; e.g. LoRA: (alpha/r) B A dropout(x)).
 * Model code applies it through adaptedLinear / adaptedWeight (core/ops.ts).
 */
export interface LinearAdapter {
  /** layer input x [..., in] -> the addition to the layer's output [..., out] */
  forward(x: tf.Tensor): tf.Tensor;
  /** the same map as a weight change [out, in]: W + delta() is the merged weight (no dropout) */
  delta(): tf.Tensor2D;
}

export interface Module {
  readonly params: ParamMap;
  /**
   * Linear layers adapters may wrap: local names whose "<name>.weight" is an [out, in] Linear
   * weight (e.g. "blocks.0.attn.q_proj"), in forward order. Absent: none.
   */
  linearLayers?(): string[];
  /** adapters on this module's linear layers by local layer name; set by the core (model.adapters) */
  adapters?: Map<string, LinearAdapter>;
  /** non-trainable tensors that nanoVLM keeps in its state dict (e.g. "rotary_embd.inv_freq") */
  readonly buffers?: Map<string, tf.Tensor>;
  /** the fields of nanoVLM's VLMConfig this module corresponds to (vit_*, mp_*, lm_*) */
  nanovlmConfig(): Record<string, unknown>;
  dispose(): void;
}

export interface VisionEncoder extends Module {
  readonly imageSize: number; // input is [B, 3, imageSize, imageSize]
  readonly hiddenDim: number; // D
  readonly numTokens: number; // N tokens out per image
  /** [B, 3, H, W] -> [B, N, D] */
  /** `checkpoint`: recompute each block in the backward pass (core/train/activation-checkpointing.ts) */
  forward(images: tf.Tensor4D, opts?: { training?: boolean; checkpoint?: boolean }): tf.Tensor3D;
}

export interface Projector extends Module {
  readonly outDim: number; // C (= decoder width)
  outTokens(inTokens: number): number;
  /** [B, N, D] -> [B, N', C] */
  forward(x: tf.Tensor3D): tf.Tensor3D;
}

/** Per-sequence key/value cache of a decoder. Holds kept tensors; dispose() frees them. */
export interface KVCache {
  /** number of positions already cached */
  readonly length: number;
  dispose(): void;
}

export interface Decoder extends Module {
  readonly hiddenDim: number; // C
  readonly vocabSize: number; // V
  readonly eosTokenId: number;
  /** lm_max_length: the text length T the collator pads/truncates to */
  readonly maxLength: number;
  /** int32 ids [B, T] -> embeddings [B, T, C] */
  embed(ids: tf.Tensor2D): tf.Tensor3D;
  /**
   * Embeddings [B, T, C] -> hidden states after the final norm [B, T, C].
   * `mask` [B, T_total] (1 real, 0 left padding; T_total = cache length + T) or null for all-real.
   * With a cache, positions continue from cache.length and the new keys/values are appended.
   * `checkpoint`: recompute each block in the backward pass (core/train/activation-checkpointing.ts).
   */
  forward(x: tf.Tensor3D, opts?: { mask?: tf.Tensor2D | null; cache?: KVCache; training?: boolean; checkpoint?: boolean; segments?: Int32Array | null }): tf.Tensor3D;
  /** hidden [B, T, C] -> logits [B, T, V] (tied to the embedding when configured) */
  head(hidden: tf.Tensor3D): tf.Tensor3D;
  newCache(batchSize: number): KVCache;

  // ---- optional capabilities (core/generate.ts and vlm compare use them when present) ----
  /**
   * head() for generation only: the same logits, possibly from inference-only copies of the
   * weights (no gradient reaches the parameters). Absent: generation uses head().
   */
  inferenceHead?(hidden: tf.Tensor3D): tf.Tensor3D;
  /**
   * One new token per row with the cache, on the host: ids [B] (+ host mask [B, cache.length + 1],
   * 0 = padded key, or null) -> next-token logits [B, V], the cache advanced by one. What
   * forward(embed(ids), {cache, mask}) then inferenceHead gives, up to float rounding. Used on
   * host-memory backends (wasm, cpu) when present.
   */
  decodeNext?(ids: Int32Array, cache: KVCache, mask: Int32Array | null): Float32Array;
  /**
   * True when forward() honours `segments` [B, T] (host, no cache): packed rows with a block-diagonal
   * mask, each sample attending only to itself with positions from 0 (train.packing.attention:
   * block-diagonal). Absent: the train stage refuses that option.
   */
  readonly segmentMasks?: boolean;
  /** Rotary embedding tables cos, sin [T, hd] for the given positions (nanoVLM's rotary_embd), for `vlm compare`. */
  ropeTables?(positions: number[]): { cos: Float32Array; sin: Float32Array };
}

// ---- data --------------------------------------------------------------------------------------

/** One training/eval example as a dataset plugin yields it. */
export interface Sample {
  /** where it came from, for messages: "digits/train.parquet row 17" */
  id: string;
  /** encoded image bytes (PNG, JPEG, WebP, ...) */
  image: Uint8Array;
  question: string;
  /** open answer, or the correct letter ("A".."D") for multiple choice */
  answer: string;
  /** multiple choice: option texts in letter order (the question already contains them inline) */
  choices?: string[];
  category?: string;
  l2Category?: string;
  /**
   * the text the model is trained to produce, when it differs from `answer` (default: answer);
   * e.g. "B: green" for a multiple-choice sample whose answer is "B". Evaluators use `answer`.
   */
  target?: string;
  /** set by a dataset that could not fill the sample (e.g. "image file not found: a.png"): the loader skips and counts it */
  problem?: string;
  /**
   * every image of the sample, in order (nanoVLM HEAD's multi-image samples, e.g. the_cauldron's
   * `images`); absent: [image]. Read by the chat data path only (model.image_tokens: placeholders).
   */
  images?: Uint8Array[];
  /** every turn of a conversation (HEAD: all of the_cauldron's `texts`); absent: one turn, question -> target ?? answer */
  turns?: { user: string; assistant: string }[];
  /** the raw columns of the row, for benchmark tasks whose scoring needs more than the fields above (e.g. TextVQA's 10 answers) */
  fields?: Record<string, unknown>;
}

export interface Dataset {
  readonly name: string;
  /** number of samples if known without reading everything */
  size(): Promise<number>;
  /** samples in this dataset's (seeded) order for the given epoch; `skip` skips that many first */
  samples(opts?: { epoch?: number; skip?: number }): AsyncIterable<Sample>;
}

export interface Tokenizer {
  readonly vocabSize: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  encode(text: string): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  /** optional: the id of a token text (special tokens included), undefined if absent */
  tokenToId?(token: string): number | undefined;
  /** optional chat template rendering (@huggingface/jinja) */
  applyChatTemplate?(messages: { role: string; content: string }[], opts?: { addGenerationPrompt?: boolean }): string;
  /** files to publish beside the model (name -> contents), e.g. tokenizer.json */
  files(): Record<string, string | Uint8Array>;
}

export interface ImageProcessor {
  readonly size: number;
  /** encoded image -> float32 [3, size, size] (CHW), values as the recipe asks ([0,1] or normalised) */
  process(image: Uint8Array, id?: string): Promise<Float32Array>;
  /** optional: one image as several tiles (nanoVLM HEAD's splitting, plugins/image-processor/split.ts) */
  processTiles?(image: Uint8Array, id?: string): Promise<ImageTiles>;
  /** optional, with processTiles: the most tiles one image can give (the memory estimate before training; absent: 1) */
  readonly maxTiles?: number;
}

/** An image as tiles: float32 [count, 3, size, size] (a global view first when the grid is not 1 x 1) and the grid [n_h, n_w]. */
export interface ImageTiles {
  tiles: Float32Array;
  count: number;
  grid: [number, number];
}

/** A collated batch on the host (typed arrays), ready to become tensors inside the step. */
export interface HostBatch {
  batchSize: number;
  seqLen: number; // T = lm_max_length
  images: Float32Array; // [B, 3, S, S]
  imageSize: number; // S
  inputIds: Int32Array; // [B, T] left padded
  attentionMask: Int32Array; // [B, T]
  targets: Int32Array; // [B, T], -100 = ignored
  /** ids of the samples in this batch */
  sampleIds: string[];
  /**
   * nanoVLM HEAD's batches (image tokens as placeholders): `images` holds this many tiles
   * [N, 3, S, S] of the whole batch in text order (N = 0: no vision encoder); absent: one image per row.
   */
  imageCount?: number;
  /**
   * packed rows with a block-diagonal mask (train.packing.attention: block-diagonal): [B, T] the
   * sample each position belongs to (1, 2, ... within its row; 0 = padding / separator). A position
   * attends only to earlier positions of its own sample and its RoPE position restarts at 0 per sample.
   */
  segmentIds?: Int32Array;
}

// ---- optimisation ------------------------------------------------------------------------------

export interface ParamGroup {
  name: string;
  /** full parameter names (e.g. "MP.proj.weight") in this group */
  params: string[];
  lr: number; // the group's maximum / base learning rate
}

/** float32 values kept on the host, off the backend's memory (optimizer state, e.g.), with their shape */
export interface HostTensor {
  readonly shape: number[];
  dataSync(): Float32Array;
}

export interface Optimizer {
  readonly groups: ParamGroup[];
  /**
   * apply one update; `lrs[i]` is the current lr of groups[i]; grads keyed by full param name;
   * `gradScale` (only passed when `takesGradScale`): multiply every gradient by it first, in float32
   * as tf.mul(g, gradScale) would (the clipping coefficient: one pass less over all gradients)
   */
  step(grads: Map<string, tf.Tensor>, lrs: number[], gradScale?: number): void;
  /** true when step() applies `gradScale`; otherwise core/train/step.ts multiplies the gradients itself */
  readonly takesGradScale?: boolean;
  /** state tensors keyed "<param>.<slot>" (e.g. "MP.proj.weight.exp_avg") + step count, for checkpoints */
  state(): { step: number; tensors: Map<string, tf.Tensor | HostTensor> };
  loadState(state: { step: number; tensors: Map<string, tf.Tensor | HostTensor> }): void;
  /** bytes of state kept on the backend and in host memory (memory estimates; absent: 2 x 4 bytes per trainable parameter on the backend) */
  stateBytes?(): { backend: number; host: number };
  dispose(): void;
}

export interface Schedule {
  /** learning rate at `step` (0-based) of `totalSteps` for a group whose base lr is `maxLr` */
  lr(step: number, maxLr: number, totalSteps: number): number;
}

// ---- evaluation and publishing ------------------------------------------------------------------

export interface EvalResult {
  evaluator: string;
  dataset: string;
  /** e.g. {accuracy: 0.91, accuracy_strict: 0.9, unparseable: 0} */
  metrics: Record<string, number>;
  /** optional breakdown, e.g. per category: {"fine-grained perception": {accuracy: .9, n: 360}} */
  breakdown?: Record<string, Record<string, number>>;
  /** set by benchmark task evaluators: what lmms-eval's results layout needs (core/eval/report.ts) */
  task?: TaskReport;
}

/** One benchmark task's run, in lmms-eval's terms (results.json: results, configs, versions, n-samples, samples). */
export interface TaskReport {
  /** lmms-eval's task name, e.g. "textvqa_val" */
  name: string;
  /** the metric a table or chart shows first, e.g. "exact_match" */
  primary: string;
  /** lmms-eval's "filter" part of the metric keys ("none", or e.g. "flexible-extract") */
  filter: string;
  /** the metrics in lmms-eval's layout, named as lmms-eval names them */
  metrics: Record<string, number>;
  higherIsBetter: Record<string, boolean>;
  version: number;
  /** the task's configuration: dataset, split, prompt, generation settings */
  config: Record<string, unknown>;
  nSamples: { original: number; effective: number };
  /** per-sample logs (doc_id, target, prompt, response, scores) when asked for */
  samples?: Record<string, unknown>[];
}

export interface Evaluator {
  readonly name: string;
  /**
   * `progress(done, total)` is called as samples are answered (total null when unknown), for a
   * progress bar with an ETA.
   */
  evaluate(ctx: RunContext, dataset: Dataset, progress?: (done: number, total: number | null) => void): Promise<EvalResult>;
  /**
   * A benchmark task brings its own data (its Hub dataset or a local copy): the eval stage runs it
   * on this dataset instead of the recipe's data lists.
   */
  dataset?(ctx: RunContext): Promise<Dataset>;
  /**
   * Optional: this evaluator measures the validation loss, the token-weighted mean loss that a
   * training stage computes itself while it trains (core/train/eval-loss.ts meanTokenLoss). The train
   * stage's evaluation every N steps skips it (its `val_loss` is that number); the eval stage runs it.
   */
  readonly measuresValLoss?: boolean;
}

export interface Publisher {
  readonly name: string;
  /** publish the model folder; returns where it went (path or URL) */
  publish(ctx: RunContext, folder: string, opts: { dryRun: boolean }): Promise<string>;
}

/**
 * Adapters on linear layers (model.adapters[i]), built over the model components in
 * context.built. The core attaches them (core/model/vlm.ts addAdapter): their parameters join the
 * model's, the base model's are frozen.
 */
export interface Adapter {
  readonly name: string;
  /** the adapted layers by full name ("decoder.blocks.0.attn.q_proj"), in forward order */
  readonly layers: string[];
  /** trainable parameters by full name ("decoder.blocks.0.attn.q_proj.lora_A.weight") */
  readonly params: ParamMap;
  /** dropout probability on the adapter's input in training (0: none; activation checkpointing needs 0) */
  readonly dropout: number;
  /** training mode (dropout on); the model sets it around each forward pass */
  training: boolean;
  /** the adapter of one of `layers` */
  linear(layer: string): LinearAdapter;
  /**
   * PEFT's description of this adapter (adapter_config.json fields: peft_type, r, lora_alpha,
   * target_modules, ...), for the adapter file written beside checkpoints (core/model/adapters.ts)
   */
  peftConfig(): Record<string, unknown>;
  dispose(): void;
}

export interface Stage {
  readonly title: string;
  /** `report` updates the stage's live line (listr2 task output) */
  run(ctx: RunContext, report: (line: string) => void): Promise<void>;
}

export interface PluginProducts {
  vision: VisionEncoder;
  projector: Projector;
  decoder: Decoder;
  tokenizer: Tokenizer;
  'image-processor': ImageProcessor;
  dataset: Dataset;
  optimizer: Optimizer;
  schedule: Schedule;
  evaluator: Evaluator;
  publisher: Publisher;
  stage: Stage;
  adapter: Adapter;
}

// ---- context -----------------------------------------------------------------------------------

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
}

/** What a plugin's create() receives. */
export interface PluginContext {
  /** the resolved recipe (plain data) */
  recipe: Record<string, any>;
  /** absolute directory of the recipe file: relative paths in options resolve against it */
  recipeDir: string;
  /** where this entry sits in the recipe, for messages: "data.train[0]" */
  yamlPath: string;
  /** train / val / eval for datasets */
  role?: 'train' | 'val' | 'eval';
  seed: number;
  log: Logger;
  /** the registry, to build nested plugins by name */
  registry: RegistryLike;
  /** model components already built (tokenizer, vision, ...), when a plugin needs them */
  built?: Partial<PluginProducts>;
  /** the run's command-line flags (--dry-run, --force, ...), given to stages when the run starts */
  flags?: RunContext['flags'];
  /**
   * Where each YAML path of this recipe came from (file:line:col), so that errors point into the
   * right file; passed explicitly with each create (two recipes resolved in one process each keep
   * their own). Absent: errors carry the YAML path only.
   */
  positions?: RecipePositions;
}

/** The source positions of a resolved recipe (core/recipe/positions.ts SourceMap). */
export interface RecipePositions {
  lookup(path: readonly (string | number)[] | string, opts?: { key?: boolean }): { file?: string; line?: number; col?: number; yamlPath?: string };
}

export interface RegistryLike {
  has(kind: PluginKind, name: string): boolean;
  /** the plugin registered under `name`, or undefined */
  plugin(kind: PluginKind, name: string): import('./plugin.ts').Plugin | undefined;
  /** the plugin of `kind` that declares nanoVLM interoperability (Plugin.nanovlm) for v0.1 (default) or HEAD, or undefined */
  nanovlmPlugin(kind: PluginKind, format?: import('./plugin.ts').NanovlmFormat): import('./plugin.ts').Plugin | undefined;
  /** where a plugin came from: 'built-in', a module's absolute path, or a package name */
  source(kind: PluginKind, name: string): string | undefined;
  /** import plugin modules (paths relative to baseDir, or package names) and register their plugins */
  loadModules(specs: { spec: string; baseDir: string; where: { file?: string; line?: number; col?: number; yamlPath?: string } }[]): Promise<void>;
  create<K extends PluginKind>(
    kind: K,
    entry: { use: string; [k: string]: unknown },
    context: Omit<PluginContext, 'registry'>,
  ): Promise<PluginProducts[K]>;
}

/** One run, shared by the stages in order. Stages fill in what later stages use. */
export interface RunContext {
  recipe: Record<string, any>;
  recipePath: string;
  recipeDir: string;
  runDir: string;
  backend: string;
  registry: RegistryLike;
  log: Logger;
  /** aborted on SIGINT/SIGTERM: long stages check it between steps */
  signal: AbortSignal;
  seed: number;
  /** where each YAML path of the recipe came from (pass it on in plugin contexts) */
  positions?: RecipePositions;
  /** set by the load stage (the model type lives in core/model/vlm.ts) */
  model?: import('./model/vlm.ts').VisionLanguageModel;
  tokenizer?: Tokenizer;
  imageProcessor?: ImageProcessor;
  datasets: { train: Dataset[]; val: Dataset[]; eval: Dataset[] };
  /** appends one JSON line to <runDir>/metrics.jsonl */
  metrics(record: Record<string, unknown>): void;
  evalResults: EvalResult[];
  /**
   * the train stage's evaluation of the final weights (the recipe's evaluators at its last step);
   * the eval stage reports these instead of evaluating the same model again
   */
  finalTrainEval?: EvalResult[];
  /** named files/folders produced (checkpoint, model folder, plots), relative to runDir */
  artifacts: Record<string, string>;
  /** free-form facts for the model card: training time, steps, tokens, hardware */
  facts: Record<string, unknown>;
  /** CLI flags that stages honour */
  flags: { resume?: string; force?: boolean; dryRun?: boolean; debug?: boolean };
}
