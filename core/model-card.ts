// The README.md model card of a published model folder: YAML front matter the Hub reads
// (library_name, license, pipeline_tag, tags, base_model, datasets) and a body that says what the
// model is, what it was trained on, how it scored, how long training took on what, and how to
// load it in TypeScript (nanovlm-ts) and in PyTorch: the nanoVLM version whose checkpoint format the
// folder has (`nanovlmVersion`: v0.1, or HEAD 4e0c096 for a model in its format, such as nanoVLM-450M).
// Everything goes through redact(): no token can end up in a card.
import { stringify } from 'yaml';
import { isRepoId, redact } from './hub/index.ts';
import type { EvalResult } from './types.ts';
import type { RecordedPlugin } from './weights/model-folder.ts';
import type { ConfigFormat } from './model/config.ts';

export interface ModelCardInput {
  /** the recipe's name */
  name: string;
  /** the resolved recipe (plain data) */
  recipe: Record<string, any>;
  /** where the model will be loadable from: a repo id (hub publisher) or null (local folder) */
  repoId?: string | null;
  license?: string;
  tags?: string[];
  description?: string;
  evalResults?: EvalResult[];
  /** free-form facts (training time, steps, tokens, hardware) from the run */
  facts?: Record<string, unknown>;
  backend?: string;
  /** parameters per module, from VisionLanguageModel.parameterCounts() */
  parameterCounts?: Record<string, number>;
  /** files in the folder (name -> bytes), listed at the end */
  files?: { path: string; size: number }[];
  /** plugins the model needs that nanovlm-ts does not include (recorded in nanovlm-ts.json) */
  plugins?: RecordedPlugin[];
  /** which nanoVLM's format config.json has (checkVLMConfigFields of what was saved); default v0.1 */
  nanovlmVersion?: ConfigFormat;
}

/** The nanoVLM commit whose format a HEAD-format checkpoint has (core/model/config.ts HEAD_VLM_CONFIG_DEFAULTS). */
export const NANOVLM_HEAD_COMMIT = '4e0c096';

const BASE_TAGS = ['nanovlm', 'nanovlm-ts', 'vision-language-model', 'image-text-to-text'];

/** The backbones the recipe started from: `model.from`, `model.vision.from`, `model.decoder.from` (repo ids only). */
export function baseModels(recipe: Record<string, any>): string[] {
  const m = recipe?.model ?? {};
  const out = [m.from, m.vision?.from, m.decoder?.from].filter((x): x is string => typeof x === 'string' && isRepoId(x));
  return [...new Set(out.map((x) => x.split('@')[0]))];
}

/** Hub datasets named by the recipe's data entries (`from` / `repo` / `repo_id` / `dataset` options that are repo ids). */
export function hubDatasets(recipe: Record<string, any>): string[] {
  const out: string[] = [];
  for (const role of ['train', 'val', 'eval']) {
    for (const e of asArray(recipe?.data?.[role])) {
      for (const k of ['from', 'repo', 'repo_id', 'dataset']) {
        const v = e?.[k];
        if (typeof v === 'string' && isRepoId(v)) out.push(v.split('@')[0]);
      }
    }
  }
  return [...new Set(out)];
}

function asArray(x: unknown): any[] {
  return Array.isArray(x) ? x : x ? [x] : [];
}

/** "synthetic-shapes (split: train, count: 4000)" for a plugin entry. */
function describeEntry(e: Record<string, unknown>): string {
  const opts = Object.entries(e ?? {})
    .filter(([k, v]) => k !== 'use' && v !== null && v !== undefined && typeof v !== 'object')
    .map(([k, v]) => `${k}: ${String(v)}`);
  return `\`${String(e?.use ?? '?')}\`` + (opts.length ? ` (${opts.join(', ')})` : '');
}

const esc = (s: unknown) => String(s).replace(/\|/g, '\\|').replace(/\n/g, ' ');

