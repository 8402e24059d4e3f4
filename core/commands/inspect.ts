// `vlm inspect <recipe> [key.path=value ...] [--json]`: the resolved recipe, the plugin graph
// (which plugin sits at which YAML path, from which module), parameter counts per module computed
// from the recipe's shapes alone (each plugin's describe(); no weights, no download), and a
// float32 memory estimate for training: params + grads + AdamW state (exp_avg, exp_avg_sq).
import { parseArgs } from 'node:util';
import type { CommandEnv } from '../cli.ts';
import { UserError } from '../errors.ts';
import { describeModules, linearLayersOf, MODULE_PREFIX } from '../model/describe.ts';
import type { ModuleDescription } from '../plugin.ts';
import { isOverride } from '../recipe/overrides.ts';
import { formatPath } from '../recipe/positions.ts';
import { recipeToYaml, resolveRecipe } from '../recipe/index.ts';
import { pluginEntries, recipeSchemaFor, stagePlugins } from '../recipe/schema.ts';
import type { Registry } from '../registry.ts';

export const INSPECT_USAGE = `Usage: vlm inspect <recipe.yaml> [key.path=value ...] [--json]

Resolves the recipe as vlm run would (extends, plugins:, overrides, defaults; it is validated as by
vlm validate) and shows, without building the model or opening data:
  - the resolved recipe (every default filled in);
  - the plugin graph: which plugin sits at which YAML path, built in or from which module;
  - parameters per module (vision_encoder, MP, decoder) and in total, from the plugins' describe()
    and the recipe's shapes alone (no weights, no download; a module that only model.from describes
    is shown as unknown), trainable ones after optimizer.freeze (with model.adapters: the adapters'
    parameters alone, the base model frozen);
  - a float32 memory estimate for training: parameters + gradients + AdamW state (+ activations,
    which vlm memory measures).
  --json        the same as one JSON object {recipe, plugins, parameters}

Exit code 0: shown; 1: the recipe has a problem (every one printed, as vlm validate) or a usage error.`;

export interface ParamReport {
  /** per nanoVLM module prefix: vision_encoder, MP, decoder */
  modules: { module: string; plugin: string; params: number | null; note?: string }[];
  total: number | null;
  /** parameters that train (not under a prefix of optimizer.freeze) */
  trainable: number | null;
  memory: { params: number; grads: number; adamw: number; total: number } | null;
}

/** optimizer.freeze semantics: "decoder" freezes "decoder.*" (a trailing dot is allowed) */
function frozen(name: string, freeze: string[]): boolean {
  return freeze.some((f) => {
    const p = f.endsWith('.') ? f.slice(0, -1) : f;
    return p === '' || name === p || name.startsWith(p + '.');
  });
}

const BYTES = 4; // float32

function count(d: ModuleDescription): number {
  return Object.values(d.params).reduce((s, shape) => s + shape.reduce((p, n) => p * n, 1), 0);
}

