// Shared by the vlm serve tests: a tiny randomly initialised model folder (byte tokenizer, no
// ../shared needed), a PNG made on the fly, a CommandEnv with the built-in plugins, and raw HTTP
// requests (node:http, so a path like /static/../x reaches the server unnormalised).
import { request } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import type { CommandEnv } from '../../../core/cli.ts';
import { createRegistry } from '../../../core/registry.ts';
import { buildModel, saveCheckpoint } from '../../../core/weights/model-folder.ts';
import builtins from '../../../plugins/index.ts';
import { useTestBackend } from '../../helpers/backend.ts';

export const TINY_MODEL = {
  vision: { use: 'siglip-vit', hidden_dim: 32, inter_dim: 64, patch_size: 8, image_size: 32, n_heads: 4, n_blocks: 2 },
  projector: { use: 'pixel-shuffle', factor: 2 },
  decoder: { use: 'llama', hidden_dim: 48, inter_dim: 96, n_heads: 6, n_kv_heads: 2, n_blocks: 2, vocab_size: 257, max_length: 64 },
  tokenizer: { use: 'bytes' },
  image_processor: { use: 'resize' },
};

const quiet = { info() {}, warn() {}, debug() {} };

/** Write a random tiny model (seeded) as a model folder: config.json, model.safetensors, sidecar. */
export async function writeTinyModel(folder: string, seed = 0): Promise<void> {
  await useTestBackend();
  const registry = createRegistry(builtins);
  const base = { recipe: { model: TINY_MODEL }, recipeDir: folder, seed, log: quiet };
  const model = await buildModel(TINY_MODEL as any, registry, base);
  try {
    await saveCheckpoint(model, folder, { format_version: 1, model: TINY_MODEL });
  } finally {
    model.dispose();
  }
}

/** A 48x48 PNG: a red square on blue. */
export async function pngBytes(): Promise<Buffer> {
  const w = 48;
  const px = Buffer.alloc(w * w * 3);
  for (let y = 0; y < w; y++)
    for (let x = 0; x < w; x++) {
      const red = x > 12 && x < 36 && y > 12 && y < 36;
      px.set(red ? [220, 30, 30] : [30, 60, 200], (y * w + x) * 3);
    }
  return sharp(px, { raw: { width: w, height: w, channels: 3 } }).png().toBuffer();
}

export function writePng(file: string, bytes: Buffer): string {
  writeFileSync(file, bytes);
  return file;
}

/** A CommandEnv with the built-in plugins; what the command prints is kept. */
export function testEnv(): { env: CommandEnv; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const stdout = { write: (x: string) => void (out += x) };
  const stderr = { write: (x: string) => void (err += x) };
  const env: CommandEnv = {
    registry: createRegistry(builtins),
    builtins,
    debug: false,
    stdout,
    stderr,
    log: { info: (m) => stderr.write(m + '\n'), warn: (m) => stderr.write(`warning: ${m}\n`), debug() {} },
  };
  return { env, out: () => out, err: () => err };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP request with the path sent exactly as given. */
export function raw(base: string, method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<RawResponse> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method, path, headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** The `data:` payloads of a server-sent-events body. */
export function sseData(body: string): string[] {
  return body
    .split('\n\n')
    .map((e) => e.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n'))
    .filter(Boolean);
}

