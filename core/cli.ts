// `vlm <command> [args]`: dispatch through the static table COMMANDS to core/commands/<command>.ts
// (imported only when that command runs), which exports `main(argv, env): Promise<number>` (the
// exit code). User mistakes (UserError / UserErrors) are
// printed as "file:line:col path: message" without a stack trace, exit code 1; `--debug` shows
// stacks. The built-in plugins come from the caller (bin/vlm.js, tests): core/ knows no plugin.
import { isUserError, UserError, UserErrors } from './errors.ts';
import type { Plugin } from './plugin.ts';
import { didYouMean } from './recipe/did-you-mean.ts';
import { createRegistry, type Registry } from './registry.ts';
import type { Logger } from './types.ts';
import { isWasmAbort, wasmAbortError } from './train/memory.ts';

/** What every command's main() receives. */
export interface CommandEnv {
  /** a registry holding the built-in plugins (a command may create fresh ones from `builtins`) */
  registry: Registry;
  builtins: readonly Plugin[];
  debug: boolean;
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  log: Logger;
  [k: string]: unknown;
}

export type CommandMain = (argv: string[], env: CommandEnv) => Promise<number>;

/** A command: its one-line summary and its module, imported only when the command runs. */
export interface CommandEntry {
  summary: string;
  load: () => Promise<{ main: CommandMain }>;
}

/** Every command (docs/architecture.md lists who maintains each). */
export const COMMANDS: Record<string, CommandEntry> = {
  run: { summary: 'run a recipe: vlm run [recipe] [a.b=value ...] [--resume <run dir>] [--force] [--dry-run]', load: () => import('./commands/run.ts') },
  validate: { summary: 'check a recipe (schema + every plugin option), reporting every problem with file:line:col', load: () => import('./commands/validate.ts') },
  inspect: { summary: 'show the resolved recipe, the plugin graph, parameter counts and a memory estimate', load: () => import('./commands/inspect.ts') },
  plugins: { summary: 'list every registered plugin by kind, with its options', load: () => import('./commands/plugins.ts') },
  generate: { summary: 'generate text for an image with a trained model', load: () => import('./commands/generate.ts') },
  eval: { summary: 'run the eval stage of a recipe on a given model', load: () => import('./commands/eval.ts') },
  score: { summary: 'score given predictions with a benchmark metric (vqa_accuracy, anls, ...), without a model', load: () => import('./commands/score.ts') },
  sample: { summary: "write one sample's image (and print its question) from a recipe's dataset, e.g. out of a Parquet file", load: () => import('./commands/sample.ts') },
  compare: { summary: 'compare a checkpoint against reference tensors (PyTorch nanoVLM fixtures)', load: () => import('./commands/compare.ts') },
  bench: { summary: 'benchmark training and generation speed for a recipe', load: () => import('./commands/bench.ts') },
  memory: { summary: 'peak memory of a training step per batch size', load: () => import('./commands/memory.ts') },
  serve: { summary: 'a local web server: playground, OpenAI-compatible API, live training dashboard', load: () => import('./commands/serve.ts') },
};

export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    'Usage: vlm <command> [options]   (vlm <command> --help for a command\'s options)',
    '',
    ...Object.entries(COMMANDS).map(([c, e]) => `  ${c.padEnd(width)}  ${e.summary}`),
    `  ${'help'.padEnd(width)}  show this list`,
    '',
    'Global flag: --debug  show stack traces',
  ].join('\n');
}

export function consoleLogger(debug: boolean, stream: { write(s: string): unknown } = process.stderr): Logger {
  return {
    info: (m) => void stream.write(m + '\n'),
    warn: (m) => void stream.write(`warning: ${m}\n`),
    debug: (m) => void (debug && stream.write(`debug: ${m}\n`)),
  };
}

export async function cli(
  argv: string[],
  opts: {
    /** the built-in plugins, or a function loading them (bin/vlm.js: only once a command needs them) */
    builtins: readonly Plugin[] | (() => Promise<readonly Plugin[]>);
    stdout?: CommandEnv['stdout'];
    stderr?: CommandEnv['stderr'];
  },
): Promise<number> {
  const debug = argv.includes('--debug');
  const stdout = opts.stdout ?? process.stdout;
  const stderr = opts.stderr ?? process.stderr;
  const [cmd, ...rest] = argv.filter((a) => a !== '--debug');
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    stdout.write(usage() + '\n');
    return 0;
  }
  try {
    if (!Object.hasOwn(COMMANDS, cmd)) {
      throw new UserError(`unknown command "${cmd}"${didYouMean(cmd, [...Object.keys(COMMANDS), 'help'])}`, { hint: 'vlm help lists the commands' });
    }
    const { main } = await COMMANDS[cmd].load();
    const builtins = typeof opts.builtins === 'function' ? await opts.builtins() : opts.builtins;
    const env: CommandEnv = {
      registry: createRegistry(builtins),
      builtins,
      debug,
      stdout,
      stderr,
      log: consoleLogger(debug, stderr),
    };
    return await main(rest, env);
  } catch (e) {
    stderr.write(formatError(e, debug) + '\n');
    return 1;
  }
}

/** How an error reaches the user: UserErrors as "file:line:col path: message", anything else with its stack. */
export function formatError(e: unknown, debug = false): string {
  if (isUserError(e)) {
    const list = e instanceof UserErrors ? e.errors : [e as UserError];
    const head = list.length > 1 ? `${list.length} problems:\n` : '';
    const body = list.map((u) => 'error: ' + u.format()).join('\n');
    return head + body + (debug ? '\n' + list.map(stackOf).join('\n') : '');
  }
  // an abort of the wasm module is its heap running out (4 GiB), not a bug of ours: say what to change
  if (isWasmAbort(e)) return formatError(wasmAbortError('this command', e as Error, null), debug);
  return `internal error (a bug; please report it with this output): ${stackOf(e)}`;
}

function stackOf(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  let s = e.stack ?? e.message;
  let c = e.cause;
  while (c instanceof Error) {
    s += `\ncaused by: ${c.stack ?? c.message}`;
    c = c.cause;
  }
  return s;
}
