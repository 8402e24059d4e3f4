// The `local` publisher: writes the model folder in the Hub layout —
//   config.json + model.safetensors (nanoVLM format) + nanovlm-ts.json (the recipe's model section),
//   the tokenizer files, the resolved recipe.yaml, loss.png (if the run drew one) and README.md
//   (the model card, core/model-card.ts)
// With model.adapters the weights are merged into model.safetensors (a plain nanoVLM checkpoint);
// `adapter_files: true` also writes PEFT's adapter_config.json + adapter_model.safetensors beside them.
// into <runDir>/model/ (or the `path` option). The folder is assembled under a temp name and
// renamed into place, so an interrupted publish never leaves a half-written folder, and a folder
// the user already had is only replaced when it is one of ours (or with --force).
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import { arch, cpus, platform, totalmem } from 'node:os';
import { stringify } from 'yaml';
import { definePlugin } from 'nanovlm-ts/plugin-api';
import { UserError } from 'nanovlm-ts/plugin-api';
import { modelCard } from '../../core/model-card.ts';
import { checkVLMConfigFields } from '../../core/model/config.ts';
import { isRepoId, redact, resolveSource, safeJoin } from '../../core/hub/index.ts';
import { checkpointModelSection, recordPlugins, saveCheckpoint } from '../../core/weights/model-folder.ts';
import { saveAdapterFiles } from '../../core/model/adapters.ts';
import type { Publisher, RunContext } from 'nanovlm-ts/plugin-api';

export interface LocalOptions {
  path?: string;
  /** where the publisher entry sits in the recipe (`publish.publishers[0]`), for messages */
  yamlPath?: string;
  license?: string;
  tags?: string[];
  description?: string;
  /** with model.adapters: also write the PEFT adapter files (core/model/adapters.ts) */
  adapter_files?: boolean;
}

/** The repo id a `hub` publisher of this recipe will upload to (for the card's usage lines). */
function plannedRepoId(recipe: Record<string, any>): string | null {
  for (const e of recipe?.publish?.publishers ?? []) {
    if (e?.use === 'hub') {
      const id = e.repo_id ?? recipe.publish?.repo_id;
      if (typeof id === 'string' && isRepoId(id)) return id;
    }
  }
  return null;
}

/**
 * The model section to store in the sidecar: the recipe's, completed with the components of the
 * `model.from` checkpoint when the recipe names only `from` (the folder must say which plugins
 * and shapes its weights belong to; the recipe's tokenizer / image processor entries win).
 */
async function effectiveModelSection(ctx: RunContext): Promise<Record<string, unknown>> {
  const m: Record<string, any> = { ...(ctx.recipe?.model ?? {}) };
  if ((m.vision && m.projector && m.decoder) || typeof m.from !== 'string') return m;
  const folder = await resolveSource(m.from, {
    baseDir: ctx.recipeDir,
    repoType: 'model',
    files: (p) => p === 'config.json' || p === 'nanovlm-ts.json',
  });
  const { section } = checkpointModelSection(folder, ctx.registry);
  const out: Record<string, unknown> = { ...section };
  for (const [k, v] of Object.entries(m)) if (v !== null && v !== undefined) out[k] = v;
  return out;
}

/** "2 × Intel Xeon ..., 24 GiB RAM, linux x64, Node 20.20.2" */
function hardware(): string {
  const c = cpus();
  return `${c.length} × ${c[0]?.model?.trim() ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, ${platform()} ${arch()}, Node ${process.versions.node}`;
}

/** True when `dir` is a folder this publisher wrote (so it may be replaced). */
export function isOurs(dir: string): boolean {
  try {
    return existsSync(join(dir, 'config.json')) && /library_name: nanovlm-ts/.test(readFileSync(join(dir, 'README.md'), 'utf8'));
  } catch {
    return false;
  }
}

async function listFiles(dir: string, base = dir): Promise<{ path: string; size: number }[]> {
  const out: { path: string; size: number }[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p, base)));
    else out.push({ path: relative(base, p).split(sep).join('/'), size: (await stat(p)).size });
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

/** `dest` holds files nanovlm-ts did not write: never replaced without --force */
export function foreignFolder(dest: string, yamlPath: string): UserError {
  return new UserError(`${dest} already exists and is not a model folder written by nanovlm-ts; nothing was changed`, {
    where: { yamlPath },
    hint: 'choose another `path`, empty the folder, or pass --force to replace it',
  });
}

