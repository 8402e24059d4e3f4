// The Hub's own environment conventions (as huggingface_hub in Python reads them):
//   HF_ENDPOINT     Hub URL (default https://huggingface.co)
//   HF_HOME         root of the cache and of the CLI's stored token (default ~/.cache/huggingface)
//   HF_HUB_CACHE    the download cache (default $HF_HOME/hub)
//   HF_TOKEN        access token; else the token `huggingface-cli login` stored in $HF_HOME/token
//                   (or $HF_TOKEN_PATH)
//   HF_HUB_OFFLINE  1/true/yes/on: never touch the network, use the cache only
// And the one rule about the token: it never appears in a message we print or a file we write.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../errors.ts';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (env.HF_ENDPOINT?.trim() || DEFAULT_ENDPOINT).replace(/\/+$/, '');
}

export function hfHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.HF_HOME || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'huggingface');
}

export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE || join(hfHome(env), 'hub');
}

export function isOffline(env: NodeJS.ProcessEnv = process.env): boolean {
  return /^(1|true|yes|on)$/i.test((env.HF_HUB_OFFLINE ?? env.TRANSFORMERS_OFFLINE ?? '').trim());
}

/** Where the token came from, for messages (never the token itself). */
export type TokenSource = 'HF_TOKEN' | 'HUGGING_FACE_HUB_TOKEN' | string /* token file path */;

/** The access token and where it came from, or undefined (anonymous). */
export function readToken(env: NodeJS.ProcessEnv = process.env): { token: string; source: TokenSource } | undefined {
  let found: { token: string; source: TokenSource } | undefined;
  for (const name of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN'] as const) {
    const v = env[name]?.trim();
    if (v) {
      found = { token: v, source: name };
      break;
    }
  }
  if (!found) {
    const file = env.HF_TOKEN_PATH || join(hfHome(env), 'token');
    try {
      const v = readFileSync(file, 'utf8').trim();
      if (v) found = { token: v, source: file };
    } catch {
      // no stored token: anonymous
    }
  }
  if (!found) return undefined;
  rememberSecret(found.token);
  if (!/^hf_[A-Za-z0-9_-]+$/.test(found.token)) {
    throw new UserError(`the Hugging Face token from ${found.source} does not look like a token (it must start with "hf_")`, {
      hint: 'create one at https://huggingface.co/settings/tokens and set HF_TOKEN, or run `huggingface-cli login`',
    });
  }
  return found;
}

// ---- redaction ---------------------------------------------------------------------------------

const secrets = new Set<string>();

/** Register a secret so that redact() removes it wherever it appears. */
export function rememberSecret(secret: string): void {
  if (secret.length >= 4) secrets.add(secret);
}

/**
 * `text` with every known secret and anything shaped like a Hub token (hf_ + 8 or more
 * characters) replaced by "hf_***", and Bearer credentials removed.
 */
export function redact(text: string): string {
  let out = text.replace(/(Bearer\s+)[A-Za-z0-9._~+/=-]+/gi, '$1***');
  for (const s of secrets) out = out.split(s).join('hf_***');
  return out.replace(/\bhf_[A-Za-z0-9_-]{8,}/g, 'hf_***');
}
