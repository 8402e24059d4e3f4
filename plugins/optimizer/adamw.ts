// AdamW with parameter groups, exactly torch 1.13 `torch.optim.AdamW` (single-tensor path,
// amsgrad=False, maximize=False), as nanoVLM v0.1 train.py uses it:
//   https://github.com/pytorch/pytorch/blob/v1.13.0/torch/optim/adamw.py (_single_tensor_adamw)
// For every parameter p with gradient g, at step t (1-based), with the group's current lr:
//   p *= 1 - lr * wd                       (decoupled weight decay, applied to every parameter)
//   m  = beta1 * m + (1 - beta1) * g
//   v  = beta2 * v + (1 - beta2) * g * g
//   denom = sqrt(v) / sqrt(1 - beta2^t) + eps
//   p -= (lr / (1 - beta1^t)) * m / denom
// Groups select parameters by module prefix ("MP" matches "MP.proj.weight"); nanoVLM v0.1 puts
// MP at 2e-3 and vision_encoder + decoder at 1e-4. `freeze` prefixes are excluded from training.
// `host_state: true` keeps the moments in host Float32Arrays, off the backend's memory, and
// updates one parameter at a time there (adamw-host.ts): the same numbers, 2 x 4 bytes per
// trainable parameter less on the wasm heap (1.8 GB for nanoVLM-222M).
// With the native addon on the wasm backend (issue 16) each parameter's update is one call of a
// fused kernel on the heap (adamwUpdateNative: the same float32 operations in the same order,
// bit-identical) instead of ~13 tfjs kernels; the host_state moments are updated there too.
// Gradient clipping (core/train/step.ts) hands step() the clipping coefficient (`gradScale`,
// `takesGradScale`) instead of multiplying every gradient by it first: each path multiplies g by
// it in float32 where it reads g (the same values, one pass over every gradient less).
import * as tf from '@tensorflow/tfjs';
import { adamwHostUpdate, hostTensor } from './adamw-host.ts';
import { definePlugin } from 'nanovlm-ts/plugin-api';
import { UserError, adamwUpdateNative } from 'nanovlm-ts/plugin-api';
import type { HostTensor, Optimizer, ParamGroup, PluginContext } from 'nanovlm-ts/plugin-api';

export interface AdamWGroupOptions {
  name: string;
  prefixes: string[];
  lr: number;
  weight_decay?: number;
}

export interface AdamWOptions {
  /** used when `groups` is absent: one group "all" with every trainable parameter */
  lr?: number;
  groups?: AdamWGroupOptions[];
  weight_decay: number;
  betas: number[];
  eps: number;
  freeze: string[];
  /** moments in host Float32Arrays (off the backend), parameters updated one at a time */
  host_state?: boolean;
}

/** "MP" matches "MP" and "MP.proj.weight" but not "MPX.w"; "" matches everything. */
export function matchesPrefix(name: string, prefix: string): boolean {
  const p = prefix.endsWith('.') ? prefix.slice(0, -1) : prefix;
  return p === '' || name === p || name.startsWith(p + '.');
}

/**
 * Split parameter names into groups by prefix. Frozen names are left out; every other name must
 * fall in exactly one group (UserError naming it otherwise). `yamlPath` locates the option.
 */
