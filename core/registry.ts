// The plugin registry: a thin layer over an inversify container. One service identifier per
// plugin kind, one named binding per plugin (`use:` name). `create(kind, entry, ctx)` checks the
// entry's options against the plugin's JSON Schema (defaults filled in), then calls the plugin's
// create(); anything a plugin throws comes back naming the plugin and the recipe position.
// Plugin authors never see inversify: they write `definePlugin({...})` objects.
import { Container } from 'inversify';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isUserError, UserError, UserErrors, type Where } from './errors.ts';
import { declaresNanovlm, isPlugin, type NanovlmFormat, type Plugin } from './plugin.ts';
import { describeErrors, validator } from './recipe/ajv.ts';
import { didYouMean } from './recipe/did-you-mean.ts';
import { parsePath, SourceMap } from './recipe/positions.ts';
import { PLUGIN_KINDS, type PluginContext, type PluginKind, type PluginProducts, type RecipePositions, type RegistryLike } from './types.ts';

/** no recipe positions: errors carry the YAML path only */
const NO_POSITIONS: RecipePositions = new SourceMap();

export interface Registered {
  plugin: Plugin;
  /** 'built-in' or the module it was loaded from */
  source: string;
}

const ids: Record<PluginKind, symbol> = Object.fromEntries(PLUGIN_KINDS.map((k) => [k, Symbol.for(`nanovlm:${k}`)])) as Record<
  PluginKind,
  symbol
>;

export class Registry implements RegistryLike {
  private container = new Container();
  private readonly byKind = new Map<PluginKind, Map<string, Registered>>(PLUGIN_KINDS.map((k) => [k, new Map()]));
  constructor(builtins: readonly Plugin[] = []) {
    for (const p of builtins) this.register(p, 'built-in');
  }

  /** Add a plugin. A name already taken is an error unless the new plugin says `replaces: <that name>`. */
  register(plugin: Plugin, source: string, where?: Where): void {
    if (!isPlugin(plugin) || !ids[plugin.kind as PluginKind]) {
      throw new UserError(`${source}: not a plugin (need {kind, name, description, options, create}; kind one of ${PLUGIN_KINDS.join(', ')})`, { where });
    }
    const kind = plugin.kind as PluginKind;
    const names = this.byKind.get(kind)!;
    const existing = names.get(plugin.name);
    if (existing?.plugin === plugin) return; // the same module loaded twice
    if (plugin.replaces !== undefined) {
      const old = names.get(plugin.replaces);
      if (!old) {
        throw new UserError(`${kind} plugin "${plugin.name}" from ${source} replaces "${plugin.replaces}", which is not registered${didYouMean(plugin.replaces, names.keys())}`, { where });
      }
      names.delete(plugin.replaces);
      names.set(plugin.replaces, { plugin, source }); // recipes naming the old plugin get the new one
    } else if (existing) {
      throw new UserError(
        `${kind} plugin "${plugin.name}" from ${source} clashes with the ${existing.source} plugin of that name`,
        { where, hint: `rename it, or add \`replaces: '${plugin.name}'\` to the plugin to replace the ${existing.source} one deliberately` },
      );
    }
    names.set(plugin.name, { plugin, source });
    this.rebind();
  }

  /** Bind every plugin in a fresh container (registration is rare; lookups are what matter). */
  private rebind(): void {
    const c = new Container();
    for (const [kind, names] of this.byKind) {
      for (const [name, r] of names) c.bind<Plugin>(ids[kind]).toConstantValue(r.plugin).whenNamed(name);
    }
    this.container = c;
  }

  has(kind: PluginKind, name: string): boolean {
    return this.container.isBound(ids[kind], { name });
  }

  get(kind: PluginKind, name: string): Plugin {
    if (!this.has(kind, name)) throw this.unknown(kind, name);
    return this.container.get<Plugin>(ids[kind], { name });
  }

  plugin(kind: PluginKind, name: string): Plugin | undefined {
    return this.byKind.get(kind)!.get(name)?.plugin;
  }

