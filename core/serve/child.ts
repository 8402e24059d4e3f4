// `vlm run --serve`: the dashboard of the run being trained, served by a `vlm serve <run dir>`
// child process. Its own process keeps the pages responsive while a training step holds this
// one's event loop, and the model it may load for the playground (the latest checkpoint, on the
// first question) does not share this process's tfjs memory. It stops when the run ends.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../errors.ts';

const VLM = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'vlm.js');

export interface DashboardProcess {
  url: string;
  close(): void;
}

/** Start `vlm serve <runDir>`; resolves with its URL once it listens. */
export function startDashboardProcess(runDir: string, opts: { port: number; host: string; timeoutMs?: number }): Promise<DashboardProcess> {
  const child: ChildProcess = spawn(process.execPath, [VLM, 'serve', runDir, '--port', String(opts.port), '--host', opts.host], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, VLM_SERVE_WITH_PARENT: '1' }, // it exits if this process dies without stopping it
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const fail = (why: string) => {
      clearTimeout(timer);
      child.kill('SIGTERM');
      reject(new UserError(`--serve: the dashboard server did not start (${why})`, { hint: 'pass --port <another port> (0 = any free one), or drop --serve and run `vlm serve <run dir>` yourself' }));
    };
    const timer = setTimeout(() => fail(`no answer in ${(opts.timeoutMs ?? 60_000) / 1000} s`), opts.timeoutMs ?? 60_000);
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const m = / at (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1], close: () => void child.kill('SIGTERM') });
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
    child.on('exit', (code) => fail(`exit code ${code}: ${err.trim().split('\n').at(-1) ?? ''}`));
    child.on('error', (e) => fail(e.message));
  });
}
