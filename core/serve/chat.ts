// OpenAI's chat completions API (https://platform.openai.com/docs/api-reference/chat/create, the
// convention vLLM, llama.cpp's server and Ollama follow) on top of core/generate.ts:
//   POST /v1/chat/completions  {model?, messages, max_tokens, temperature, top_p, top_k (extension),
//                               seed, stop, stream}  ->  chat.completion, or with `stream: true`
//                               server-sent events `data: {chat.completion.chunk}` ... `data: [DONE]`
//   GET  /v1/models
// One model is in memory and one generation runs at a time (a FIFO queue, bounded); generation is
// driven step by step (generateSteps) so the server keeps answering, streams each token, and
// stops a generation whose client went away. A run directory as source is re-read before each
// request: a newer checkpoint is loaded in place of the old one.
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { checkPromptBatch, generateSteps, preparePrompts, type GenerateOptions, type PromptBatch } from '../generate.ts';
import { loadModel, readSidecar, resolveModelFolder, type LoadedModel } from '../load-model.ts';
import { BadSampleError } from '../data/image.ts';
import { vqaPrompt } from '../data/prompt.ts';
import { isUserError } from '../errors.ts';
import { isRepoId } from '../hub/index.ts';
import { weightsMtimeMs } from '../weights/model-weights.ts';
import type { Logger, RegistryLike } from '../types.ts';
import * as tf from '@tensorflow/tfjs';
import { HttpError, readJson, sendJson, startEvents } from './http.ts';

/** The most tokens one request may ask for. */
export const MAX_TOKENS_LIMIT = 1024;
/** Requests waiting behind the running one; more get 503 (try again later). */
export const MAX_QUEUE = 16;

export interface ChatRequest {
  prompt: string;
  image: Uint8Array;
  maxTokens: number;
  sampling: GenerateOptions;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
}

// ---- request parsing ---------------------------------------------------------------------------

const bad = (message: string, param: string | null = null, code: string | null = null) => new HttpError(400, message, 'invalid_request_error', code, param);

function numberParam(body: Record<string, unknown>, name: string, opts: { min: number; max: number; int?: boolean }): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || (opts.int && !Number.isInteger(v)) || v < opts.min || v > opts.max) {
    throw bad(`${name} must be ${opts.int ? 'an integer' : 'a number'} from ${opts.min} to ${opts.max} (got ${JSON.stringify(v)})`, name);
  }
  return v;
}

/** The image of a data: URL, or a 400. The server fetches nothing from the network. */
export function decodeDataUrl(url: unknown, param: string): Uint8Array {
  if (typeof url !== 'string') throw bad(`${param} must be a string`, param);
  const m = /^data:(image\/[a-z0-9.+-]+)?(;[^,]*)?,/i.exec(url);
  if (!m) throw bad(`${param}: only data: URLs are accepted (data:image/png;base64,...); this server fetches nothing from the network`, param, 'invalid_image_url');
  const payload = url.slice(m[0].length);
  const base64 = /;base64$/i.test(m[2] ?? '');
  if (base64 && !/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(payload)) throw bad(`${param}: the base64 data is not valid`, param, 'invalid_image');
  const bytes = base64 ? Buffer.from(payload, 'base64') : Buffer.from(decodeURIComponent(payload), 'latin1');
  if (bytes.length === 0) throw bad(`${param}: the image is empty`, param, 'invalid_image');
  return new Uint8Array(bytes);
}

/**
 * Messages -> one prompt and one image. The model answers questions about one image (nanoVLM's
 * `Question: ... Answer:` format): earlier user/assistant turns become earlier question/answer
 * pairs, system messages are not used, and exactly one image must appear in the user messages.
 */
