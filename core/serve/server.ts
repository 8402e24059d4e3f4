// The `vlm serve` HTTP server (node:http): routes for the playground, the dashboard and the
// OpenAI-compatible API. Nothing is read from disk except the static assets next to this file
// (core/serve/static/) and the files the RunsWatcher follows; a run's images are served only from
// inside that run's folder.
//
//   GET  /                          the playground (static/index.html)
//   GET  /dashboard                 the training dashboard (static/dashboard.html)
//   GET  /static/<file>             the pages' scripts and styles
//   GET  /v1/models                 OpenAI: the served model
//   POST /v1/chat/completions       OpenAI: chat completions (core/serve/chat.ts)
//   GET  /api/info                  the model card's facts and the served runs
//   GET  /api/runs                  summaries of the served runs
//   GET  /api/runs/<id>/metrics     every metrics.jsonl record of a run
//   GET  /api/events                server-sent events: new metrics records, changed runs
//   GET  /runs/<id>/<file>.png      an image inside a run folder (loss.png)
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { redact } from '../hub/index.ts';
import type { Logger } from '../types.ts';
import { ModelHost } from './chat.ts';
import { HttpError, resolveInside, sendError, sendFile, sendJson, startEvents } from './http.ts';
import { RunsWatcher } from './runs.ts';

export const STATIC_DIR = join(dirname(fileURLToPath(import.meta.url)), 'static');
/** Default request body limit: a chat request carries its image inline (base64). */
export const DEFAULT_MAX_BODY = 16 * 1024 * 1024;

export interface ServeOptions {
  /** the model answering /v1/chat/completions (null: the dashboard only) */
  model: ModelHost | null;
  /** the runs the dashboard shows */
  runs: RunsWatcher | null;
  log: Logger;
  maxBody?: number;
  /** milliseconds between keep-alive comments on event streams */
  heartbeatMs?: number;
}

export interface ServeApp {
  server: Server;
  /** listen; resolves with the URL (port 0 = any free port) */
  listen(port: number, host: string): Promise<string>;
  close(): Promise<void>;
}

export function createServeApp(opts: ServeOptions): ServeApp {
  const maxBody = opts.maxBody ?? DEFAULT_MAX_BODY;
  const streams = new Set<ServerResponse>();

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const get = method === 'GET' || method === 'HEAD';

    if (path === '/v1/chat/completions') {
      if (method !== 'POST') throw new HttpError(405, 'use POST');
      if (!opts.model) throw new HttpError(404, 'this server has no model (it serves a training dashboard); start it with a model folder or run directory', 'invalid_request_error', 'no_model');
      return opts.model.complete(req, res, maxBody);
    }
    if (!get) throw new HttpError(405, `${method} is not allowed on ${path}`);
    if (path === '/v1/models') {
      const data = opts.model ? [{ id: opts.model.id, object: 'model', created: Math.floor(Date.now() / 1000), owned_by: 'nanovlm-ts' }] : [];
      return sendJson(res, 200, { object: 'list', data });
    }
    if (path === '/' || path === '/index.html') return sendFile(res, resolveInside(STATIC_DIR, 'index.html'));
    if (path === '/dashboard') return sendFile(res, resolveInside(STATIC_DIR, 'dashboard.html'));
    if (path.startsWith('/static/')) return sendFile(res, resolveInside(STATIC_DIR, rawTail(req, '/static/'), ['.js', '.css', '.html', '.svg', '.png']));
    if (path === '/api/info') {
      const info = opts.model ? await opts.model.info() : null;
      return sendJson(res, 200, JSON.parse(redact(JSON.stringify({ model: info, modelId: opts.model?.id ?? null, runs: opts.runs?.ids() ?? [], dashboard: !!opts.runs }))));
    }
    if (path === '/api/runs') {
      opts.runs?.scan();
      return sendJson(res, 200, { runs: (opts.runs?.ids() ?? []).map((id) => opts.runs!.summary(id)) });
    }
    const m = /^\/api\/runs\/([^/]+)\/metrics$/.exec(path);
    if (m) {
      const records = opts.runs?.metrics(decodeURIComponent(m[1]));
      if (!records) throw new HttpError(404, `no run ${m[1]}`, 'not_found_error');
      return sendJson(res, 200, { run: m[1], records });
    }
    if (path === '/api/events') {
      if (!opts.runs) throw new HttpError(404, 'this server shows no runs', 'not_found_error');
      const events = startEvents(res);
      streams.add(res);
      events.send({ runs: opts.runs.ids() }, 'hello');
      const off = opts.runs.subscribe((event, data) => events.send(data, event));
      const beat = setInterval(() => events.comment('keep-alive'), opts.heartbeatMs ?? 15000);
      res.on('close', () => {
        off();
        clearInterval(beat);
        streams.delete(res);
      });
      return;
    }
    const f = /^\/runs\/([^/]+)\//.exec(path);
    if (f) {
      const dir = opts.runs?.dir(decodeURIComponent(f[1]));
      return sendFile(res, dir ? resolveInside(dir, rawTail(req, f[0]), ['.png', '.jpg', '.jpeg', '.webp']) : null);
    }
    throw new HttpError(404, `no route ${path}`, 'not_found_error');
  };

  const server = createServer((req, res) => {
    route(req, res).catch((e: unknown) => {
      if (!(e instanceof HttpError)) opts.log.warn(`${req.method} ${req.url?.split('?')[0]}: ${(e as Error)?.stack ?? String(e)}`);
      if (res.headersSent) res.end();
      else sendError(res, e);
      if (e instanceof HttpError && e.status === 413) req.socket.destroySoon?.();
    });
  });
  server.requestTimeout = 120_000;
  server.headersTimeout = 30_000;

  return {
    server,
    listen: (port, host) =>
      new Promise((resolveUrl, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          const a = server.address();
          const p = typeof a === 'object' && a ? a.port : port;
          resolveUrl(`http://${host.includes(':') ? `[${host}]` : host}:${p}/`);
        });
      }),
    close: () =>
      new Promise((resolveClose) => {
        for (const s of streams) s.end();
        opts.runs?.close();
        server.closeAllConnections?.();
        server.close(() => resolveClose());
      }),
  };
}

/** The raw (still percent-encoded) part of the request path after `prefix`, query removed. */
function rawTail(req: IncomingMessage, prefix: string): string {
  const raw = (req.url ?? '').split('?')[0].split('#')[0];
  return raw.startsWith(prefix) ? raw.slice(prefix.length) : '';
}
