// `vlm compare`: numerical parity with the PyTorch reference, as a user-facing tool.
// Loads a nanoVLM-format checkpoint, runs it on `inputs.safetensors` (images, input_ids,
// attention_mask, targets) and compares every tensor `expected.safetensors` names:
//   vision_out, mp_out, decoder_hidden, logits (padded text positions excluded), loss, grad.<param>,
//   grad_norm, greedy_tokens, cos, sin, after_adamw.<param> (one step of the optimizer plugin declaring nanoVLM's, Plugin.nanovlm).
// `--backbones <folder>` checks the Hub-backbone path (siglip/ + llama/ + expected.safetensors:
// vit_out, lm_hidden, lm_logits_orig_vocab). Tolerances are the fixture README's
// (../shared/fixtures/nanovlm/README.md, "Recommended tolerances"); `--rtol` overrides the relative-L2 bound.
// A nanoVLM HEAD checkpoint (placeholder image tokens; test/model/fixtures/head-tiny) is compared the
// same way, with HEAD's greedy prompts (gen_input_ids), its train.py step (MP 0.00512, backbones 5e-5,
// gradients clipped to 1.0) and its sampling distribution (sampling_probs).
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import type { Logger, RegistryLike } from '../types.ts';
import { readSafetensors, type LoadedTensor } from '../weights/safetensors.ts';
import { loadCheckpoint } from '../weights/model-folder.ts';
import { loadPluginFlags } from '../registry.ts';
import { toHost } from '../host.ts';
import { BACKEND_CHOICES, initRuntime, type BackendChoice } from '../runtime.ts';
import type { VisionLanguageModel } from '../model/vlm.ts';
import { lossAndGrads } from '../train/grads.ts';
import { NANOVLM_HEAD_SAMPLING, samplingDistribution } from '../generate.ts';
import { nanovlmPlugin } from '../model/config.ts';

export interface CompareRow {
  name: string;
  shape: number[];
  /** relative L2 error ||a - b|| / ||b|| (over the compared elements) */
  relL2: number;
  maxAbs: number;
  pass: boolean;
  /** the bound that was applied, or why the row failed */
  note: string;
}

export interface CompareOptions {
  /** checkpoint folder (config.json + model.safetensors) */
  model?: string;
  inputs?: string;
  expected?: string;
  /** hf-backbones folder (siglip/, llama/, expected.safetensors) */
  backbones?: string;
  /** overrides the relative-L2 bound of forward tensors and gradients */
  rtol?: number;
  /** gradients with activation checkpointing (train.activation_checkpointing) */
  checkpoint?: boolean;
  /** extra options of the optimizer entry of the after_adamw rows (e.g. { host_state: true }) */
  adamw?: Record<string, unknown>;
  registry: RegistryLike;
  log?: Logger;
}

// ---- tolerances (fixture README) ----------------------------------------------------------------
const TOL = {
  forward: { rel: 1e-5, abs: 1e-4 }, // vision_out, mp_out, decoder_hidden, logits, hf-backbone outputs
  grad: { rel: 1e-4, abs: 5e-5 },
  lossAbs: 1e-5,
  gradNormRel: 1e-5,
  rope: 1e-6, // cos/sin max abs
  // nanoVLM HEAD's TrainConfig max_grad_norm (test/model/fixtures/head-tiny; its lrs: the optimizer plugin's nanovlm.head)
  headMaxGradNorm: 1.0,
};

/** errors between `a` and reference `b` over the elements where `keep` is true (all if absent) */
export function errors(a: ArrayLike<number>, b: ArrayLike<number>, keep?: (i: number) => boolean): { relL2: number; maxAbs: number } {
  let num = 0;
  let den = 0;
  let maxAbs = 0;
  for (let i = 0; i < b.length; i++) {
    if (keep && !keep(i)) continue;
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
    const ad = Math.abs(d);
    if (!(ad <= maxAbs)) maxAbs = ad; // NaN propagates
  }
  const relL2 = den > 0 ? Math.sqrt(num) / Math.sqrt(den) : Math.sqrt(num);
  return { relL2, maxAbs };
}

