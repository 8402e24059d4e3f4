// One run: its directory `runs/<name>-<YYYYMMDD-HHMMSS>/` (recipe.yaml = the resolved recipe,
// run.log, metrics.jsonl; stages add checkpoints/, eval/, model/, loss.png), the RunContext the
// stages share, and Ctrl-C handling (first SIGINT/SIGTERM aborts ctx.signal so long stages stop
// cleanly between steps; a second one exits at once).
import { appendFileSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UserError } from './errors.ts';
import { recipeToYaml, type ResolvedRecipe } from './recipe/index.ts';
import type { Registry } from './registry.ts';
import type { Logger, RunContext } from './types.ts';

export interface RunFlags {
  resume?: string;
  force?: boolean;
  dryRun?: boolean;
  debug?: boolean;
}

export interface Run {
  ctx: RunContext;
  /** where console lines go; the pipeline redirects it into the live stage line */
  console: { write(line: string): void };
  /** the command's output streams (process.stdout / process.stderr unless given): the stage lines of plain output */
  streams: { stdout: { write(s: string): unknown }; stderr: { write(s: string): unknown } };
  /** remove the signal handlers (call when the run ends) */
  close(): void;
}

/** `{recipe, overrides}`: the recipe file and overrides a run was started with */
export const RUN_JSON = 'run.json';

/** 20261127-061502 */
export function timestamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** Create (or, with --resume, reopen) the run directory and the RunContext. */
export function createRun(
  recipe: ResolvedRecipe,
  opts: {
    registry: Registry;
    backend: string;
    flags: RunFlags;
    stdout?: { write(s: string): unknown };
    stderr?: { write(s: string): unknown };
    runDir?: string;
    /** the command-line overrides, recorded in run.json so `--resume <dir>` can repeat them */
    overrides?: string[];
  },
): Run {
  const data = recipe.data;
  let runDir: string;
  if (opts.flags.resume) {
    runDir = resolve(opts.flags.resume);
    if (!existsSync(runDir) || !statSync(runDir).isDirectory()) {
      throw new UserError(`--resume ${opts.flags.resume}: no such run directory`, { hint: 'pass a directory such as runs/<name>-<YYYYMMDD-HHMMSS>' });
    }
  } else {
    runDir = resolve(opts.runDir ?? join(data.runtime.out_dir, `${data.name}-${timestamp()}`));
    if (existsSync(runDir) && readdirSync(runDir).length > 0 && !opts.flags.force) {
      throw new UserError(`run directory ${runDir} already exists`, { hint: 'wait a second and run again, pass --force to reuse it, or --resume it' });
    }
    try {
      mkdirSync(runDir, { recursive: true });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new UserError(`cannot create the run directory ${runDir} (${code ?? (e as Error).message})`, {
        where: { yamlPath: 'runtime.out_dir' },
        hint: code === 'ENOTDIR' || code === 'EEXIST' ? 'runtime.out_dir names a file; point it at a folder' : 'point runtime.out_dir at a folder you can write to',
        cause: e,
      });
    }
  }
  // the resolved recipe; a resumed run keeps the one it started with (the train stage compares them)
  const recipeFile = join(runDir, 'recipe.yaml');
  if (!existsSync(recipeFile)) writeFileSync(recipeFile, recipeToYaml(recipe));
  // how the run was started: `vlm run --resume <dir>` without a recipe resolves the same one again
  // (its relative paths stay relative to the original recipe file)
  const invocation = join(runDir, RUN_JSON);
  if (!existsSync(invocation)) writeFileSync(invocation, JSON.stringify({ recipe: recipe.file, overrides: opts.overrides ?? [] }, null, 2) + '\n');

  const logFile = join(runDir, 'run.log');
  const metricsFile = join(runDir, 'metrics.jsonl');
  const stderr = opts.stderr ?? process.stderr;
  const consoleSink = { write: (line: string) => void stderr.write(line + '\n') };
  const write = (level: string, msg: string, show: boolean) => {
    appendFileSync(logFile, `${new Date().toISOString()} ${level} ${msg}\n`);
    if (show) consoleSink.write(level === 'info' ? msg : `${level}: ${msg}`);
  };
  const log: Logger = {
    info: (m) => write('info', m, true),
    warn: (m) => write('warning', m, true),
    debug: (m) => write('debug', m, !!opts.flags.debug),
  };

  const controller = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      log.warn(`${sig}: stopping after the current step (press Ctrl-C again to exit immediately)`);
      controller.abort(new Error(`interrupted by ${sig}`));
    } else {
      appendFileSync(logFile, `${new Date().toISOString()} warning ${sig} again: exiting immediately\n`);
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const ctx: RunContext = {
    recipe: data,
    recipePath: recipe.file,
    recipeDir: recipe.dir,
    positions: recipe.positions,
    runDir,
    backend: opts.backend,
    registry: opts.registry,
    log,
    signal: controller.signal,
    seed: data.runtime.seed,
    datasets: { train: [], val: [], eval: [] },
    metrics: (record) => appendFileSync(metricsFile, JSON.stringify(record) + '\n'),
    evalResults: [],
    artifacts: {},
    facts: { backend: opts.backend, started: new Date().toISOString() },
    flags: { ...opts.flags },
  };
  if (!existsSync(metricsFile)) writeFileSync(metricsFile, '');
  return {
    ctx,
    console: consoleSink,
    streams: { stdout: opts.stdout ?? process.stdout, stderr },
    close() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