/** Write the model folder for the run in `ctx` to `dest`; returns its absolute path. */
export async function writeModelFolder(ctx: RunContext, dest: string, opts: LocalOptions = {}): Promise<string> {
  if (!ctx.model) {
    throw new UserError('publish needs a model, and none was loaded', {
      where: { yamlPath: 'stages' },
      hint: 'run the `load` stage (and usually `train`) before `publish`: stages: [load, train, eval, publish]',
    });
  }
  dest = resolve(dest);
  if (existsSync(dest) && (await readdir(dest)).length > 0 && !isOurs(dest) && !ctx.flags.force) {
    throw foreignFolder(dest, opts.yamlPath ? `${opts.yamlPath}.path` : 'publish.publishers');
  }
  const tmp = `${dest}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await mkdir(tmp, { recursive: true });
  try {
    // weights + nanoVLM config + sidecar (MODEL's checkpoint writer)
    // (+ the plugin modules the model needs that nanovlm-ts does not include, relative to `dest`)
    const section = await effectiveModelSection(ctx);
    const plugins = recordPlugins(section, ctx.registry, dest);
    await saveCheckpoint(ctx.model, tmp, { model: section, plugins }); // with model.adapters: merged
    if (opts.adapter_files) {
      if (ctx.model.adapters.length) await saveAdapterFiles(ctx.model, tmp, typeof section.from === 'string' ? section.from : null);
      else ctx.log.warn(`${opts.yamlPath ?? 'publish'}.adapter_files: the model has no adapters (model.adapters), so no adapter file was written`);
    }

    // tokenizer files (names checked: a tokenizer plugin cannot write outside the folder)
    for (const [name, content] of Object.entries(ctx.tokenizer?.files() ?? {})) {
      const p = safeJoin(tmp, name, 'the tokenizer files');
      await mkdir(dirname(p), { recursive: true });
      await writeFile(p, content);
    }

    // the resolved recipe, as the run saved it
    const runRecipe = join(ctx.runDir, 'recipe.yaml');
    const recipeText = existsSync(runRecipe) ? await readFile(runRecipe, 'utf8') : stringify(ctx.recipe);
    await writeFile(join(tmp, 'recipe.yaml'), redact(recipeText));

    const curve = join(ctx.runDir, 'loss.png');
    if (existsSync(curve)) await copyFile(curve, join(tmp, 'loss.png'));

    const card = modelCard({
      name: String(ctx.recipe?.name ?? 'nanovlm-ts model'),
      recipe: ctx.recipe,
      repoId: plannedRepoId(ctx.recipe),
      license: opts.license ?? ctx.recipe?.publish?.license,
      tags: opts.tags,
      description: opts.description,
      evalResults: ctx.evalResults,
      facts: { hardware: hardware(), ...ctx.facts },
      backend: ctx.backend,
      parameterCounts: ctx.model.parameterCounts(),
      plugins,
      nanovlmVersion: checkVLMConfigFields(JSON.parse(await readFile(join(tmp, 'config.json'), 'utf8'))), // the format saved: v0.1 or HEAD
      files: await listFiles(tmp),
    });
    await writeFile(join(tmp, 'README.md'), card);

    // swap into place
    const old = existsSync(dest) ? `${dest}.old-${process.pid}-${randomBytes(4).toString('hex')}` : null;
    if (old) await rename(dest, old);
    await rename(tmp, dest);
    if (old) await rm(old, { recursive: true, force: true });
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  const rel = relative(ctx.runDir, dest);
  ctx.artifacts.model = rel.startsWith('..') || isAbsolute(rel) ? dest : rel;
  return dest;
}

export function localPublisher(opts: LocalOptions, recipeDir: string): Publisher {
  return {
    name: 'local',
    async publish(ctx, folder) {
      const dest = opts.path ? resolve(recipeDir, opts.path) : folder;
      const out = await writeModelFolder(ctx, dest, opts);
      const files = await listFiles(out);
      ctx.log.info(`model folder: ${out} (${files.length} files: ${files.map((f) => f.path).join(', ')})`);
      return out;
    },
  };
}

export default definePlugin({
  kind: 'publisher',
  name: 'local',
  description:
    'Writes the model folder (config.json + model.safetensors in nanoVLM format, tokenizer files, recipe.yaml, README.md model card) to <run>/model or `path`.',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      path: { type: 'string', minLength: 1, description: 'Folder to write (relative to the recipe file); default <run dir>/model.' },
      license: { type: 'string', minLength: 1, description: 'License in the model card (default: publish.license).' },
      tags: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'Extra tags for the model card.' },
      description: { type: 'string', description: 'Replaces the first paragraph of the model card.' },
      adapter_files: { type: 'boolean', default: false, description: 'With model.adapters (LoRA): also write the adapters unmerged as PEFT files, adapter_config.json + adapter_model.safetensors (PEFT key names), beside the merged model.safetensors.' },
    },
  } as const,
  create(options, context) {
    return localPublisher({ ...options, yamlPath: context.yamlPath }, context.recipeDir);
  },
});