function asNumbers(t: LoadedTensor): Float32Array | Int32Array | number[] {
  return t.data instanceof BigInt64Array ? Array.from(t.data, Number) : t.data;
}

function toTensor(t: LoadedTensor, dtype: 'float32' | 'int32'): tf.Tensor {
  const data = t.data instanceof BigInt64Array ? Int32Array.from(t.data, Number) : t.data;
  return tf.tensor(data as Float32Array | Int32Array, t.shape, dtype);
}

function need(file: string, m: Map<string, LoadedTensor>, name: string): LoadedTensor {
  const t = m.get(name);
  if (!t) throw new UserError(`${file}: missing tensor "${name}"`, { where: { file } });
  return t;
}

/** Greedy decoding as nanoVLM v0.1 generate() with argmax: full recompute (or KV cache), no stop at eos. */
export async function greedyTokens(
  model: VisionLanguageModel,
  inputIds: tf.Tensor2D,
  images: tf.Tensor4D,
  attentionMask: tf.Tensor2D | null,
  steps: number,
  useCache: boolean,
): Promise<number[][]> {
  const B = inputIds.shape[0];
  const out: number[][] = Array.from({ length: B }, () => []);
  const dec = model.decoder;
  // [image ; prompt] embeddings [B, Ni + T, C]: the whole input of every step (full recompute),
  // or of the first step only (KV cache; later steps feed just the new token)
  let full = tf.tidy(() => model.inputEmbeddings(inputIds, images)); // v0.1 [image ; text], HEAD placeholders replaced
  let pending = full;
  let mask = attentionMask ? tf.tidy(() => model.fullMask(attentionMask, B)) : null;
  const cache = useCache ? dec.newCache(B) : undefined;
  try {
    for (let s = 0; s < steps; s++) {
      const input = useCache ? pending : full;
      const next = tf.tidy(() => {
        const h = dec.forward(input, { mask, cache }); // [B, L, C]
        const last = h.slice([0, h.shape[1] - 1, 0], [-1, 1, -1]) as tf.Tensor3D; // [B, 1, C]
        return tf.argMax(dec.head(last).reshape([B, -1]), 1); // [B]
      });
      Array.from(await next.data()).forEach((id, b) => out[b].push(id));
      const nextEmbd = tf.tidy(() => dec.embed(next.reshape([B, 1]) as tf.Tensor2D)); // [B, 1, C]
      next.dispose();
      if (useCache) {
        if (pending !== full) pending.dispose();
        pending = nextEmbd;
      } else {
        const grown = tf.concat([full, nextEmbd], 1) as tf.Tensor3D;
        tf.dispose([full, nextEmbd]);
        full = pending = grown;
      }
      if (mask) {
        const m = mask;
        const m2 = tf.tidy(() => tf.concat([m, tf.ones([B, 1])], 1)) as tf.Tensor2D;
        await toHost(m2); // a decoder may read it on the host (skip_padding positions)
        mask.dispose();
        mask = m2;
      }
    }
  } finally {
    if (pending !== full) pending.dispose();
    full.dispose();
    mask?.dispose();
    cache?.dispose();
  }
  return out;
}

/** Every comparison of a fixture case. Rows in the order of the expected file. */
export async function compareFixture(opts: CompareOptions): Promise<CompareRow[]> {
  const rows: CompareRow[] = [];
  const rel = (r: number) => opts.rtol ?? r;
  if (opts.model) {
    if (!opts.inputs || !opts.expected) throw new UserError('--model needs --inputs and --expected');
    const model = await loadCheckpoint(resolve(opts.model), opts.registry, { log: opts.log });
    try {
      rows.push(...(await compareModel(model, resolve(opts.inputs), resolve(opts.expected), opts, rel)));
    } finally {
      model.dispose();
    }
  }
  if (opts.backbones) rows.push(...(await compareBackbones(opts, rel)));
  return rows;
}