function fmtNumber(v: number): string {
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  return Math.abs(v) >= 1e-3 && Math.abs(v) < 1e6 ? v.toFixed(4) : v.toExponential(3);
}

function fmtFact(key: string, v: unknown): string {
  if (typeof v === 'number') {
    if (/(_s|_sec|_seconds|seconds)$/.test(key)) {
      if (v < 60) return `${Math.round(v * 10) / 10} s`;
      const h = Math.floor(v / 3600);
      const m = Math.floor((v % 3600) / 60);
      const s = Math.round(v % 60);
      return `${h ? `${h} h ` : ''}${m} min ${s} s`;
    }
    return fmtNumber(v);
  }
  // {metric: val_loss, value: 0.12, step: 500} -> "step 500: val_loss 0.1200"
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if (typeof o.metric === 'string' && typeof o.value === 'number') {
      return `${o.step !== undefined ? `step ${fmtFact('step', o.step)}: ` : ''}${o.metric} ${fmtNumber(o.value)}`;
    }
    return Object.entries(o).map(([k, x]) => `${humanKey(k).toLowerCase()} ${fmtFact(k, x)}`).join(', ');
  }
  if (Array.isArray(v)) return v.map((x) => fmtFact(key, x)).join(', ');
  return String(v);
}

/** Known run facts (core/run.ts, the train stage) in the order the card lists them. */
const FACT_LABELS: Record<string, string> = {
  train_seconds: 'Training loop time (all runs of it, resumes included)',
  train_steps: 'Optimizer steps',
  train_tokens: 'Tokens seen',
  batch_size: 'Effective batch size',
  final_train_loss: 'Final train loss',
  best: 'Best checkpoint',
  hardware: 'Hardware',
  backend: 'Backend',
  threads: 'Threads',
  started: 'Started',
};

function humanKey(k: string): string {
  const stage = /^stage_(\w+)_seconds$/.exec(k);
  if (stage) return `Stage ${stage[1]} (wall clock, this process)`;
  return k.replace(/[_-]+/g, ' ').replace(/^\w/, (c) => c.toUpperCase());
}