export function assignGroups(
  names: string[],
  opts: { groups?: AdamWGroupOptions[]; lr?: number; freeze: string[]; frozen?: Set<string> },
  yamlPath = 'optimizer',
): { groups: ParamGroup[]; frozen: string[] } {
  // frozen: by a freeze prefix, or by the model (opts.frozen: variables not trainable, e.g. the base model under model.adapters)
  const frozen = names.filter((n) => opts.frozen?.has(n) || opts.freeze.some((f) => matchesPrefix(n, f)));
  for (const f of opts.freeze) {
    if (!names.some((n) => matchesPrefix(n, f)))
      throw new UserError(`freeze prefix "${f}" matches no parameter`, {
        where: { yamlPath: `${yamlPath}.freeze` },
        hint: `parameters start with ${[...new Set(names.map((n) => n.split('.')[0]))].join(', ')}`,
      });
  }
  const trainable = names.filter((n) => !frozen.includes(n));
  let specs = opts.groups;
  if (!specs || specs.length === 0) {
    if (opts.lr === undefined)
      throw new UserError('the optimizer needs either `lr` or `groups`', {
        where: { yamlPath },
        hint: 'e.g. optimizer: { use: adamw, lr: 1.0e-3 } or groups: [{ name: all, prefixes: [""], lr: 1.0e-3 }]',
      });
    specs = [{ name: 'all', prefixes: [''], lr: opts.lr }];
  }
  const groups: ParamGroup[] = specs.map((g) => ({ name: g.name, params: [], lr: g.lr }));
  for (const n of trainable) {
    const hits = specs.map((g, i) => (g.prefixes.some((p) => matchesPrefix(n, p)) ? i : -1)).filter((i) => i >= 0);
    if (hits.length === 0)
      throw new UserError(`trainable parameter "${n}" is in no optimizer group`, {
        where: { yamlPath: `${yamlPath}.groups` },
        hint: `add its module prefix (e.g. "${n.split('.')[0]}") to a group's prefixes, or to optimizer.freeze`,
      });
    if (hits.length > 1)
      throw new UserError(
        `parameter "${n}" is in several optimizer groups: ${hits.map((i) => specs![i].name).join(', ')}`,
        { where: { yamlPath: `${yamlPath}.groups` }, hint: 'make the groups\' prefixes disjoint' },
      );
    groups[hits[0]].params.push(n);
  }
  specs.forEach((g, i) => {
    if (groups[i].params.length === 0)
      throw new UserError(`optimizer group "${g.name}" selects no trainable parameter`, {
        where: { yamlPath: `${yamlPath}.groups[${i}].prefixes` },
        hint: `prefixes ${JSON.stringify(g.prefixes)} match nothing that is not frozen${opts.frozen?.size ? ' (with model.adapters only the adapters train: e.g. one group, optimizer: { use: adamw, lr: 1.0e-4 })' : ''}`,
      });
  });
  return { groups, frozen };
}

export class AdamW implements Optimizer {
  readonly groups: ParamGroup[];
  readonly frozen: string[];
  private readonly weightDecay: number[];
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly eps: number;
  private t = 0;
  private readonly m = new Map<string, tf.Variable>(); // exp_avg
  private readonly v = new Map<string, tf.Variable>(); // exp_avg_sq
  /** with host_state: the moments on the host instead of m / v */
  private readonly host: Map<string, { m: Float32Array; v: Float32Array }> | null;

  constructor(
    private readonly params: Map<string, tf.Variable>,
    opts: AdamWOptions,
    yamlPath = 'optimizer',
  ) {
    const notTrainable = new Set([...params].filter(([, v]) => !v.trainable).map(([n]) => n)); // frozen by model.adapters
    const { groups, frozen } = assignGroups([...params.keys()], { ...opts, frozen: notTrainable }, yamlPath);
    this.groups = groups;
    this.frozen = frozen;
    this.weightDecay = (opts.groups ?? []).map((g) => g.weight_decay ?? opts.weight_decay);
    if (this.weightDecay.length === 0) this.weightDecay = [opts.weight_decay];
    [this.beta1, this.beta2] = opts.betas;
    this.eps = opts.eps;
    if (opts.host_state && tf.getBackend() === 'webgpu') {
      throw new UserError('host_state keeps the moments in host memory and updates on the CPU: it needs a CPU backend (wasm, cpu), not webgpu', {
        where: { yamlPath: `${yamlPath}.host_state` },
        hint: 'remove optimizer.host_state on a GPU (the moments then live in GPU memory), or use runtime.backend=wasm',
      });
    }
    this.host = opts.host_state ? new Map() : null;
    for (const g of groups)
      for (const n of g.params) {
        if (this.host) {
          const size = params.get(n)!.size;
          this.host.set(n, { m: new Float32Array(size), v: new Float32Array(size) });
          continue;
        }
        const p = params.get(n)!;
        // tidy: the zeros tensor a variable is made from stays counted (and holds the memory) otherwise
        this.m.set(n, tf.tidy(() => tf.variable(tf.zerosLike(p), false)));
        this.v.set(n, tf.tidy(() => tf.variable(tf.zerosLike(p), false)));
      }
  }

  /** names of the parameters the optimizer updates (all groups, forward-declaration order) */
  trainable(): string[] {
    return this.groups.flatMap((g) => g.params);
  }

  /** step() multiplies every gradient by its `gradScale` first (core/train/step.ts folds the clipping into it) */
  readonly takesGradScale = true;

