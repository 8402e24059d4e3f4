// A model folder's weights: `model.safetensors`, or the Hugging Face sharded layout that
// save_pretrained writes for large checkpoints (transformers' SAFE_WEIGHTS_INDEX_NAME):
//   model.safetensors.index.json   {"metadata": {"total_size": N}, "weight_map": {"<tensor>": "<shard file>"}}
//   model-00001-of-00002.safetensors, model-00002-of-00002.safetensors, ...
// As transformers does, a folder holding model.safetensors uses it, else the index. openModelWeights
// opens either as one SafetensorsFile (the shards' tensors under one header, each read from its
// shard), so every loader (nanoVLM checkpoints, Hub backbones) reads both layouts the same way.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import { unsafeReason } from '../hub/paths.ts';
import { openSafetensors, type HeaderEntry, type SafetensorsFile } from './safetensors.ts';

export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';

/** The Hub files a model's weights may live in (which to download): the single file, the index, shards named as save_pretrained names them. */
export function isWeightsFile(path: string): boolean {
  return path === WEIGHTS_FILE || path === WEIGHTS_INDEX_FILE || /^model-\d+-of-\d+\.safetensors$/.test(path);
}

/** The file that stands for the folder's weights (model.safetensors, else the index), or null when it has neither. */
export function weightsEntryFile(folder: string): string | null {
  for (const f of [WEIGHTS_FILE, WEIGHTS_INDEX_FILE]) if (existsSync(join(folder, f))) return join(folder, f);
  return null;
}

/** true when `folder` holds weights in either layout */
export function hasModelWeights(folder: string): boolean {
  return weightsEntryFile(folder) !== null;
}

/** Newest modification time of the weights (the single file, or the index and every shard it names). */
export function weightsMtimeMs(folder: string): number {
  const entry = weightsEntryFile(folder);
  if (!entry) throw new UserError(`${folder} has no ${WEIGHTS_FILE} nor ${WEIGHTS_INDEX_FILE}`, { where: { file: folder } });
  if (entry.endsWith(WEIGHTS_FILE)) return statSync(entry).mtimeMs;
  const shards = new Set(Object.values(readIndex(entry)));
  return Math.max(statSync(entry).mtimeMs, ...[...shards].map((s) => statSync(join(folder, s)).mtimeMs));
}

/** weight_map of an index file, validated: tensor name -> shard file name (a plain name in the folder). */
function readIndex(file: string): Record<string, string> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file} is not valid JSON: ${(e as Error).message}`, { where: { file }, hint: 're-download or re-save the checkpoint' });
  }
  const map = (raw as { weight_map?: unknown } | null)?.weight_map;
  if (!map || typeof map !== 'object' || Array.isArray(map)) {
    throw new UserError(`${file}: no "weight_map" object (tensor name -> shard file)`, { where: { file }, hint: 're-download or re-save the checkpoint' });
  }
  for (const [name, shard] of Object.entries(map)) {
    const why = typeof shard === 'string' ? unsafeReason(shard) ?? (shard.includes('/') ? 'a path, not a file name in the folder' : null) : 'not a string';
    if (why) throw new UserError(`${file}: weight_map["${name}"] = ${JSON.stringify(shard)} is not a shard file name (${why})`, { where: { file } });
  }
  return map as Record<string, string>;
}

/**
 * Open the weights of `folder` (either layout). `what` completes the message when there are none
 * ("a nanoVLM checkpoint folder has ..."). A sharded checkpoint: every shard the index names must
 * exist and hold the tensors the index assigns to it (checked here, before anything is read).
 */
export function openModelWeights(folder: string, what: string): SafetensorsFile {
  const entry = weightsEntryFile(folder);
  if (!entry) {
    const file = join(folder, WEIGHTS_FILE);
    throw new UserError(`${file} not found: ${what} ${WEIGHTS_FILE} (or a sharded ${WEIGHTS_INDEX_FILE} with its shards) beside config.json`, { where: { file } });
  }
  if (entry.endsWith(WEIGHTS_FILE)) return openSafetensors(entry);

  const map = readIndex(entry);
  const shardNames = [...new Set(Object.values(map))];
  const absent = shardNames.filter((s) => !existsSync(join(folder, s)));
  if (absent.length) {
    throw new UserError(`${entry} names shard ${absent.map((s) => JSON.stringify(s)).join(', ')}, not found in ${folder}`, {
      where: { file: join(folder, absent[0]) },
      hint: 'the download or copy is incomplete: fetch every shard the index lists',
    });
  }
  const shards = new Map<string, SafetensorsFile>();
  try {
    for (const s of shardNames) shards.set(s, openSafetensors(join(folder, s)));
    const entries = new Map<string, HeaderEntry>();
    for (const [name, s] of Object.entries(map)) {
      const e = shards.get(s)!.header.entries.get(name);
      if (!e) throw new UserError(`${join(folder, s)}: no tensor "${name}", which ${WEIGHTS_INDEX_FILE} says is there`, { where: { file: join(folder, s) }, hint: 'the shard and the index disagree: re-download or re-save the checkpoint' });
      entries.set(name, e);
    }
    const first = shards.get(shardNames[0]);
    let open = true;
    return {
      header: { path: entry, entries, metadata: first?.header.metadata ?? null, dataStart: 0, fileSize: [...shards.values()].reduce((a, f) => a + f.header.fileSize, 0) },
      names: [...entries.keys()],
      has: (name) => entries.has(name),
      read: (name) => {
        if (!open) throw new Error(`${entry} is closed`);
        const s = map[name];
        if (s === undefined) throw new UserError(`${entry}: no tensor named "${name}"`, { where: { file: entry } });
        return shards.get(s)!.read(name);
      },
      close: () => {
        for (const f of shards.values()) f.close();
        open = false;
      },
    };
  } catch (e) {
    for (const f of shards.values()) f.close();
    throw e;
  }
}