function row(name: string, shape: number[], e: { relL2: number; maxAbs: number }, pass: boolean, note: string): CompareRow {
  return { name, shape, relL2: e.relL2, maxAbs: e.maxAbs, pass, note };
}

function forwardRow(name: string, got: ArrayLike<number>, exp: LoadedTensor, rel: (r: number) => number, keep?: (i: number) => boolean): CompareRow {
  const e = errors(got, exp.data as Float32Array, keep);
  const r = rel(TOL.forward.rel);
  return row(name, exp.shape, e, e.relL2 <= r && e.maxAbs <= TOL.forward.abs, `relL2<=${r} maxAbs<=${TOL.forward.abs}${keep ? ' (valid positions)' : ''}`);
}

async function compareModel(
  model: VisionLanguageModel,
  inputsFile: string,
  expectedFile: string,
  opts: CompareOptions,
  rel: (r: number) => number,
): Promise<CompareRow[]> {
  const inputs = readSafetensors(inputsFile).tensors;
  const expected = readSafetensors(expectedFile).tensors;
  const rows: CompareRow[] = [];
  const images = toTensor(need(inputsFile, inputs, 'images'), 'float32') as tf.Tensor4D;
  const inputIds = toTensor(need(inputsFile, inputs, 'input_ids'), 'int32') as tf.Tensor2D;
  const maskT = inputs.get('attention_mask');
  const attentionMask = maskT ? (toTensor(maskT, 'int32') as tf.Tensor2D) : null;
  const targets = inputs.get('targets') ? (toTensor(inputs.get('targets')!, 'int32') as tf.Tensor2D) : null;
  const maskHost = maskT ? asNumbers(maskT) : null;
  await toHost(attentionMask, targets); // read on the host by the loss and the mask (GPU backends: core/host.ts)
  const [B, T] = inputIds.shape;
  const Ni = model.imagePrefix; // image positions before the text (0 with HEAD's placeholders)
  const textValid = (b: number, t: number) => !maskHost || maskHost[b * T + t] !== 0;

  let gradsHost: Map<string, Float32Array> | null = null;
  const computeGrads = async () => {
    if (gradsHost) return gradsHost;
    if (!targets) throw new UserError(`${inputsFile}: gradients need "targets"`);
    const { loss, grads } = lossAndGrads(model, { images, inputIds, attentionMask, targets }, undefined, { checkpoint: opts.checkpoint });
    loss.dispose();
    gradsHost = new Map();
    for (const [n, g] of grads) {
      gradsHost.set(n, (await g.data()) as Float32Array);
      g.dispose();
    }
    return gradsHost;
  };

  try {
    // forward once; keep the host copies
    const fw = tf.tidy(() => {
      const visionOut = model.vision.forward(images);
      const mpOut = model.projector.forward(visionOut);
      const hidden = model.hidden(inputIds, images, attentionMask);
      const logits = model.decoder.head(hidden.slice([0, Ni, 0], [-1, -1, -1]) as tf.Tensor3D);
      const loss = targets ? model.loss(logits, targets) : tf.scalar(NaN);
      return { visionOut, mpOut, hidden, logits, loss };
    });
    const host = {
      vision_out: (await fw.visionOut.data()) as Float32Array,
      mp_out: (await fw.mpOut.data()) as Float32Array,
      decoder_hidden: (await fw.hidden.data()) as Float32Array,
      logits: (await fw.logits.data()) as Float32Array,
      loss: (await fw.loss.data())[0],
    };
    const C = fw.hidden.shape[2];
    const V = fw.logits.shape[2];
    tf.dispose([fw.visionOut, fw.mpOut, fw.hidden, fw.logits, fw.loss]);

    const adamwNames = [...expected.keys()].filter((n) => n.startsWith('after_adamw.'));
    for (const [name, exp] of expected) {
      if (name.startsWith('after_adamw.')) continue; // below, after everything that reads the weights
      if (name === 'vision_out' || name === 'mp_out') {
        rows.push(forwardRow(name, host[name], exp, rel));
      } else if (name === 'decoder_hidden') {
        const L = Ni + T;
        rows.push(forwardRow(name, host.decoder_hidden, exp, rel, (i) => {
          const b = Math.floor(i / (L * C));
          const p = Math.floor(i / C) % L;
          return p < Ni || textValid(b, p - Ni);
        }));
      } else if (name === 'logits') {
        rows.push(forwardRow(name, host.logits, exp, rel, (i) => textValid(Math.floor(i / (T * V)), Math.floor(i / V) % T)));
      } else if (name === 'loss') {
        const d = Math.abs(host.loss - (exp.data as Float32Array)[0]);
        rows.push(row(name, exp.shape, { relL2: d / Math.abs((exp.data as Float32Array)[0]), maxAbs: d }, d <= TOL.lossAbs, `abs<=${TOL.lossAbs}`));
      } else if (name.startsWith('grad.')) {
        const g = (await computeGrads()).get(name.slice(5));
        if (!g) {
          rows.push(row(name, exp.shape, { relL2: NaN, maxAbs: NaN }, false, 'no such parameter'));
          continue;
        }
        rows.push(gradRow(name, g, exp, rel));
      } else if (name === 'grad_norm') {
        const grads = await computeGrads();
        let ss = 0;
        for (const g of grads.values()) for (const x of g) ss += x * x;
        const ref = (exp.data as Float32Array)[0];
        const r = Math.abs(Math.sqrt(ss) - ref) / Math.abs(ref);
        rows.push(row(name, exp.shape, { relL2: r, maxAbs: Math.abs(Math.sqrt(ss) - ref) }, r <= TOL.gradNormRel, `relative<=${TOL.gradNormRel}`));
      } else if (name === 'greedy_tokens') {
        const steps = exp.shape[1];
        // HEAD's fixture generates from its own prompts (the first turn + the generation prompt)
        const genT = inputs.get('gen_input_ids');
        const genIds = genT ? (toTensor(genT, 'int32') as tf.Tensor2D) : inputIds;
        const genMaskT = inputs.get('gen_attention_mask');
        const genMask = genT ? (genMaskT ? (toTensor(genMaskT, 'int32') as tf.Tensor2D) : null) : attentionMask;
        const Tg = genIds.shape[1];
        if (genT) await toHost(genMask); // read on the host by the mask (GPU backends)
        const want = asNumbers(exp);
        // Past lm_max_position_embeddings nanoVLM rescales RoPE for the whole sequence at every step,
        // which a KV cache (keys computed at earlier steps) cannot reproduce: the cached run is only
        // compared when the sequence stays within it.
        const maxPos = Number(model.nanovlmConfig().lm_max_position_embeddings);
        const cacheComparable = !(Ni + Tg + steps - 1 > maxPos);
        if (!cacheComparable) opts.log?.info(`greedy_tokens: ${Ni + Tg + steps - 1} positions exceed lm_max_position_embeddings ${maxPos}; the KV-cache run is not compared`);
        for (const useCache of cacheComparable ? [false, true] : [false]) {
          const got = (await greedyTokens(model, genIds, images, genMask, steps, useCache)).flat();
          const diff = got.filter((x, i) => x !== want[i]).length;
          rows.push(row(useCache ? `${name} (kv cache)` : name, exp.shape, { relL2: diff / got.length, maxAbs: diff }, diff === 0, diff === 0 ? 'exact' : `${diff} tokens differ: got ${got.join(' ')}`));
        }
        if (genT) tf.dispose([genIds, genMask ?? []]);
      } else if (name === 'sampling_probs') {
        // HEAD's sampling distribution (top_k_top_p_filtering, then temperature) of sampling_logits
        const logits = need(inputsFile, inputs, 'sampling_logits');
        const V = logits.shape[1];
        const got = new Float32Array(logits.shape[0] * V);
        for (let r = 0; r < logits.shape[0]; r++) {
          const d = samplingDistribution((logits.data as Float32Array).subarray(r * V, (r + 1) * V), { ...NANOVLM_HEAD_SAMPLING, order: 'nanovlm-head' });
          d.ids.forEach((id, j) => (got[r * V + id] = d.probs[j]));
        }
        const e = errors(got, exp.data as Float32Array);
        rows.push(row(name, exp.shape, e, e.maxAbs <= 1e-6, 'maxAbs<=1e-6 (nanoVLM HEAD order, top-k 50, top-p 0.9, temperature 0.5)'));
      } else if (name === 'cos' || name === 'sin') {
        const got = ropeTable(model, exp.shape[1], name);
        const e = errors(got, exp.data as Float32Array);
        rows.push(row(name, exp.shape, e, e.maxAbs <= TOL.rope, `maxAbs<=${TOL.rope}`));
      } else if (BACKBONE_TENSORS.includes(name)) {
        // the Hub-backbone comparison computes these (compareBackbones): with --backbones they get
        // their row there, once
        if (!opts.backbones) rows.push(row(name, exp.shape, { relL2: NaN, maxAbs: NaN }, false, 'a Hub-backbone tensor: pass --backbones <folder> to compute it'));
      } else {
        rows.push(row(name, exp.shape, { relL2: NaN, maxAbs: NaN }, false, 'unknown tensor name: nothing computes it'));
      }
    }
    if (adamwNames.length) rows.push(...(await compareAdamW(model, expected, adamwNames, await computeGrads(), opts)));
  } finally {
    tf.dispose([images, inputIds, attentionMask ?? [], targets ?? []]);
  }
  return rows;
}