  step(grads: Map<string, tf.Tensor>, lrs: number[], gradScale = 1): void {
    this.t += 1;
    const bc1 = 1 - this.beta1 ** this.t;
    const bc2Sqrt = Math.sqrt(1 - this.beta2 ** this.t);
    this.groups.forEach((group, gi) => {
      const lr = lrs[gi];
      const decay = 1 - lr * this.weightDecay[gi];
      const stepSize = lr / bc1;
      for (const name of group.params) {
        const g = grads.get(name);
        if (!g) continue; // like torch: a parameter without gradient is not touched
        const p = this.params.get(name)!;
        const scalars = { decay, beta1: this.beta1, beta2: this.beta2, bc2Sqrt, eps: this.eps, stepSize, gradScale };
        const h = this.host?.get(name);
        // one fused call in the native addon (wasm backend, addon built); else the tfjs kernels
        if (tf.tidy(() => adamwUpdateNative(p, g, h?.m ?? this.m.get(name)!, h?.v ?? this.v.get(name)!, scalars))) continue;
        if (h) {
          const next = adamwHostUpdate(p.dataSync(), g.dataSync(), h.m, h.v, scalars);
          tf.tidy(() => p.assign(tf.tensor(next, p.shape, 'float32')));
          continue;
        }
        const m = this.m.get(name)!;
        const v = this.v.get(name)!;
        tf.tidy(() => {
          const gs = gradScale !== 1 ? tf.mul(g, gradScale) : g; // as clipGradNorm's tf.mul(g, coef)
          const pDecayed = tf.mul(p, decay);
          const mNew = tf.add(tf.mul(m, this.beta1), tf.mul(gs, 1 - this.beta1));
          const vNew = tf.add(tf.mul(v, this.beta2), tf.mul(tf.mul(gs, gs), 1 - this.beta2));
          const denom = tf.add(tf.div(tf.sqrt(vNew), bc2Sqrt), this.eps);
          const pNew = tf.sub(pDecayed, tf.mul(tf.div(mNew, denom), stepSize));
          m.assign(mNew);
          v.assign(vNew);
          p.assign(pNew);
        });
      }
    });
  }

  stateBytes(): { backend: number; host: number } {
    const n = this.trainable().reduce((s, name) => s + this.params.get(name)!.size, 0);
    return this.host ? { backend: 0, host: 8 * n } : { backend: 8 * n, host: 0 };
  }

  state(): { step: number; tensors: Map<string, tf.Tensor | HostTensor> } {
    const tensors = new Map<string, tf.Tensor | HostTensor>();
    const shape = (n: string) => this.params.get(n)!.shape;
    if (this.host) {
      for (const [n, h] of this.host) tensors.set(`${n}.exp_avg`, hostTensor(shape(n), h.m));
      for (const [n, h] of this.host) tensors.set(`${n}.exp_avg_sq`, hostTensor(shape(n), h.v));
    }
    for (const [n, m] of this.m) tensors.set(`${n}.exp_avg`, m);
    for (const [n, v] of this.v) tensors.set(`${n}.exp_avg_sq`, v);
    return { step: this.t, tensors };
  }

  loadState(state: { step: number; tensors: Map<string, tf.Tensor | HostTensor> }): void {
    const slotsOf = (kind: 'm' | 'v'): Map<string, { shape: number[]; set(t: tf.Tensor | HostTensor): void }> => {
      const out = new Map<string, { shape: number[]; set(t: tf.Tensor | HostTensor): void }>();
      if (this.host)
        for (const [n, h] of this.host) out.set(n, { shape: this.params.get(n)!.shape, set: (t) => h[kind].set(t.dataSync()) });
      for (const [n, variable] of kind === 'm' ? this.m : this.v)
        out.set(n, { shape: variable.shape, set: (t) => (t instanceof tf.Tensor ? variable.assign(t) : tf.tidy(() => variable.assign(tf.tensor(t.dataSync(), t.shape, 'float32')))) });
      return out;
    };
    for (const [slots, kind] of [
      [slotsOf('m'), 'exp_avg'],
      [slotsOf('v'), 'exp_avg_sq'],
    ] as const) {
      for (const [n, variable] of slots) {
        const t = state.tensors.get(`${n}.${kind}`);
        if (!t)
          throw new UserError(`optimizer state has no "${n}.${kind}"`, {
            hint: 'the checkpoint was written for a different model or optimizer configuration; resume with the same recipe',
          });
        if (t.shape.join(',') !== variable.shape.join(','))
          throw new UserError(
            `optimizer state "${n}.${kind}" has shape [${t.shape}] but the parameter has [${variable.shape}]`,
            { hint: 'the checkpoint was written for a different model; resume with the same recipe' },
          );
        variable.set(t);
      }
    }
    this.t = state.step;
  }

