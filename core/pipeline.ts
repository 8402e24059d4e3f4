// The stage pipeline: the recipe's `stages` (stage plugins, by name) run in order under listr2,
// one live line per stage (each stage's `report(line)` updates it). The interactive renderer on
// a terminal; a plain line-by-line renderer when output is not a TTY or CI=true (logs, CI). Plain
// output prints each line once: the log lines as they come, and of the live line only the stage's
// last report (its summary), unless that was logged already — not the once-a-second progress.
// Plain output goes to the command's streams (run.streams), not process.stdout itself: a caller
// that captures them (the tests, under node --test, whose child processes report on stdout)
// gets every line.
import { Listr, LISTR_LOGGER_STDERR_LEVELS, ListrLogger, ProcessOutput } from 'listr2';
import type { Run } from './run.ts';
import type { Stage } from './types.ts';

export function plainOutput(): boolean {
  const ci = process.env.CI;
  return !process.stdout.isTTY || !process.stderr.isTTY || (!!ci && ci !== 'false' && ci !== '0');
}

/** listr2's logger for plain output, on the run's streams (failures to stderr, as listr2's own) */
function plainLogger(run: Run): ListrLogger {
  const out = (s: { write(x: string): unknown }) => s as NodeJS.WriteStream; // listr2 only calls write()
  return new ListrLogger({ useIcons: true, toStderr: LISTR_LOGGER_STDERR_LEVELS, processOutput: new ProcessOutput(out(run.streams.stdout), out(run.streams.stderr)) });
}

export async function runPipeline(run: Run, stages: Stage[]): Promise<void> {
  const { ctx } = run;
  const plain = plainOutput();
  const deferred: string[] = [];
  const tasks = new Listr(
    stages.map((stage) => ({
      title: stage.title,
      rendererOptions: { persistentOutput: true },
      task: async (_: unknown, task: { output: string; title: string }) => {
        const started = Date.now();
        ctx.log.debug(`stage ${stage.title}: start`);
        // on a terminal, log lines during a stage go to its live line and are printed again
        // once the stages are done (so e.g. the eval table stays on screen)
        const consoleWrite = run.console.write;
        const logged = new Set<string>();
        let last: string | undefined;
        if (!plain) {
          run.console.write = (line) => {
            task.output = line;
            deferred.push(line);
          };
        } else {
          run.console.write = (line) => {
            logged.add(line);
            consoleWrite(line);
          };
        }
        try {
          await stage.run(ctx, (line) => {
            if (plain) last = line;
            else task.output = line;
          });
        } finally {
          run.console.write = consoleWrite;
          if (plain && last !== undefined && !logged.has(last)) task.output = last;
        }
        ctx.facts[`stage_${stage.title}_seconds`] = Math.round((Date.now() - started) / 100) / 10;
        if (ctx.signal.aborted) throw ctx.signal.reason;
      },
    })),
    {
      concurrent: false,
      exitOnError: true,
      registerSignalListeners: false, // core/run.ts handles Ctrl-C
      renderer: plain ? 'simple' : 'default',
      rendererOptions: { collapseErrors: false, showErrorMessage: false } as object,
      fallbackRenderer: 'simple',
      // (listr2 takes the fallback's options when its condition holds: plain output)
      fallbackRendererOptions: { logger: plainLogger(run) },
      fallbackRendererCondition: plain,
    },
  );
  try {
    await tasks.run();
  } finally {
    for (const line of deferred) run.console.write(line);
  }
}
