// Training checkpoints: atomic on disk, resumable exactly.
//
//   <runDir>/checkpoints/step-<N>/      a complete checkpoint, also a loadable nanoVLM model folder:
//       config.json, model.safetensors, nanovlm-ts.json   (MODEL's saveCheckpoint)
//       optimizer.safetensors                             (AdamW exp_avg / exp_avg_sq, step in metadata)
//       trainer.json                                      (TrainerState below, written last)
//   <runDir>/checkpoints/latest          pointer file: "step-<N>\n"
//   <runDir>/checkpoints/best/           hard links to the files of the best checkpoint so far
//
// How a crash can never leave a half-written checkpoint as the latest:
//   1. everything is written into checkpoints/.tmp-step-N/ and every file fsynced;
//   2. the folder is renamed to checkpoints/step-N (rename is atomic) and the parent fsynced;
//   3. `latest` is replaced atomically (write latest.tmp, fsync, rename over latest).
// A reader trusts `latest` only if it names a complete folder (trainer.json parses); otherwise it
// falls back to the newest complete step-N. Leftover .tmp-* folders are deleted on the next save.
import * as tf from '@tensorflow/tfjs';
import {
  closeSync,
  existsSync,
  fsyncSync,
  linkSync,
  copyFileSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../weights/safetensors.ts';
import type { HostTensor, Optimizer } from '../types.ts';

export const TRAINER_FORMAT_VERSION = 1;

/** Everything besides weights and optimizer moments that resuming needs (trainer.json). */
export interface TrainerState {
  format_version: number;
  /** optimizer steps completed */
  step: number;
  /** total optimizer steps the schedule was computed for */
  total_steps: number;
  /** 0-based epoch the next batch belongs to */
  epoch: number;
  /** micro-batches of that epoch already consumed (the loader skips them on resume) */
  batch_in_epoch: number;
  /** the only randomness of a run: the seed; data order is a pure function of (seed, epoch) */
  rng: { seed: number; epoch: number; batch_in_epoch: number };
  /** last losses, for the curve after resume */
  loss_tail: { step: number; loss: number }[];
  /** sha256 of the canonical resolved recipe, and the recipe itself (to say which keys changed) */
  recipe_hash: string;
  recipe: Record<string, unknown>;
  best?: { metric: string; value: number; step: number };
  /** tokens trained on so far, wall time spent training (s) */
  tokens: number;
  train_seconds: number;
}

// ---- small fs helpers ----------------------------------------------------------------------------

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** write a whole file and fsync it (not atomic by itself: used inside a .tmp folder) */
export function writeFileSynced(path: string, data: string | Uint8Array): void {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const fd = openSync(path, 'w');
  try {
    let done = 0;
    while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** replace `path` atomically: tmp file + fsync + rename + fsync of the folder */
export function writeFileAtomic(path: string, data: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSynced(tmp, data);
  renameSync(tmp, path);
  fsyncPath(join(path, '..'));
}

/**
 * Test hook for the disk-full case: VLM_FAULT_CHECKPOINT=enospc makes every checkpoint write fail
 * half-way through optimizer.safetensors exactly as a full disk would (a partial file, then
 * ENOSPC); `enospc:N` lets the first N-1 checkpoint writes of the process succeed.
 */
let checkpointWrites = 0;
function injectedFault(file: string): void {
  checkpointWrites++;
  const m = /^enospc(?::(\d+))?$/.exec(process.env.VLM_FAULT_CHECKPOINT ?? '');
  if (!m || checkpointWrites < Number(m[1] ?? 1)) return;
  writeFileSynced(file, 'partial');
  const e = new Error(`ENOSPC: no space left on device, write '${file}'`) as NodeJS.ErrnoException;
  e.code = 'ENOSPC';
  throw e;
}

// ---- writing -------------------------------------------------------------------------------------

export const checkpointsDir = (runDir: string) => join(runDir, 'checkpoints');
const stepName = (step: number) => `step-${step}`;

/**
 * Write `checkpoints/<name>` atomically: `fill(tmpDir)` writes the files into a fresh temporary
 * folder, every file is fsynced, the folder renamed into place. An existing `<name>` is replaced
 * (renamed aside first, then deleted). On any error the temporary folder is removed and the error
 * rethrown (ENOSPC as a UserError saying the previous checkpoint is intact).
 */
export async function writeCheckpointDir(root: string, name: string, fill: (dir: string) => Promise<void> | void): Promise<string> {
  mkdirSync(root, { recursive: true });
  for (const f of readdirSync(root)) if (f.startsWith('.tmp-') || f.startsWith('.old-')) rmSync(join(root, f), { recursive: true, force: true });
  const tmp = join(root, `.tmp-${name}`);
  const final = join(root, name);
  mkdirSync(tmp);
  try {
    await fill(tmp);
    for (const f of readdirSync(tmp)) fsyncPath(join(tmp, f));
    fsyncPath(tmp);
    if (existsSync(final)) {
      const old = join(root, `.old-${name}`);
      renameSync(final, old);
      renameSync(tmp, final);
      fsyncPath(root);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, final);
      fsyncPath(root);
    }
    return final;
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT')
      throw new UserError(`disk full while writing checkpoint ${final}`, {
        where: { file: final },
        hint: `the previous checkpoint (${readLatestName(root) ?? 'none yet'}) is intact; free some space and resume with --resume ${join(root, '..')}`,
        cause: e,
      });
    throw e;
  }
}

/** optimizer state -> optimizer.safetensors (step in the metadata) */
export async function optimizerTensors(optimizer: Optimizer): Promise<{ tensors: Map<string, TensorToWrite>; metadata: Record<string, string> }> {
  const { step, tensors } = optimizer.state();
  const out = new Map<string, TensorToWrite>();
  for (const [k, t] of tensors) out.set(k, { dtype: 'F32', shape: t.shape, data: (t instanceof tf.Tensor ? await t.data() : t.dataSync()) as Float32Array }); // one at a time (host state stays off the backend); tensors read async (GPU backends)
  return { tensors: out, metadata: { step: String(step), format: 'nanovlm-ts-adamw' } };
}

export interface SaveOptions {
  step: number;
  /** writes the model part (config.json, model.safetensors, ...) into a folder */
  writeModel: (folder: string) => Promise<void> | void;
  optimizer: Optimizer;
  trainer: TrainerState;
  /** keep this many newest step-N folders (older ones are deleted; `best` is separate) */
  keep: number;
}

/** Save checkpoint step-N atomically, move `latest` to it, prune old ones. Returns its folder. */
export async function saveTrainCheckpoint(runDir: string, o: SaveOptions): Promise<string> {
  const root = checkpointsDir(runDir);
  const folder = await writeCheckpointDir(root, stepName(o.step), async (dir) => {
    await o.writeModel(dir);
    const opt = await optimizerTensors(o.optimizer);
    injectedFault(join(dir, 'optimizer.safetensors'));
    writeSafetensors(join(dir, 'optimizer.safetensors'), opt.tensors, opt.metadata);
    writeFileSynced(join(dir, 'trainer.json'), JSON.stringify(o.trainer, null, 2) + '\n'); // last: marks it complete
  });
  writeFileAtomic(join(root, 'latest'), stepName(o.step) + '\n');
  pruneCheckpoints(root, o.keep);
  return folder;
}

/** Make checkpoints/best a copy (hard links) of the given complete checkpoint folder. */
export async function markBest(runDir: string, folder: string): Promise<string> {
  return writeCheckpointDir(checkpointsDir(runDir), 'best', (dir) => {
    for (const f of readdirSync(folder)) {
      try {
        linkSync(join(folder, f), join(dir, f));
      } catch {
        copyFileSync(join(folder, f), join(dir, f));
      }
    }
  });
}

/** delete all but the newest `keep` step-N folders (never the one `latest` names) */
export function pruneCheckpoints(root: string, keep: number): void {
  const latest = readLatestName(root);
  const steps = listStepDirs(root);
  for (const s of steps.slice(0, Math.max(0, steps.length - keep)))
    if (stepName(s) !== latest) rmSync(join(root, stepName(s)), { recursive: true, force: true });
}

// ---- reading -------------------------------------------------------------------------------------

/** step numbers of the step-N folders, ascending */
export function listStepDirs(root: string): number[] {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .map((f) => /^step-(\d+)$/.exec(f))
    .filter((m): m is RegExpExecArray => !!m)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

function readLatestName(root: string): string | null {
  try {
    return readFileSync(join(root, 'latest'), 'utf8').trim() || null;
  } catch {
    return null;
  }
}

function readTrainerJson(folder: string): TrainerState | null {
  try {
    const t = JSON.parse(readFileSync(join(folder, 'trainer.json'), 'utf8')) as TrainerState;
    if (t.format_version !== TRAINER_FORMAT_VERSION || typeof t.step !== 'number') return null;
    if (!statSync(join(folder, 'model.safetensors')).isFile() || !statSync(join(folder, 'optimizer.safetensors')).isFile()) return null;
    return t;
  } catch {
    return null;
  }
}

/**
 * The checkpoints a resume may start from, best first: the folder `latest` names (if complete),
 * then every complete step-N from the newest down (a crash between the rename and the pointer
 * update leaves a newer step-N than `latest`; a damaged newest one is skipped by the caller).
 */
export function listCheckpoints(runDir: string): { folder: string; trainer: TrainerState }[] {
  const root = checkpointsDir(runDir);
  const named = readLatestName(root);
  const names = [...new Set([...(named ? [named] : []), ...listStepDirs(root).reverse().map(stepName)])];
  const out: { folder: string; trainer: TrainerState }[] = [];
  for (const name of names) {
    const folder = join(root, name);
    const trainer = readTrainerJson(folder);
    if (trainer) out.push({ folder, trainer });
  }
  return out;
}

/** The checkpoint to resume from: the first of listCheckpoints, or null. */
export function findLatestCheckpoint(runDir: string): { folder: string; trainer: TrainerState } | null {
  return listCheckpoints(runDir)[0] ?? null;
}

/** optimizer.safetensors -> the optimizer (host arrays: the optimizer moves each where it keeps it) */
export function loadOptimizerState(folder: string, optimizer: Optimizer): void {
  const file = join(folder, 'optimizer.safetensors');
  const { tensors, metadata } = readSafetensors(file);
  const step = Number(metadata?.step);
  if (!Number.isInteger(step))
    throw new UserError(`${file} has no optimizer step in its metadata`, { where: { file }, hint: 'the checkpoint is damaged; resume from an older one' });
  const state = new Map<string, HostTensor>();
  for (const [k, t] of tensors) {
    const data = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number>);
    state.set(k, { shape: t.shape, dataSync: () => data });
  }
  optimizer.loadState({ step, tensors: state });
}
