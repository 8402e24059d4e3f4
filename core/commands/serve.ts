// `vlm serve [model folder | run dir | runs folder | owner/name[@rev]] ... [--host 127.0.0.1] [--port 8080]`
// A local web server (core/serve/): the playground at /, the OpenAI-compatible API under /v1/, and
// for run directories the live training dashboard at /dashboard. It binds 127.0.0.1 unless --host
// says otherwise; it has no authentication, so another host is a deliberate choice (warned).
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { CommandEnv } from '../cli.ts';
import { UserError } from '../errors.ts';
import { isRepoId, resolveSource } from '../hub/index.ts';
import { hasModelWeights } from '../weights/model-weights.ts';
import { BACKEND_CHOICES, initRuntime, type BackendChoice } from '../runtime.ts';
import { loadPluginFlags } from '../registry.ts';
import { ModelHost } from '../serve/chat.ts';
import { isRunDir, RunsWatcher } from '../serve/runs.ts';
import { createServeApp, DEFAULT_MAX_BODY, type ServeApp } from '../serve/server.ts';

export const USAGE = `Usage: vlm serve [source ...] [options]

  source                 a model folder (config.json + model.safetensors), a run directory
                         (dashboard + its model or latest checkpoint), a folder of runs (dashboard,
                         runs overlaid; new runs appear), or a Hub repo id owner/name[@revision].
                         Default: ./runs
  --host <host>          address to listen on (default 127.0.0.1: this machine only)
  --port <n>             port (default 8080; 0 = any free port)
  --model <source>       the model answering the API, when the sources hold several
  --max-body <MiB>       largest request body (default ${DEFAULT_MAX_BODY / 2 ** 20})
  --backend <b>          auto | webgpu | tensorflow | wasm | cpu (default auto)
  --plugins <file|pkg>   a plugin module the model needs (repeatable); the ones recorded in the model
                         folder's nanovlm-ts.json outside it are loaded without it

Pages: / (playground), /dashboard (runs). API: POST /v1/chat/completions, GET /v1/models.`;

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);
const isModelFolder = (d: string) => existsSync(join(d, 'config.json')) && hasModelWeights(d);
const isDir = (d: string) => existsSync(d) && statSync(d).isDirectory();

export interface Served {
  app: ServeApp;
  url: string;
  model: ModelHost | null;
  runs: RunsWatcher | null;
  close(): Promise<void>;
}

/** Parse the arguments, load what is needed and listen; the caller decides when to close. */
export async function startServe(argv: string[], env: CommandEnv): Promise<Served | null> {
  let values, positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'string', default: '8080' },
        model: { type: 'string' },
        'max-body': { type: 'string' },
        backend: { type: 'string', default: 'auto' },
        plugins: { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (e) {
    throw new UserError(`vlm serve: ${(e as Error).message}`, { hint: USAGE });
  }
  if (values.help) {
    env.stdout.write(USAGE + '\n');
    return null;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`--port ${values.port}: expected an integer from 0 to 65535`);
  const maxBody = values['max-body'] === undefined ? DEFAULT_MAX_BODY : Number(values['max-body']) * 2 ** 20;
  if (!Number.isFinite(maxBody) || maxBody < 1024) throw new UserError(`--max-body ${values['max-body']}: expected a size in MiB (e.g. 16)`);
  if (!BACKEND_CHOICES.includes(values.backend as BackendChoice)) throw new UserError(`--backend ${values.backend}: expected one of ${BACKEND_CHOICES.join(', ')}`);

  // what each source is
  const sources = positionals.length ? positionals : existsSync('runs') ? ['runs'] : [];
  if (!sources.length) throw new UserError('vlm serve: nothing to serve (no source given and no ./runs folder)', { hint: USAGE });
  const runSources: string[] = [];
  const modelSources: string[] = values.model ? [values.model] : [];
  for (const s of sources) {
    if (isDir(s) && isModelFolder(s)) modelSources.push(s);
    else if (isDir(s) && isRunDir(s)) {
      runSources.push(s);
      if (!values.model) modelSources.push(s);
    } else if (isDir(s)) runSources.push(s); // a folder of runs (perhaps none yet)
    else if (!existsSync(s) && isRepoId(s)) modelSources.push(s);
    else throw new UserError(`vlm serve ${s}: ${existsSync(s) ? 'not a folder' : 'no such folder, and not a Hub repo id (owner/name)'}`, { hint: USAGE });
  }
  // one model in memory: the first model source (a run directory's is loaded when first asked)
  const chosen = modelSources[0];
  if (modelSources.length > 1 && !values.model) {
    env.log.info(`several sources hold a model; the API answers with ${chosen} (choose another with --model)`);
  }

  await loadPluginFlags(env.registry, values.plugins);
  await initRuntime(values.backend as BackendChoice, { log: env.log.debug });
  let model: ModelHost | null = null;
  if (chosen) {
    // a Hub id is downloaded once, now; a local folder is re-read per request (new checkpoints)
    const local = !existsSync(chosen) && isRepoId(chosen) ? await resolveSource(chosen, { repoType: 'model' }) : resolve(chosen);
    model = new ModelHost(local, env.registry, env.log, chosen);
    if (isModelFolder(local)) await model.model(); // load now: a broken folder is an error at start, not at the first request
  }
  const runs = runSources.length ? new RunsWatcher(runSources) : null;
  const app = createServeApp({ model, runs, log: env.log, maxBody });
  let url: string;
  try {
    url = await app.listen(port, values.host!);
  } catch (e) {
    model?.dispose();
    runs?.close();
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`cannot listen on ${values.host}:${port} (${code ?? (e as Error).message})`, {
      hint: code === 'EADDRINUSE' ? 'another program uses this port: pass --port <another> (or 0 for any free port)' : 'check --host',
    });
  }
  if (!LOOPBACK.has(values.host!)) {
    env.log.warn(`listening on ${values.host}: anyone who can reach this machine can use the server (it has no authentication)`);
  }
  const what = [model ? `model ${model.id}` : '', runs ? `${runs.ids().length} run(s) from ${runSources.join(', ')}` : ''].filter(Boolean).join(' and ');
  env.stdout.write(`serving ${what} at ${url}\n`);
  if (model) env.stdout.write(`  playground ${url}   API ${url}v1/chat/completions\n`);
  if (runs) env.stdout.write(`  dashboard  ${url}dashboard\n`);
  return {
    app,
    url,
    model,
    runs,
    async close() {
      await app.close();
      model?.dispose();
    },
  };
}

export async function main(argv: string[], env: CommandEnv): Promise<number> {
  const served = await startServe(argv, env);
  if (!served) return 0;
  // serve until Ctrl-C / SIGTERM
  await new Promise<void>((done) => {
    // started by `vlm run --serve`: also stop when that process is gone (killed without stopping us)
    const parent = process.ppid;
    const orphan = process.env.VLM_SERVE_WITH_PARENT ? setInterval(() => process.ppid !== parent && stop(), 1000) : null;
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      if (orphan) clearInterval(orphan);
      done();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  env.stderr.write('stopping the server\n');
  await served.close();
  return 0;
}