export function modelCard(input: ModelCardInput): string {
  const r = input.recipe ?? {};
  const front: Record<string, unknown> = {
    library_name: 'nanovlm-ts',
    license: input.license ?? r.publish?.license ?? 'apache-2.0',
    pipeline_tag: 'image-text-to-text',
    tags: [...new Set([...BASE_TAGS, ...(input.tags ?? [])])],
  };
  const bases = baseModels(r);
  if (bases.length) front.base_model = bases;
  const datasets = hubDatasets(r);
  if (datasets.length) front.datasets = datasets;

  const where = input.repoId ?? '<path/to/this/folder>';
  const head = input.nanovlmVersion === 'head';
  const L: string[] = [];
  L.push('---', stringify(front).trimEnd(), '---', '');
  L.push(`# ${input.name}`, '');
  L.push(
    input.description ??
      `A small vision-language model trained with nanovlm-ts (a TypeScript port of ` +
        `[nanoVLM](https://github.com/huggingface/nanoVLM)) from the recipe \`recipe.yaml\` in this folder. ` +
        (head
          ? `The checkpoint (\`config.json\` + \`model.safetensors\`) is in the format of nanoVLM ${NANOVLM_HEAD_COMMIT} (the format of nanoVLM-450M: image tokens as placeholders in the text, images split into tiles).`
          : `The checkpoint (\`config.json\` + \`model.safetensors\`) is in nanoVLM v0.1's format.`),
    '',
  );

  // ---- model
  const m = r.model ?? {};
  L.push('## Model', '', '| module | plugin | parameters |', '|---|---|---:|');
  const pc = input.parameterCounts ?? {};
  const rows: [string, unknown][] = [
    ['vision_encoder', m.vision],
    ['MP', m.projector],
    ['decoder', m.decoder],
  ];
  for (const [mod, entry] of rows) {
    L.push(`| ${mod} | ${entry ? describeEntry(entry as Record<string, unknown>) : '-'} | ${pc[mod] !== undefined ? fmtNumber(pc[mod]) : '-'} |`);
  }
  if (pc.total !== undefined) L.push(`| **total** | | **${fmtNumber(pc.total)}** |`);
  L.push('');
  if (bases.length) L.push(`Initialised from: ${bases.map((b) => `[${b}](https://huggingface.co/${b})`).join(', ')}.`, '');
  if (m.tokenizer) L.push(`Tokenizer: ${describeEntry(m.tokenizer)}.`, '');

  // ---- data
  L.push('## Training data', '');
  const data = r.data ?? {};
  let anyData = false;
  for (const role of ['train', 'val', 'eval']) {
    const entries = asArray(data[role]);
    entries.forEach((e, i) => {
      anyData = true;
      L.push(`- \`data.${role}[${i}]\`: ${describeEntry(e)}`);
    });
  }
  if (!anyData) L.push('No data section in the recipe (the model was not trained by this run).');
  L.push('');
  if (r.train) {
    const t = r.train;
    const keys = ['batch_size', 'grad_accum', 'epochs', 'max_steps'].filter((k) => t[k] !== undefined && t[k] !== null);
    if (keys.length) L.push(`Training settings: ${keys.map((k) => `${k} ${t[k]}`).join(', ')}` + (r.optimizer?.use ? `, optimizer \`${r.optimizer.use}\`` : '') + '.', '');
  }

  // ---- eval
  L.push('## Evaluation', '');
  const results = input.evalResults ?? [];
  if (results.length) {
    L.push('| evaluator | dataset | metric | value |', '|---|---|---|---:|');
    for (const res of results) {
      for (const [k, v] of Object.entries(res.metrics)) L.push(`| ${esc(res.evaluator)} | ${esc(res.dataset)} | ${esc(k)} | ${fmtNumber(v)} |`);
    }
    for (const res of results.filter((x) => x.breakdown && Object.keys(x.breakdown).length)) {
      const metrics = [...new Set(Object.values(res.breakdown!).flatMap((b) => Object.keys(b)))];
      L.push('', `${esc(res.evaluator)} on ${esc(res.dataset)}, by category:`, '', `| category | ${metrics.join(' | ')} |`, `|---|${metrics.map(() => '---:').join('|')}|`);
      for (const [cat, b] of Object.entries(res.breakdown!)) L.push(`| ${esc(cat)} | ${metrics.map((k) => (b[k] !== undefined ? fmtNumber(b[k]) : '-')).join(' | ')} |`);
    }
  } else {
    L.push('No evaluation was run.');
  }
  L.push('');

  // ---- training run
  L.push('## Training run', '', '| | |', '|---|---|');
  const facts: Record<string, unknown> = { ...(input.facts ?? {}) };
  if (input.backend) facts.backend = `tfjs ${input.backend}`;
  delete facts.parameters; // in the model table
  const order = Object.keys(FACT_LABELS).filter((k) => k in facts);
  for (const k of [...order, ...Object.keys(facts).filter((k) => !(k in FACT_LABELS))]) {
    const v = facts[k];
    if (v === undefined || v === null) continue;
    L.push(`| ${esc(FACT_LABELS[k] ?? humanKey(k))} | ${esc(fmtFact(k, v))} |`);
  }
  L.push('');

  // ---- usage
  const plugins = input.plugins ?? [];
  const modelPlugins = plugins.filter((p) => ['vision', 'projector', 'decoder'].includes(p.kind));
  if (plugins.length) {
    L.push(
      '## Plugins this model needs',
      '',
      'Parts of this model come from plugins that are not part of nanovlm-ts. `nanovlm-ts.json` records them, and',
      '`vlm` / `loadModel` import them from there (a path is relative to this folder) when the file is on this machine',
      'outside the model folder; otherwise get the module and pass it with `--plugins <file.ts | package>` (or load it',
      'into the registry yourself). Plugin code is never run from a downloaded model folder.',
      '',
      '| kind | plugin | module |',
      '|---|---|---|',
      ...plugins.map((p) => `| ${esc(p.kind)} | \`${esc(p.name)}\` | \`${esc(p.module)}\` |`),
      '',
    );
  }
  const pluginFlags = plugins.map((p) => ` --plugins ${p.module}`).join('');
  L.push(
    '## How to use',
    '',
    '### TypeScript (nanovlm-ts)',
    '',
    '```ts',
    `// from the root of a nanovlm-ts checkout: the library (core/index.ts) and its built-in plugins`,
    `import { readFileSync } from 'node:fs';`,
    `import { createRegistry, generateText, loadModel } from './core/index.ts';`,
    `import builtins from './plugins/index.ts';`,
    '',
    `const registry = createRegistry(builtins);${plugins.length ? ' // loadModel imports the recorded plugins into it' : ''}`,
    `const { model, tokenizer, imageProcessor } = await loadModel('${where}', { registry });`,
    `const [answer] = await generateText(model, tokenizer, imageProcessor,`,
    `  [{ prompt: 'Question: What is in the image? Answer:', image: readFileSync('picture.png') }], { maxNewTokens: 16 });`,
    '```',
    '',
    'or from the command line:',
    '',
    '```sh',
    `vlm generate --model ${where}${pluginFlags} --image picture.png --prompt "What is in the image?"`,
    '```',
    '',
    head ? `### PyTorch (nanoVLM ${NANOVLM_HEAD_COMMIT})` : '### PyTorch (nanoVLM v0.1)',
    '',
  );
  if (modelPlugins.length) {
    L.push(
      `PyTorch nanoVLM cannot load this model: its ${modelPlugins.map((p) => `${p.kind} (\`${p.name}\`)`).join(', ')} ` +
        `${modelPlugins.length > 1 ? 'are' : 'is'} not one of nanoVLM's modules, so \`config.json\` describes an architecture ` +
        "nanoVLM does not have. Use nanovlm-ts with the plugin above.",
      '',
    );
  } else if (head) {
    L.push(
      `The weights and \`config.json\` are in the format of nanoVLM at commit ${NANOVLM_HEAD_COMMIT} (its \`VLMConfig\` with ` +
        '`vlm_extra_tokens`, `mp_image_token_length`, `lm_chat_template`, no `lm_eos_token_id`), so a checkout of that commit ' +
        'loads this folder directly (nanoVLM v0.1 does not: its `VLMConfig` refuses those fields, and it puts the image before the text):',
      '',
      '```python',
      `# git clone https://github.com/huggingface/nanoVLM && cd nanoVLM && git checkout ${NANOVLM_HEAD_COMMIT}`,
      'from models.vision_language_model import VisionLanguageModel',
      '',
      `model = VisionLanguageModel.from_pretrained("${where}")`,
      '```',
      '',
    );
  } else {
    L.push(
      "The weights and `config.json` are nanoVLM v0.1's own format, so nanoVLM v0.1 loads this folder directly " +
        "(a checkout of the tag `v0.1`: later nanoVLM versions changed `VLMConfig` and refuse this config.json's `lm_eos_token_id`):",
      '',
      '```python',
      '# git clone --branch v0.1 https://github.com/huggingface/nanoVLM && cd nanoVLM',
      'from models.vision_language_model import VisionLanguageModel',
      '',
      `model = VisionLanguageModel.from_pretrained("${where}")`,
      '```',
      '',
    );
  }

  if (input.files?.length) {
    L.push('## Files', '', '| file | bytes |', '|---|---:|');
    for (const f of input.files) L.push(`| \`${esc(f.path)}\` | ${fmtNumber(f.size)} |`);
    L.push('');
  }
  return redact(L.join('\n'));
}