  /**
   * The plugin of `kind` declaring nanoVLM interoperability (Plugin.nanovlm) for `format` (v0.1, or
   * HEAD: `nanovlm.head`): the last registered one wins (a user's replacement).
   */
  nanovlmPlugin(kind: PluginKind, format: NanovlmFormat = 'v0.1'): Plugin | undefined {
    return [...this.byKind.get(kind)!.values()].map((r) => r.plugin).filter((p) => declaresNanovlm(p, format)).at(-1);
  }

  /** where a plugin came from ('built-in' or a module path) */
  source(kind: PluginKind, name: string): string | undefined {
    return this.byKind.get(kind)!.get(name)?.source;
  }

  /**
   * The file that defines a plugin (relative to the working directory when below it), for people
   * to jump to: its definePlugin call site, else the module it was loaded from.
   */
  definedIn(kind: PluginKind, name: string): string | undefined {
    const r = this.byKind.get(kind)!.get(name);
    if (!r) return undefined;
    const file = r.plugin.file ?? (r.source === 'built-in' ? undefined : r.source);
    if (!file) return r.source;
    const rel = relative(process.cwd(), file);
    return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file;
  }

  names(kind: PluginKind): string[] {
    return [...this.byKind.get(kind)!.keys()];
  }

  list(kind?: PluginKind): Registered[] {
    const kinds = kind ? [kind] : PLUGIN_KINDS;
    return kinds.flatMap((k) => [...this.byKind.get(k)!.values()]);
  }

  unknown(kind: PluginKind, name: string, where?: Where): UserError {
    const names = this.names(kind);
    return new UserError(`unknown ${kind} plugin "${name}"${didYouMean(name, names)}`, {
      where,
      hint: names.length ? `${kind} plugins: ${names.join(', ')}` : `no ${kind} plugins are registered`,
    });
  }

  /**
   * Check an entry's options against its plugin's schema, filling in defaults (in place, so the
   * resolved recipe shows them). Returns the problems; `at` is the entry's YAML path.
   */
  checkOptions(kind: PluginKind, entry: Record<string, unknown>, at: string, positions: RecipePositions = NO_POSITIONS): UserError[] {
    const base = parsePath(at) ?? [];
    const name = entry.use as string;
    if (!this.has(kind, name)) return [this.unknown(kind, name, positions.lookup([...base, 'use']))];
    const plugin = this.get(kind, name);
    const { use, ...options } = entry;
    const validate = validator(plugin.options);
    const ok = validate(options);
    for (const k of Object.keys(entry)) delete entry[k];
    Object.assign(entry, { use }, options);
    if (ok) return [];
    return describeErrors(validate.errors ?? [], base, 'option').map(
      (p) => new UserError(`${p.message} (plugin ${plugin.name})`, { where: positions.lookup(p.path, { key: p.atKey }) }),
    );
  }

  async create<K extends PluginKind>(
    kind: K,
    entry: { use: string; [k: string]: unknown },
    context: Omit<PluginContext, 'registry'>,
  ): Promise<PluginProducts[K]> {
    const positions = context.positions ?? NO_POSITIONS;
    const where = positions.lookup(context.yamlPath);
    if (!entry || typeof entry.use !== 'string') throw new UserError(`expected a ${kind} plugin entry {use: <name>, ...}`, { where });
    const copy = structuredClone(entry);
    const problems = this.checkOptions(kind, copy, context.yamlPath, positions);
    if (problems.length) throw problems.length === 1 ? problems[0] : new UserErrors(problems);
    const plugin = this.get(kind, entry.use);
    const { use: _use, ...options } = copy;
    try {
      return (await plugin.create(options, { ...context, registry: this })) as PluginProducts[K];
    } catch (e) {
      throw wrapPluginError(e, plugin, where);
    }
  }

