// Piped (non-TTY) output prints every line once (issue 20, item 13): a stage that reports its
// progress on the live line and logs the same line every N steps (as the train stage does) shows it
// once, and the stage's last report (its summary) once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { plainOutput, runPipeline } from '../../core/pipeline.ts';
import type { Run } from '../../core/run.ts';
import type { RunContext, Stage } from '../../core/types.ts';

test('plain output: progress lines that are also logged appear once; the final report once', async () => {
  assert.equal(plainOutput(), true, 'the test runner pipes stdout: plain output');
  const printed: string[] = [];
  let out = '';
  const capture = { write: (s: string) => ((out += s), true) };
  const run = {
    ctx: { facts: {}, signal: new AbortController().signal, log: { debug() {} } } as unknown as RunContext,
    console: { write: (l: string) => void printed.push(l) },
    streams: { stdout: capture, stderr: capture },
    close() {},
  } as Run;
  const stage: Stage = {
    title: 'train',
    async run(_ctx, report) {
      for (let i = 1; i <= 4; i++) {
        const line = `step ${i}/4 · loss 0.5`;
        report(line); // the live line
        if (i % 2 === 0) run.console.write(line); // log_every 2
      }
      report('4 steps in 1 s');
    },
  };
  // the stage lines go to the run's streams, never to process.stdout itself (under node --test a
  // child's stdout carries the runner's serialized reports: raw writes there corrupt them)
  let leaked = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((s: string) => ((leaked += s), true)) as typeof process.stdout.write;
  try {
    await runPipeline(run, [stage]);
  } finally {
    process.stdout.write = write;
  }
  assert.equal(leaked, '', 'nothing written to process.stdout');
  assert.match(out, /\S train\n/, "the stage line, on the run's stdout");
  const all = [...printed, ...out.split('\n')].join('\n');
  const count = (s: string) => all.split(s).length - 1;
  assert.equal(count('step 2/4 · loss 0.5'), 1, all);
  assert.equal(count('step 4/4 · loss 0.5'), 1, all);
  assert.equal(count('step 1/4'), 0, all); // unlogged progress is not printed in plain output
  assert.equal(count('4 steps in 1 s'), 1, all);
});