  dispose(): void {
    for (const x of this.m.values()) x.dispose();
    for (const x of this.v.values()) x.dispose();
    this.m.clear();
    this.v.clear();
    this.host?.clear();
  }
}

/** full nanoVLM parameter names -> variables, from the model components a context has built */
export function paramsFromContext(context: PluginContext): Map<string, tf.Variable> {
  const b = context.built ?? {};
  const params = new Map<string, tf.Variable>();
  const parts: [string, { params: Map<string, tf.Variable> } | undefined][] = [
    ['vision_encoder', b.vision],
    ['decoder', b.decoder],
    ['MP', b.projector],
  ];
  for (const [prefix, mod] of parts) if (mod) for (const [k, v] of mod.params) params.set(`${prefix}.${k}`, v);
  if (params.size === 0)
    throw new UserError('the optimizer was created before the model', {
      where: { yamlPath: context.yamlPath },
      hint: 'the train stage needs the load stage first (stages: [load, train, ...])',
    });
  return params;
}

const groupSchema = {
  type: 'object',
  required: ['name', 'prefixes', 'lr'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', description: 'group name (for logs and metrics)' },
    prefixes: {
      type: 'array',
      items: { type: 'string' },
      minItems: 1,
      description: 'module prefixes of the full parameter names, e.g. [MP] or [vision_encoder, decoder]',
    },
    lr: { type: 'number', exclusiveMinimum: 0, description: 'maximum learning rate of this group' },
    weight_decay: { type: 'number', minimum: 0, description: 'overrides the optimizer weight_decay for this group' },
  },
} as const;

export default definePlugin({
  kind: 'optimizer',
  name: 'adamw',
  // nanoVLM v0.1 train.py: AdamW over [MP @ lr_mp 2e-3, vision_encoder + decoder @ lr_backbones 1e-4], torch's weight decay 0.01
  nanovlm: {
    options: {
      groups: [
        { name: 'MP', prefixes: ['MP'], lr: 2e-3 },
        { name: 'backbones', prefixes: ['vision_encoder', 'decoder'], lr: 1e-4 },
      ],
      weight_decay: 0.01,
    },
    // nanoVLM HEAD train.py: lr_mp 0.00512, lr_vision_backbone 5e-5, lr_language_backbone 5e-5
    head: {
      options: {
        groups: [
          { name: 'MP', prefixes: ['MP'], lr: 0.00512 },
          { name: 'vision', prefixes: ['vision_encoder'], lr: 5e-5 },
          { name: 'decoder', prefixes: ['decoder'], lr: 5e-5 },
        ],
        weight_decay: 0.01,
      },
    },
  },
  description:
    'AdamW exactly as torch 1.13 (decoupled weight decay, bias correction) with parameter groups by module prefix and frozen modules.',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      lr: { type: 'number', exclusiveMinimum: 0, description: 'learning rate when no groups are given' },
      groups: { type: 'array', items: groupSchema, description: 'parameter groups; every trainable parameter in exactly one' },
      weight_decay: { type: 'number', minimum: 0, default: 0.01, description: 'decoupled weight decay (torch AdamW weight_decay)' },
      betas: { type: 'array', items: { type: 'number', minimum: 0, exclusiveMaximum: 1 }, minItems: 2, maxItems: 2, default: [0.9, 0.999], description: 'coefficients of the running averages of the gradient and its square (torch betas)' },
      eps: { type: 'number', exclusiveMinimum: 0, default: 1e-8, description: 'term added to the denominator for numerical stability (torch eps)' },
      freeze: { type: 'array', items: { type: 'string' }, default: [], description: 'module prefixes not trained (no gradient, no optimizer state; `vlm inspect` shows the trainable/frozen counts)' },
      host_state: { type: 'boolean', default: false, description: 'keep the moments (exp_avg, exp_avg_sq) in host memory, off the backend, updating one parameter at a time: the same numbers, 8 bytes per trainable parameter less on the backend (wasm: its 4 GiB heap)' },
    },
  } as const,
  create(options, context) {
    return new AdamW(paramsFromContext(context), options as AdamWOptions, context.yamlPath || 'optimizer');
  },
});