export function parseChatRequest(body: Record<string, unknown>): ChatRequest {
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) throw bad('messages must be a non-empty array', 'messages');
  const images: Uint8Array[] = [];
  const turns: { role: string; text: string }[] = [];
  messages.forEach((m, i) => {
    const where = `messages[${i}]`;
    if (!m || typeof m !== 'object') throw bad(`${where} must be an object`, where);
    const { role, content } = m as { role?: unknown; content?: unknown };
    if (role !== 'system' && role !== 'user' && role !== 'assistant') throw bad(`${where}.role must be system, user or assistant (got ${JSON.stringify(role)})`, `${where}.role`);
    let text = '';
    if (typeof content === 'string') text = content;
    else if (Array.isArray(content)) {
      content.forEach((part, j) => {
        const at = `${where}.content[${j}]`;
        const p = part as { type?: unknown; text?: unknown; image_url?: { url?: unknown } | string };
        if (p?.type === 'text') {
          if (typeof p.text !== 'string') throw bad(`${at}.text must be a string`, `${at}.text`);
          text += (text ? ' ' : '') + p.text;
        } else if (p?.type === 'image_url') {
          if (role !== 'user') throw bad(`${at}: images belong in user messages`, at);
          const url = typeof p.image_url === 'string' ? p.image_url : p.image_url?.url;
          images.push(decodeDataUrl(url, `${at}.image_url.url`));
        } else throw bad(`${at}.type must be "text" or "image_url" (got ${JSON.stringify(p?.type)})`, `${at}.type`);
      });
    } else if (content !== null && content !== undefined) throw bad(`${where}.content must be a string or an array of parts`, `${where}.content`);
    if (role !== 'system') turns.push({ role, text: text.trim() });
  });
  const last = turns.at(-1);
  if (!last || last.role !== 'user') throw bad('the last message must come from the user', 'messages');
  if (images.length !== 1) throw bad(`this model answers about exactly one image per conversation; the messages hold ${images.length}`, 'messages', 'image_count');
  // [q1, a1, q2] -> "Question: q1 Answer: a1 Question: q2 Answer:"
  let prompt = '';
  for (const t of turns) prompt += t.role === 'user' ? (prompt ? ' ' : '') + vqaPrompt(t.text) : ' ' + t.text;

  const n = numberParam(body, 'n', { min: 1, max: 1, int: true });
  void n; // only n = 1
  const maxTokens = numberParam(body, 'max_completion_tokens', { min: 1, max: MAX_TOKENS_LIMIT, int: true }) ?? numberParam(body, 'max_tokens', { min: 1, max: MAX_TOKENS_LIMIT, int: true }) ?? 64;
  const temperature = numberParam(body, 'temperature', { min: 0, max: 2 }) ?? 1;
  const topP = numberParam(body, 'top_p', { min: 0, max: 1 });
  const topK = numberParam(body, 'top_k', { min: 0, max: 1e9, int: true });
  const seed = numberParam(body, 'seed', { min: 0, max: 2 ** 32 - 1, int: true }) ?? randomBytes(4).readUInt32LE(0);
  let stop: string[] = [];
  if (typeof body.stop === 'string') stop = [body.stop];
  else if (Array.isArray(body.stop)) stop = body.stop;
  else if (body.stop !== undefined && body.stop !== null) throw bad('stop must be a string or an array of strings', 'stop');
  if (stop.length > 4 || stop.some((s) => typeof s !== 'string' || s === '')) throw bad('stop must hold at most 4 non-empty strings', 'stop');
  if (body.stream !== undefined && typeof body.stream !== 'boolean') throw bad('stream must be true or false', 'stream');
  const opts = body.stream_options as { include_usage?: unknown } | undefined;
  return {
    prompt,
    image: images[0],
    maxTokens,
    sampling: { greedy: temperature === 0, temperature, topP: topP ?? 1, topK: topK ?? 0, seed },
    stop,
    stream: body.stream === true,
    includeUsage: opts?.include_usage === true,
  };
}

// ---- stop strings and streaming text -----------------------------------------------------------

/**
 * How much of `text` may be sent now: everything before the first stop string (then `stopped`), or
 * everything except a tail that may still become a stop string or is an incomplete character.
 */
export function releasable(text: string, stop: string[], final: boolean): { text: string; stopped: boolean } {
  let cut = -1;
  for (const s of stop) {
    const i = text.indexOf(s);
    if (i >= 0 && (cut < 0 || i < cut)) cut = i;
  }
  if (cut >= 0) return { text: text.slice(0, cut), stopped: true };
  if (final) return { text, stopped: false };
  let keep = text.length - (text.match(/\uFFFD+$/)?.[0].length ?? 0); // a piece the next token may complete
  for (const s of stop) {
    for (let k = Math.min(s.length - 1, keep); k > 0; k--) {
      if (text.slice(keep - k, keep) === s.slice(0, k)) {
        keep -= k;
        break;
      }
    }
  }
  return { text: text.slice(0, keep), stopped: false };
}

// ---- the model and the queue -------------------------------------------------------------------

export interface ModelInfo {
  id: string;
  folder: string;
  parameters: Record<string, number>;
  imageSize: number;
  imageTokens: number;
  maxLength: number;
  /** the model section (sidecar) */
  model: Record<string, unknown> | null;
  /** eval/results.json of the run the model comes from (folder, <run>/model, <run>/checkpoints/step-N) */
  eval: unknown[] | null;
}