/** ViT qkv_proj.bias: the key slice [D, 2D) has a mathematically zero gradient: absolute tolerance only there. */
function gradRow(name: string, got: Float32Array, exp: LoadedTensor, rel: (r: number) => number): CompareRow {
  const r = rel(TOL.grad.rel);
  const ref = exp.data as Float32Array;
  if (/^grad\.vision_encoder\..*attn\.qkv_proj\.bias$/.test(name)) {
    const D = ref.length / 3;
    const keySlice = (i: number) => i >= D && i < 2 * D;
    const qv = errors(got, ref, (i) => !keySlice(i));
    const all = errors(got, ref);
    return row(name, exp.shape, { relL2: qv.relL2, maxAbs: all.maxAbs }, qv.relL2 <= r && all.maxAbs <= TOL.grad.abs, `relL2<=${r} (q,v slices) maxAbs<=${TOL.grad.abs} (all)`);
  }
  const e = errors(got, ref);
  return row(name, exp.shape, e, e.relL2 <= r && e.maxAbs <= TOL.grad.abs, `relL2<=${r} maxAbs<=${TOL.grad.abs}`);
}

function ropeTable(model: VisionLanguageModel, T: number, which: 'cos' | 'sin'): Float32Array {
  const dec = model.decoder;
  if (!dec.ropeTables) throw new UserError('this decoder has no rotary embedding tables to compare (cos/sin)');
  return dec.ropeTables(Array.from({ length: T }, (_, i) => i))[which];
}