/** Parameter counts of the model a resolved recipe describes, from the plugins' describe(). */
export function parameterReport(recipe: Record<string, any>, registry: Registry): ParamReport {
  const m = recipe.model ?? {};
  const freeze: string[] = Array.isArray(recipe.optimizer?.freeze) ? recipe.optimizer.freeze : [];
  const described = describeModules(recipe, registry);
  const modules: ParamReport['modules'] = described.map(({ module, plugin, desc, note }) => ({ module, plugin, params: desc ? count(desc) : null, ...(note ? { note } : {}) }));
  let trainable = 0;
  for (const { module, desc } of described)
    for (const [name, shape] of Object.entries(desc?.params ?? {})) {
      if (!frozen(MODULE_PREFIX[module] + name, freeze)) trainable += shape.reduce((p, n) => p * n, 1);
    }
  // model.adapters: described over the modules' linear layers; they alone train (the base model is frozen)
  const adapters: { use: string; [k: string]: unknown }[] = Array.isArray(m.adapters) ? m.adapters : [];
  if (adapters.length) {
    const linearLayers = linearLayersOf(described, { partial: true })!;
    trainable = 0;
    adapters.forEach((entry, i) => {
      const module = `adapters[${i}]`;
      const plugin = registry.get('adapter', entry.use);
      const { use: _u, ...options } = entry;
      try {
        if (!plugin.describe) throw new Error(`plugin ${entry.use} has no describe(): count unknown until it is built`);
        const n = count(plugin.describe(options, { linearLayers, yamlPath: `model.adapters[${i}]` }));
        modules.push({ module, plugin: entry.use, params: n });
        trainable += n;
      } catch (e) {
        modules.push({ module, plugin: entry.use, params: null, note: (e as Error).message });
      }
    });
  }
  const known = modules.every((x) => x.params !== null);
  const total = known ? modules.reduce((s, x) => s + x.params!, 0) : null;
  const memory =
    total === null
      ? null
      : { params: total * BYTES, grads: trainable * BYTES, adamw: 2 * trainable * BYTES, total: (total + 3 * trainable) * BYTES };
  return { modules, total, trainable: total === null ? null : trainable, memory };
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++;
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

const fmt = (n: number) => n.toLocaleString('en-US');

export async function main(argv: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  const files = positionals.filter((p) => !isOverride(p));
  if (values.help) {
    env.stdout.write(INSPECT_USAGE + '\n');
    return 0;
  }
  if (files.length !== 1) throw new UserError('vlm inspect needs one recipe file', { hint: 'vlm inspect recipes/smol-222m.yaml' });
  const r = await resolveRecipe(files[0], { registry: env.registry, overrides: positionals.filter(isOverride) });
  const graph = pluginEntries(r.data, recipeSchemaFor(stagePlugins(env.registry)), (kind, name) => env.registry.plugin(kind, name)?.options).map(({ path, kind, entry }) => ({
    path: formatPath(path),
    kind,
    plugin: entry.use as string,
    source: env.registry.definedIn(kind, entry.use as string) ?? '?',
  }));
  (r.data.stages as string[]).forEach((s, i) => graph.push({ path: `stages[${i}]`, kind: 'stage', plugin: s, source: env.registry.definedIn('stage', s) ?? '?' }));
  const report = parameterReport(r.data, env.registry);

  if (values.json) {
    env.stdout.write(JSON.stringify({ recipe: r.data, plugins: graph, parameters: report }, null, 2) + '\n');
    return 0;
  }
  const out: string[] = [];
  out.push(`== resolved recipe (${r.chain.join(' <- ')})`, recipeToYaml(r).split('\n').slice(1).join('\n').trimEnd(), '');
  out.push('== plugins');
  const w = Math.max(...graph.map((g) => g.path.length));
  for (const g of graph) out.push(`  ${g.path.padEnd(w)}  ${g.kind}/${g.plugin}  (${g.source})`);
  out.push('', '== parameters');
  for (const x of report.modules) {
    out.push(`  ${x.module.padEnd(15)} ${x.plugin.padEnd(16)} ${x.params === null ? `?  (${x.note})` : fmt(x.params).padStart(14)}`);
  }
  out.push(`  ${'total'.padEnd(32)} ${report.total === null ? '? (some modules unknown)' : fmt(report.total).padStart(14)}`);
  if (report.trainable !== null && report.total !== null) {
    const freeze: string[] = Array.isArray(r.data.optimizer?.freeze) ? r.data.optimizer.freeze : [];
    out.push(`  ${'trainable'.padEnd(32)} ${fmt(report.trainable).padStart(14)}`);
    const adapted = Array.isArray(r.data.model?.adapters) && r.data.model.adapters.length > 0;
    out.push(`  ${'frozen'.padEnd(32)} ${fmt(report.total - report.trainable).padStart(14)}  (${adapted ? 'model.adapters: the base model' : `optimizer.freeze: ${freeze.length ? freeze.join(', ') : 'none'}`})`);
  }
  if (report.memory) {
    const mem = report.memory;
    out.push('', '== memory estimate for training (float32)');
    out.push(`  parameters        ${bytes(mem.params).padStart(10)}`);
    out.push(`  gradients         ${bytes(mem.grads).padStart(10)}  (trainable parameters)`);
    out.push(`  AdamW state (x2)  ${bytes(mem.adamw).padStart(10)}  (exp_avg + exp_avg_sq of trainable parameters)`);
    out.push(`  total             ${bytes(mem.total).padStart(10)}  + activations (grow with train.batch_size x sequence length; measure with vlm memory)`);
  }
  env.stdout.write(out.join('\n') + '\n');
  return 0;
}