/** The model a server answers with: loaded on first use, reloaded when a run writes a newer checkpoint. */
export class ModelHost {
  readonly id: string;
  private loaded: (LoadedModel & { stamp: string }) | null = null;
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;
  /** generations finished / stopped because the client went away (tests, logs) */
  readonly stats = { completed: 0, cancelled: 0 };

  constructor(
    readonly source: string,
    private readonly registry: RegistryLike,
    private readonly log: Logger,
    /** what the user named (a Hub id, a path); the id is derived from it */
    name: string = source,
  ) {
    this.id = modelId(name);
  }

  /** Run `job` after every earlier one (one generation at a time); 503 when too many wait. */
  enqueue<T>(job: () => Promise<T>): Promise<T> {
    if (this.waiting >= MAX_QUEUE) throw new HttpError(503, `the server is busy (${this.waiting} requests waiting); try again later`, 'server_error', 'queue_full');
    this.waiting++;
    const run = this.tail.then(() => {
      this.waiting--;
      return job();
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** The loaded model, (re)loading it when the source now resolves to another or newer folder. */
  async model(): Promise<LoadedModel> {
    let folder: string;
    try {
      folder = await resolveModelFolder(this.source);
    } catch (e) {
      if (this.loaded) return this.loaded;
      throw new HttpError(503, isUserError(e) ? (e as Error).message : 'the model cannot be loaded (see the server log)', 'server_error', 'model_not_ready');
    }
    let stamp: string;
    try {
      stamp = `${folder}@${weightsMtimeMs(folder)}`;
    } catch {
      if (this.loaded) return this.loaded; // pruned between the two looks (keep_checkpoints): keep the loaded one
      throw new HttpError(503, `the model in ${folder} disappeared while loading; ask again`, 'server_error', 'model_not_ready');
    }
    if (this.loaded?.stamp === stamp) return this.loaded;
    this.log.info(`loading model ${this.id} from ${folder}`);
    const next = await loadModel(this.source, { registry: this.registry, log: this.log }).catch((e: unknown) => {
      this.log.warn(`cannot load ${folder}: ${(e as Error).message}`);
      if (this.loaded) return null;
      throw new HttpError(503, isUserError(e) ? (e as Error).message : 'the model cannot be loaded (see the server log)', 'server_error', 'model_not_ready');
    });
    if (!next) return this.loaded!;
    this.loaded?.model.dispose();
    this.loaded = { ...next, stamp };
    return this.loaded;
  }

  /** Facts for the playground, loading the model if needed (null when there is none yet). */
  async info(): Promise<ModelInfo | null> {
    const m = await this.enqueue(() => this.model()).catch(() => null);
    if (!m) return null;
    const sidecar = m.folder ? readSidecarSafe(m.folder) : null;
    return {
      id: this.id,
      folder: m.folder,
      parameters: m.model.parameterCounts(),
      imageSize: m.model.imageSize,
      imageTokens: m.model.numImageTokens,
      maxLength: m.model.maxLength,
      model: sidecar,
      eval: evalResults(m.folder),
    };
  }

  dispose(): void {
    this.loaded?.model.dispose();
    this.loaded = null;
  }

  /** POST /v1/chat/completions */
  async complete(req: IncomingMessage, res: ServerResponse, bodyLimit: number): Promise<void> {
    const body = await readJson(req, bodyLimit);
    const chat = parseChatRequest(body);
    if (body.model !== undefined && body.model !== this.id) {
      throw new HttpError(404, `the model ${JSON.stringify(body.model)} does not exist here; this server has "${this.id}" (GET /v1/models)`, 'invalid_request_error', 'model_not_found', 'model');
    }
    let gone = false;
    res.on('close', () => {
      if (!res.writableFinished) gone = true;
    });
    await this.enqueue(async () => {
      if (gone) return; // left while waiting
      const loaded = await this.model();
      let batch: PromptBatch;
      try {
        batch = await preparePrompts(loaded.tokenizer, loaded.imageProcessor, [{ prompt: chat.prompt, image: chat.image, id: 'image' }]);
        checkPromptBatch(loaded.model, batch);
      } catch (e) {
        if (e instanceof BadSampleError) throw bad(`the image cannot be used: ${e.message.replace(/^image: /, '')}`, 'messages', 'invalid_image');
        if (isUserError(e)) throw bad((e as Error).message, 'messages');
        throw e;
      }
      await this.generate(loaded, batch, chat, res, () => gone);
    });
  }

  /** Generate for one prepared prompt, writing the response (JSON or events) as it goes. */
  private async generate(loaded: LoadedModel, batch: PromptBatch, chat: ChatRequest, res: ServerResponse, gone: () => boolean): Promise<void> {
    const { tokenizer, model } = loaded;
    const id = 'chatcmpl-' + randomBytes(12).toString('hex');
    const created = Math.floor(Date.now() / 1000);
    const promptTokens = batch.seqLen + model.numImageTokens;
    const tokens: number[] = [];
    let sent = '';
    let stopped = false;
    let eos = false;
    const events = chat.stream ? startEvents(res) : null;
    const chunk = (delta: Record<string, unknown>, finish: string | null, extra: Record<string, unknown> = {}) => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model: this.id,
      choices: [{ index: 0, delta, finish_reason: finish }],
      ...extra,
    });
    events?.send(chunk({ role: 'assistant', content: '' }, null));
    const flush = (final: boolean) => {
      const r = releasable(tokenizer.decode(tokens, { skipSpecialTokens: true }), chat.stop, final);
      stopped ||= r.stopped;
      if (r.text.startsWith(sent) && r.text.length > sent.length) {
        events?.send(chunk({ content: r.text.slice(sent.length) }, null));
        sent = r.text;
      } else if (final && !r.text.startsWith(sent)) sent = r.text; // an earlier piece changed: the JSON answer has the final text
    };
    const inputs = {
      inputIds: tf.tensor2d(batch.inputIds, [1, batch.seqLen], 'int32'),
      attentionMask: tf.tensor2d(batch.attentionMask, [1, batch.seqLen], 'int32'),
      images: tf.tensor4d(batch.images, [1, 3, batch.imageSize, batch.imageSize]),
    };
    const steps = generateSteps(model, inputs, {
      ...chat.sampling,
      maxNewTokens: chat.maxTokens,
      eosTokenId: tokenizer.eosTokenId,
      onToken: (_row, tok) => {
        if (tok === tokenizer.eosTokenId) eos = true;
        else tokens.push(tok);
      },
    });
    try {
      for (;;) {
        const r = await steps.next();
        if (!r.done) flush(false);
        if (r.done || stopped) break;
        await new Promise((resolveTick) => setImmediate(resolveTick)); // let the socket flush and 'close' arrive
        if (gone()) break;
      }
    } finally {
      await steps.return([]); // frees the cache when stopped early (a no-op after the end)
      tf.dispose([inputs.inputIds, inputs.attentionMask, inputs.images]);
    }
    if (gone()) {
      this.stats.cancelled++;
      this.log.info(`generation ${id} stopped after ${tokens.length} tokens: the client went away`);
      return;
    }
    flush(true);
    this.stats.completed++;
    const finish = stopped || eos ? 'stop' : 'length';
    const usage = { prompt_tokens: promptTokens, completion_tokens: tokens.length, total_tokens: promptTokens + tokens.length };
    if (events) {
      events.send(chunk({}, finish, { usage }));
      if (chat.includeUsage) events.send({ id, object: 'chat.completion.chunk', created, model: this.id, choices: [], usage });
      events.send('[DONE]');
      res.end();
      return;
    }
    sendJson(res, 200, {
      id,
      object: 'chat.completion',
      created,
      model: this.id,
      choices: [{ index: 0, message: { role: 'assistant', content: sent }, finish_reason: finish }],
      usage,
    });
  }
}

/** The model's name in /v1/models: the Hub id, or the folder's name (the run's for <run>/model). */
export function modelId(source: string): string {
  if (!existsSync(source) && isRepoId(source)) return source;
  const clean = source.replace(/[\\/]+$/, '');
  const name = basename(clean);
  return name === 'model' || name === 'best' || /^step-\d+$/.test(name) ? `${basename(dirname(name === 'model' ? clean : dirname(clean)))}/${name}` : name;
}

function evalResults(folder: string): unknown[] | null {
  for (const d of [folder, dirname(folder), dirname(dirname(folder))]) {
    try {
      const j = JSON.parse(readFileSync(join(d, 'eval', 'results.json'), 'utf8'));
      if (Array.isArray(j?.results)) return j.results;
    } catch {
      // not there
    }
  }
  return null;
}

function readSidecarSafe(folder: string): Record<string, unknown> | null {
  try {
    return readSidecar(folder);
  } catch {
    return null;
  }
}