  /**
   * Load the modules a recipe lists under `plugins:` (paths relative to `baseDir`, or npm package
   * names). A module exports a plugin or an array of plugins, as default or named exports.
   */
  async loadModules(specs: { spec: string; baseDir: string; where: Where }[]): Promise<void> {
    for (const { spec, baseDir, where } of specs) {
      const isPath = isModulePath(spec, baseDir);
      let url: string;
      if (isPath) {
        const file = resolve(baseDir, spec);
        if (!existsSync(file)) {
          throw new UserError(`plugin module not found: ${file}`, { where, hint: 'an entry ending in .ts/.js/.mjs (or starting with ./ or /) is a file path, relative to the recipe file; other entries are npm package names' });
        }
        url = pathToFileURL(file).href;
      } else {
        try {
          url = pathToFileURL(createRequire(join(baseDir, 'recipe.yaml')).resolve(spec)).href;
        } catch {
          url = spec; // let node resolve it from here (ESM-only packages)
        }
      }
      let mod: Record<string, unknown>;
      try {
        mod = await import(url);
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (!isPath && (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && String((e as Error).message).includes(spec)) {
          throw new UserError(`plugin package "${spec}" is not installed`, {
            where,
            hint: `npm install ${spec}; or, for a file, write a path: ./${spec} (relative to the recipe) or an absolute one`,
          });
        }
        if (code === 'ERR_REQUIRE_CYCLE_MODULE' || code === 'ERR_REQUIRE_ESM') {
          // an ESM file (import/export) in a folder node treats as CommonJS (no package.json "type": "module")
          throw new UserError(`plugin module ${spec} uses import/export but node loads it as CommonJS (its folder has no package.json with "type": "module")`, {
            where,
            cause: e,
            hint: 'rename it to .mts (or .mjs), or put a package.json containing {"type": "module"} beside it',
          });
        }
        throw new UserError(`plugin module ${spec} failed to load: ${(e as Error).message?.split('\n')[0]}`, {
          where,
          cause: e,
          hint: 'fix the module (run with --debug for the stack trace)',
        });
      }
      const found = new Set<Plugin>();
      for (const v of Object.values(mod)) for (const p of Array.isArray(v) ? v : [v]) if (isPlugin(p)) found.add(p);
      if (found.size === 0) {
        throw new UserError(`plugin module ${spec} exports no plugin`, {
          where,
          hint: 'export default definePlugin({kind, name, description, options, create}) (or an array of them)',
        });
      }
      const source = isPath ? resolve(baseDir, spec) : spec;
      for (const p of found) this.register(p, source, where);
    }
  }
}

/**
 * A `plugins:` entry is a file path when it starts with `.` or `/`, or ends in a script extension
 * (.ts .mts .cts .js .mjs .cjs) and is not a scoped package (`plugins/x.ts` is a path); a bare
 * name that ends in .js is still a package (`chart.js`) unless such a file exists.
 */
export function isModulePath(spec: string, baseDir: string): boolean {
  if (spec.startsWith('.') || isAbsolute(spec)) return true;
  if (spec.startsWith('@') || !/\.[mc]?[jt]s$/.test(spec)) return false;
  return spec.includes('/') || spec.includes('\\') || existsSync(resolve(baseDir, spec));
}

function wrapPluginError(e: unknown, plugin: Plugin, where: Where): unknown {
  const who = `${plugin.kind} plugin "${plugin.name}"`;
  if (e instanceof UserErrors) return e;
  if (e instanceof UserError) {
    if (e.where.file) return e;
    return new UserError(`${who}: ${e.message}`, { where: { ...where, ...e.where, file: where.file, line: where.line, col: where.col }, hint: e.hint, cause: e });
  }
  if (isUserError(e)) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new UserError(`${who} failed: ${msg}`, { where, cause: e, hint: 'run with --debug for the stack trace' });
}

/**
 * `--plugins <file|package>` (repeatable) of the commands that use a saved model (generate, eval,
 * compare): plugin modules named on the command line, paths relative to the working directory.
 */
export async function loadPluginFlags(registry: RegistryLike, specs: readonly string[] | undefined): Promise<void> {
  for (const spec of specs ?? []) await registry.loadModules([{ spec, baseDir: process.cwd(), where: { file: `--plugins ${spec}` } }]);
}

export function createRegistry(builtins: readonly Plugin[] = []): Registry {
  return new Registry(builtins);
}