/**
 * One step of the optimizer plugin declaring nanoVLM's (train.py's AdamW and its groups, v0.1 or
 * HEAD: Plugin.nanovlm.options / nanovlm.head.options) from the loaded weights and OUR gradients,
 * checked with the README's three bounds.
 */
async function compareAdamW(
  model: VisionLanguageModel,
  expected: Map<string, LoadedTensor>,
  names: string[],
  grads: Map<string, Float32Array>,
  opts: CompareOptions,
): Promise<CompareRow[]> {
  // the optimizer plugin that declares nanoVLM's (v0.1 train.py: AdamW, MP 2e-3, backbones 1e-4;
  // HEAD train.py: MP 0.00512, vision and language backbones 5e-5, gradients clipped to norm 1.0 first)
  const head = model.imageTokenId !== null;
  const nano = opts.registry.nanovlmPlugin('optimizer', head ? 'head' : 'v0.1');
  const options = head ? nano?.nanovlm?.head?.options : nano?.nanovlm?.options;
  if (!nano || !options) {
    return [row('after_adamw.*', [], { relL2: NaN, maxAbs: NaN }, false, `no optimizer plugin declares nanoVLM ${head ? 'HEAD' : 'v0.1'}'s optimizer (nanovlm${head ? '.head' : ''}.options)`)];
  }
  const before = new Map<string, Float32Array>();
  for (const [n, v] of model.params) before.set(n, (await v.data()) as Float32Array);
  let clip = 1;
  if (head) {
    let ss = 0;
    for (const g of grads.values()) for (const x of g) ss += x * x;
    clip = Math.min(1, TOL.headMaxGradNorm / (Math.sqrt(ss) + 1e-6)); // torch clip_grad_norm_
  }
  const opt = await opts.registry.create(
    'optimizer',
    { use: nano.name, ...structuredClone(options), ...opts.adamw },
    {
      recipe: {},
      recipeDir: process.cwd(),
      yamlPath: 'optimizer',
      seed: 0,
      log: opts.log ?? { info() {}, warn() {}, debug() {} },
      built: { vision: model.vision, projector: model.projector, decoder: model.decoder },
    },
  );
  /** the lr of the group that holds a parameter (the bound on its update) */
  const lrOf = (p: string) => opt.groups.find((g) => g.params.includes(p))!.lr;
  const gradTensors = new Map<string, tf.Tensor>();
  for (const [n, g] of grads) gradTensors.set(n, tf.tensor(clip === 1 ? g : g.map((x) => x * clip), model.params.get(n)!.shape));
  try {
    opt.step(gradTensors, opt.groups.map((g) => g.lr));
  } finally {
    tf.dispose([...gradTensors.values()]);
  }
  const rows: CompareRow[] = [];
  let updNum = 0;
  let updDen = 0;
  let within = 0;
  let total = 0;
  let allOk = true;
  for (const name of names) {
    const pname = name.slice('after_adamw.'.length);
    const exp = expected.get(name)!;
    const v = model.params.get(pname);
    if (!v) {
      rows.push(row(name, exp.shape, { relL2: NaN, maxAbs: NaN }, false, 'no such parameter'));
      allOk = false;
      continue;
    }
    const got = (await v.data()) as Float32Array;
    const ref = exp.data as Float32Array;
    const w0 = before.get(pname)!;
    const lr = lrOf(pname);
    const bound = 2 * lr + 1e-6;
    let maxAbs = 0;
    for (let i = 0; i < ref.length; i++) {
      const d = Math.abs(got[i] - ref[i]);
      maxAbs = Math.max(maxAbs, d);
      if (d <= 1e-6) within++;
      total++;
      const du = got[i] - w0[i] - (ref[i] - w0[i]);
      updNum += du * du;
      updDen += (ref[i] - w0[i]) ** 2;
    }
    const e = errors(got, ref);
    const ok = maxAbs <= bound;
    allOk &&= ok;
    rows.push(row(name, exp.shape, e, ok, `every element within 2*lr+1e-6 = ${bound.toExponential(1)}`));
  }
  opt.dispose();
  const updRel = Math.sqrt(updNum) / Math.sqrt(updDen);
  const frac = within / total;
  rows.push(row('after_adamw (update)', [total], { relL2: updRel, maxAbs: NaN }, updRel <= 1e-2, 'relative L2 of the update <= 1e-2'));
  rows.push(row('after_adamw (within 1e-6)', [total], { relL2: 1 - frac, maxAbs: NaN }, frac >= 0.995, `${(frac * 100).toFixed(2)}% of elements within 1e-6 (need >= 99.5%)`));
  return rows;
}

