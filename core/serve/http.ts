// The small HTTP pieces `vlm serve` is built from (node:http only): bounded JSON bodies, errors in
// OpenAI's shape ({"error": {message, type, param, code}}), server-sent events, and static files
// that can only come from one folder (no `..`, no encoded `..`, no symlink out of it).
import { createReadStream, existsSync, realpathSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, isAbsolute, join, relative, resolve, sep } from 'node:path';

/** An error that becomes an HTTP response: status + OpenAI's error object. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = status >= 500 ? 'server_error' : 'invalid_request_error',
    readonly code: string | null = null,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

/** Security headers on every response: nothing loads from elsewhere, no framing, no sniffing. */
export const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** OpenAI's error body for an HttpError (anything else is a 500 without internals). */
export function sendError(res: ServerResponse, e: unknown): void {
  const h = e instanceof HttpError ? e : new HttpError(500, 'internal server error (see the server log)');
  sendJson(res, h.status, { error: { message: h.message, type: h.type, param: h.param, code: h.code } });
}

/**
 * Read a request body of at most `limit` bytes. A larger one is refused with 413 as soon as the
 * declared or received length passes the limit (the rest is not read; the connection is closed).
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolveBody, reject) => {
    const declared = Number(req.headers['content-length']);
    const tooLarge = () => new HttpError(413, `request body larger than ${limit} bytes (the server's --max-body)`, 'invalid_request_error', 'request_too_large');
    if (Number.isFinite(declared) && declared > limit) {
      req.resume(); // drain without keeping it
      reject(tooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(tooLarge());
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => failed || resolveBody(Buffer.concat(chunks)));
    req.on('error', (e) => failed || ((failed = true), reject(new HttpError(400, `could not read the request body (${e.message})`))));
  });
}

/** Parse a JSON object body, or a 400 saying what is wrong with it. */
export async function readJson(req: IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  const type = String(req.headers['content-type'] ?? '');
  if (type && !/^application\/json\b/i.test(type)) {
    throw new HttpError(415, `content-type ${type.split(';')[0]} is not supported: send application/json`);
  }
  const body = await readBody(req, limit);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new HttpError(400, `malformed JSON in the request body: ${(e as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new HttpError(400, 'the request body must be a JSON object');
  return parsed as Record<string, unknown>;
}

/** Start a server-sent-events response; returns send(data[, event]) (false once the client left). */
export function startEvents(res: ServerResponse): { send(data: unknown, event?: string): boolean; comment(text: string): void } {
  res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  res.flushHeaders();
  return {
    send(data, event) {
      if (res.destroyed || res.writableEnded) return false;
      res.write((event ? `event: ${event}\n` : '') + `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
      return true;
    },
    comment(text) {
      if (!res.destroyed && !res.writableEnded) res.write(`: ${text}\n\n`);
    },
  };
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.svg': 'image/svg+xml',
  '.json': 'application/json; charset=utf-8',
};

/**
 * The file `rel` (a URL path piece, still percent-encoded) inside `root`, or null when it names
 * anything outside: `..` segments (also encoded, %2e%2e, %2f, backslashes), absolute paths, NUL,
 * or a symlink whose target leaves the root. Only the extensions in `allowed` are served.
 */
export function resolveInside(root: string, rel: string, allowed: readonly string[] = Object.keys(TYPES)): string | null {
  let name: string;
  try {
    name = decodeURIComponent(rel);
  } catch {
    return null; // malformed percent-encoding
  }
  if (name.includes('\0') || name.includes('\\') || isAbsolute(name)) return null;
  if (name.split('/').some((seg) => seg === '..' || seg === '.')) return null;
  if (!allowed.includes(extname(name).toLowerCase())) return null;
  const base = resolve(root);
  const target = resolve(join(base, name));
  const inside = (p: string, b: string) => {
    const r = relative(b, p);
    return r !== '' && !r.startsWith('..') && !isAbsolute(r) && !r.split(sep).includes('..');
  };
  if (!inside(target, base) || !existsSync(target)) return null;
  try {
    if (!inside(realpathSync(target), realpathSync(base))) return null; // a symlink pointing out
    if (!statSync(target).isFile()) return null;
  } catch {
    return null;
  }
  return target;
}

/** Stream a file resolved by resolveInside (404 when it is null). */
export function sendFile(res: ServerResponse, file: string | null): void {
  if (!file) {
    sendJson(res, 404, { error: { message: 'not found', type: 'not_found_error', param: null, code: null } });
    return;
  }
  res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream', 'content-length': statSync(file).size });
  createReadStream(file).pipe(res);
}
