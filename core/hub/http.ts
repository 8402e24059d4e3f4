// How we talk to the Hub: one `fetch` for every @huggingface/hub call, which retries transient
// failures (network errors, 429, 5xx) with exponential backoff, and one translation of the
// library's HubApiError into a UserError that says what to do. Every message built from an HTTP
// response goes through redact(): the token never reaches a log, an error or a file.
import { HubApiError } from '@huggingface/hub';
import { UserError } from '../errors.ts';
import { hubEndpoint, readToken, redact, type TokenSource } from './config.ts';

export interface RetryOptions {
  /** total tries per request (default 5) */
  attempts?: number;
  /** first backoff delay in ms, doubled each retry (default 500) */
  baseDelayMs?: number;
}

export interface HubClient {
  endpoint: string;
  token?: string;
  tokenSource?: TokenSource;
  /** the retrying fetch handed to every @huggingface/hub call */
  fetch: typeof fetch;
  /** credentials spread into @huggingface/hub calls: {hubUrl, accessToken?, fetch} */
  params: { hubUrl: string; accessToken?: string; fetch: typeof fetch };
  /** number of HTTP requests made so far (retries included) */
  requests: number;
  /** X-Error-Code of failed responses by URL (RepoNotFound, EntryNotFound, GatedRepo, ...) */
  errorCodes: Map<string, string>;
}

/** http:// to a host other than this machine */
export function plainRemote(endpoint: string): boolean {
  try {
    const u = new URL(endpoint);
    return u.protocol === 'http:' && !/^(localhost|127(\.\d+){3}|\[::1\])$/.test(u.hostname);
  } catch {
    return false;
  }
}

const TRANSIENT = new Set([408, 429, 500, 502, 503, 504]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client for the Hub named by HF_ENDPOINT with the token from HF_TOKEN / the CLI token file. */
export function hubClient(opts: RetryOptions & { token?: string | null; endpoint?: string; log?: (m: string) => void } = {}): HubClient {
  const found = opts.token === null ? undefined : opts.token ? { token: opts.token, source: 'option' } : readToken();
  const attempts = Math.max(1, opts.attempts ?? 5);
  const base = opts.baseDelayMs ?? 500;
  const client: HubClient = {
    endpoint: (opts.endpoint ?? hubEndpoint()).replace(/\/+$/, ''),
    token: found?.token,
    tokenSource: found?.source,
    fetch: undefined as unknown as typeof fetch,
    params: undefined as unknown as HubClient['params'],
    requests: 0,
    errorCodes: new Map(),
  };
  client.fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const resendable = !(init?.body instanceof ReadableStream);
    for (let i = 1; ; i++) {
      client.requests++;
      let res: Response;
      try {
        res = await fetch(input, init);
      } catch (e) {
        const err = e as Error;
        if (err.name === 'AbortError' || i >= attempts || !resendable) throw e;
        opts.log?.(`network error (${redact(String(err.cause ?? err.message))}), retry ${i}/${attempts - 1}`);
        await sleep(base * 2 ** (i - 1));
        continue;
      }
      if (TRANSIENT.has(res.status) && i < attempts && resendable) {
        await res.arrayBuffer().catch(() => undefined);
        const after = Number(res.headers.get('retry-after'));
        const wait = Number.isFinite(after) && after > 0 ? Math.min(after * 1000, 30_000) : base * 2 ** (i - 1);
        opts.log?.(`HTTP ${res.status} from ${new URL(url).pathname}, retry ${i}/${attempts - 1} in ${wait} ms`);
        await sleep(wait);
        continue;
      }
      if (!res.ok) {
        const code = res.headers.get('x-error-code');
        if (code) client.errorCodes.set(res.url || url, code);
      }
      return res;
    }
  };
  client.params = { hubUrl: client.endpoint, fetch: client.fetch, ...(client.token ? { accessToken: client.token } : {}) };
  if (client.token && plainRemote(client.endpoint)) {
    (opts.log ?? ((m: string) => process.stderr.write(m + '\n')))(`warning: HF_ENDPOINT ${client.endpoint} is plain http on another machine: the token travels unencrypted`);
  }
  return client;
}

/**
 * A user-facing error for a failed Hub operation. `action` says what we were doing
 * ("downloading owner/name@main", "creating repo owner/name"), `write` whether it needed write access.
 */
export function hubError(e: unknown, client: HubClient, action: string, opts: { write?: boolean } = {}): Error {
  if (e instanceof UserError) return e;
  const who = client.token
    ? `the token from ${client.tokenSource === 'HF_TOKEN' || client.tokenSource === 'HUGGING_FACE_HUB_TOKEN' ? `$${client.tokenSource}` : client.tokenSource}`
    : 'no token (anonymous)';
  const tokens = `${client.endpoint}/settings/tokens`;
  if (e instanceof HubApiError) {
    const code = client.errorCodes.get(e.url);
    const detail = redact(e.message);
    const msg = (what: string) => `${action}: ${what} (HTTP ${e.statusCode}${code ? `, ${code}` : ''}) — ${detail}`;
    switch (e.statusCode) {
      case 401:
        return new UserError(msg(`the Hub at ${client.endpoint} did not accept ${who}`), {
          hint: client.token
            ? `the token is invalid, expired or revoked: create a new one at ${tokens} and set HF_TOKEN (or run \`huggingface-cli login\`)`
            : opts.write
              ? `publishing needs a token with write access: create one at ${tokens} and set HF_TOKEN`
              : `the repo is private, gated or does not exist: check the id, and set HF_TOKEN if you have access`,
        });
      case 403:
        return new UserError(msg(`${who} is not allowed to do this`), {
          hint: opts.write
            ? `use a token with write access to this namespace (fine-grained tokens need "write" on the repo or org) from ${tokens}`
            : `the repo is gated or restricted: request access on its Hub page, then use a token of the account that has it`,
        });
      case 404:
        return new UserError(
          msg(code === 'EntryNotFound' ? 'file not found' : code === 'RevisionNotFound' ? 'revision not found' : 'repo not found'),
          {
            hint:
              code === 'RevisionNotFound'
                ? 'check the branch, tag or commit after "@"'
                : `check the repo id (owner/name) and the endpoint ${client.endpoint}; a private repo needs HF_TOKEN`,
          },
        );
      case 409:
        return new UserError(msg('conflict'), {
          hint: opts.write
            ? 'the repo or branch changed while we were uploading (another commit landed): run publish again'
            : 'run the command again',
        });
      default:
        if (e.statusCode >= 500 || e.statusCode === 429)
          return new UserError(msg('the Hub kept failing after retries'), {
            hint: 'the Hub is unavailable or overloaded: try again later (the local model folder is complete)',
          });
        return new UserError(msg('unexpected answer from the Hub'));
    }
  }
  const err = e as Error & { cause?: unknown };
  if (err?.name === 'TypeError' && /fetch failed/i.test(err.message)) {
    return new UserError(`${action}: cannot reach ${client.endpoint} (${redact(String((err.cause as Error)?.message ?? err.cause ?? err.message))})`, {
      hint: 'check the network and HF_ENDPOINT; with HF_HUB_OFFLINE=1 only the local cache is used',
    });
  }
  const wrapped = new Error(`${action}: ${redact(String(err?.message ?? e))}`);
  if (err?.stack) wrapped.stack = redact(err.stack);
  return wrapped;
}