// ---- Hub backbones ----------------------------------------------------------------------------------

/** What an hf-backbones expected.safetensors holds: outputs compareBackbones computes, and its input ids. */
const BACKBONE_TENSORS = ['vit_out', 'lm_hidden', 'lm_logits_orig_vocab', 'hf_input_ids'];

async function compareBackbones(opts: CompareOptions, rel: (r: number) => number): Promise<CompareRow[]> {
  const dir = resolve(opts.backbones!);
  const expectedFile = join(dir, 'expected.safetensors');
  if (!existsSync(expectedFile)) throw new UserError(`${expectedFile} not found (--backbones needs siglip/, llama/ and expected.safetensors)`);
  const expected = readSafetensors(expectedFile).tensors;
  const rows: CompareRow[] = [];
  const log = opts.log ?? { info() {}, warn() {}, debug() {} };
  const ctx = { recipe: {}, recipeDir: dir, yamlPath: 'model.vision', seed: 0, log };
  // VLMConfig fields nanoVLM's from_pretrained keeps from the VLM config (not the Hub config): taken
  // from --model's config.json when given
  let vlmCfg: Record<string, unknown> = {};
  if (opts.model) vlmCfg = JSON.parse(readFileSync(join(resolve(opts.model), 'config.json'), 'utf8'));
  // the plugins that build nanoVLM's backbones, `from` the Hub-layout folders; `fields`: the VLMConfig
  // fields nanoVLM keeps from the VLM config, as the plugin's options (its nanovlm.config)
  const backbone = (kind: 'vision' | 'decoder', from: string, fields: string[]) => {
    const p = nanovlmPlugin(opts.registry, kind);
    const entry: { use: string; [k: string]: unknown } = { use: p.name, from };
    for (const f of fields) if (vlmCfg[f] !== undefined && p.nanovlm?.config?.[f]) entry[p.nanovlm.config[f]] = vlmCfg[f];
    return entry;
  };
  if (expected.has('vit_out')) {
    if (!opts.inputs) throw new UserError('--backbones with vit_out needs --inputs (the images)');
    const vision = await opts.registry.create('vision', backbone('vision', join(dir, 'siglip'), ['vit_cls_flag']), ctx);
    try {
      const images = toTensor(need(opts.inputs, readSafetensors(resolve(opts.inputs)).tensors, 'images'), 'float32') as tf.Tensor4D;
      const out = tf.tidy(() => vision.forward(images));
      rows.push(forwardRow('vit_out', (await out.data()) as Float32Array, expected.get('vit_out')!, rel));
      tf.dispose([images, out]);
    } finally {
      vision.dispose();
    }
  }
  if (expected.has('lm_hidden') || expected.has('lm_logits_orig_vocab')) {
    const ids = toTensor(need(expectedFile, expected, 'hf_input_ids'), 'int32') as tf.Tensor2D;
    // nanoVLM extends the Hub vocab to lm_vocab_size; attn_scaling and tie_weights come from the VLM config too
    const entry = backbone('decoder', join(dir, 'llama'), ['lm_vocab_size', 'lm_attn_scaling', 'lm_tie_weights']);
    const decoder = await opts.registry.create('decoder', entry, { ...ctx, yamlPath: 'model.decoder' });
    try {
      const { hidden, logits } = tf.tidy(() => {
        const h = decoder.forward(decoder.embed(ids));
        return { hidden: h, logits: decoder.head(h) };
      });
      const h = (await hidden.data()) as Float32Array;
      const lg = (await logits.data()) as Float32Array;
      const V = logits.shape[2];
      tf.dispose([hidden, logits, ids]);
      if (expected.has('lm_hidden')) rows.push(forwardRow('lm_hidden', h, expected.get('lm_hidden')!, rel));
      const expL = expected.get('lm_logits_orig_vocab');
      if (expL) {
        const Vo = expL.shape[expL.shape.length - 1];
        const sliced = new Float32Array(expL.data.length);
        for (let i = 0; i < sliced.length; i++) sliced[i] = lg[Math.floor(i / Vo) * V + (i % Vo)];
        rows.push(forwardRow('lm_logits_orig_vocab', sliced, expL, rel));
      }
    } finally {
      decoder.dispose();
    }
  }
  for (const name of expected.keys()) {
    if (!BACKBONE_TENSORS.includes(name)) {
      rows.push(row(`backbones/${name}`, expected.get(name)!.shape, { relL2: NaN, maxAbs: NaN }, false, 'unknown tensor name: nothing computes it'));
    }
  }
  return rows;
}

// ---- CLI -----------------------------------------------------------------------------------------

export const USAGE = `Usage: vlm compare --model <checkpoint folder> --inputs <inputs.safetensors> --expected <expected.safetensors>
                   [--backbones <hf-backbones folder>] [--rtol <r>] [--backend <b>]

  Runs the checkpoint on the inputs and compares every tensor the expected file names with the
  tolerances of the nanoVLM fixture README (forward relL2 <= 1e-5 and maxAbs <= 1e-4, gradients relL2 <= 1e-4
  and maxAbs <= 5e-5, loss abs <= 1e-5, cos/sin abs <= 1e-6, greedy tokens exact).
  --rtol overrides the relative-L2 bound of forward tensors and gradients. Exit code 1 if any row fails.
  --plugins <file|pkg> loads a plugin module the checkpoint needs (repeatable; recorded ones load without it).
  --backend auto | webgpu | tensorflow | wasm | cpu: the backend to check (default: the embedded wasm
  backend); \`--backend webgpu\` checks the GPU path at the same tolerances.`;

export function formatTable(rows: CompareRow[]): string {
  const fmt = (x: number) => (Number.isNaN(x) ? '-' : x.toExponential(2));
  const header = ['name', 'shape', 'relL2', 'maxAbs', 'result'];
  const body = rows.map((r) => [r.name, `[${r.shape.join(', ')}]`, fmt(r.relL2), fmt(r.maxAbs), r.pass ? 'pass' : `FAIL (${r.note})`]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

export async function main(argv: string[], env: { registry: RegistryLike; stdout?: { write(s: string): unknown }; log?: Logger }): Promise<number> {
  const out = env.stdout ?? process.stdout;
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        model: { type: 'string' },
        inputs: { type: 'string' },
        expected: { type: 'string' },
        backbones: { type: 'string' },
        rtol: { type: 'string' },
        plugins: { type: 'string', multiple: true },
        backend: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    throw new UserError((e as Error).message, { hint: USAGE.split('\n')[0] });
  }
  if (args.help) {
    out.write(USAGE + '\n');
    return 0;
  }
  if (!args.model && !args.backbones) throw new UserError('vlm compare needs --model (and --inputs, --expected) or --backbones', { hint: USAGE.split('\n')[0] });
  if (args.model && (!args.inputs || !args.expected)) throw new UserError('--model needs --inputs and --expected', { hint: USAGE.split('\n')[0] });
  let rtol: number | undefined;
  if (args.rtol !== undefined) {
    rtol = Number(args.rtol);
    if (!(rtol > 0)) throw new UserError(`--rtol ${args.rtol}: expected a positive number`);
  }
  await loadPluginFlags(env.registry, args.plugins);
  if (args.backend !== undefined) {
    if (!BACKEND_CHOICES.includes(args.backend as BackendChoice)) throw new UserError(`--backend ${args.backend}: expected one of ${BACKEND_CHOICES.join(', ')}`);
    await initRuntime(args.backend as BackendChoice, { log: (l) => out.write(l + '\n') });
  } else {
    // the default the help promises: the embedded wasm backend, started before any tensor exists
    await initRuntime('wasm', { log: () => {} });
  }
  const rows = await compareFixture({ model: args.model, inputs: args.inputs, expected: args.expected, backbones: args.backbones, rtol, registry: env.registry, log: env.log });
  out.write(formatTable(rows) + '\n');
  const failed = rows.filter((r) => !r.pass);
  if (failed.length) {
    out.write(`\n${failed.length} of ${rows.length} comparisons FAILED: ${failed.map((r) => r.name).join(', ')}\n`);
    return 1;
  }
  out.write(`\nall ${rows.length} comparisons pass\n`);
  return 0;
}
