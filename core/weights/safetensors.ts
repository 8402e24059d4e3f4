// safetensors reader and writer (https://github.com/huggingface/safetensors, format spec in its README):
//   [u64 little-endian N][N bytes JSON header][data]
//   header = { "<name>": {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {str: str} }
// Floats (F32, F16, BF16, F64) are read as float32; I64 as BigInt64Array, I32 as Int32Array.
// The reader validates the whole header before touching the data and reads each tensor by offset from
// the file descriptor, so a large checkpoint is never held twice in memory. Every problem with a file
// is a UserError naming the file and the tensor.
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { UserError } from '../errors.ts';

export type Dtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL' | 'U16' | 'U32' | 'U64';
export type TensorData = Float32Array | Int32Array | BigInt64Array;

/** bytes per element of every dtype the header may name */
export const DTYPE_BYTES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  U64: 8,
  I32: 4,
  U32: 4,
  I16: 2,
  U16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};
/** dtypes this reader converts (the rest are recognised in headers but refused on read) */
const READABLE = new Set(['F32', 'F16', 'BF16', 'F64', 'I64', 'I32']);

export interface HeaderEntry {
  dtype: Dtype;
  shape: number[];
  /** byte offsets relative to the start of the data section */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  path: string;
  entries: Map<string, HeaderEntry>;
  metadata: Record<string, string> | null;
  /** absolute file offset of the data section (8 + header length) */
  dataStart: number;
  fileSize: number;
}

export interface LoadedTensor {
  dtype: Dtype;
  shape: number[];
  data: TensorData;
}

/** Upper bound on the JSON header (the reference implementation uses 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

function bad(path: string, what: string, hint?: string): UserError {
  return new UserError(`${path}: not a valid safetensors file: ${what}`, {
    where: { file: path },
    hint: hint ?? 'the file is truncated or corrupt; re-download or re-save it',
  });
}

function readExactly(fd: number, path: string, buf: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < buf.byteLength) {
    const n = readSync(fd, buf, done, buf.byteLength - done, position + done);
    if (n <= 0) throw bad(path, `unexpected end of file while reading ${what}`);
    done += n;
  }
}

/** Parse and validate the header of an open file. */
function parseHeader(fd: number, path: string): SafetensorsHeader {
  const fileSize = fstatSync(fd).size;
  if (fileSize < 8) throw bad(path, `file is ${fileSize} bytes, shorter than the 8-byte header length`);
  const lenBuf = new Uint8Array(8);
  readExactly(fd, path, lenBuf, 0, 'the header length');
  const n = new DataView(lenBuf.buffer).getBigUint64(0, true);
  if (n > BigInt(fileSize - 8)) {
    throw bad(path, `header length ${n} exceeds the file size (${fileSize} bytes)`);
  }
  if (n > BigInt(MAX_HEADER_BYTES)) throw bad(path, `header length ${n} is larger than ${MAX_HEADER_BYTES} bytes`);
  const headerLen = Number(n);
  const headerBuf = new Uint8Array(headerLen);
  readExactly(fd, path, headerBuf, 8, 'the header');
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBuf));
  } catch (e) {
    throw bad(path, `header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw bad(path, 'header is not a JSON object');

  const dataStart = 8 + headerLen;
  const dataLen = fileSize - dataStart;
  const entries = new Map<string, HeaderEntry>();
  let metadata: Record<string, string> | null = null;
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null) continue;
      if (typeof raw !== 'object' || Array.isArray(raw)) throw bad(path, '__metadata__ is not an object');
      metadata = {};
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') throw bad(path, `__metadata__["${k}"] is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!e || typeof e !== 'object') throw bad(path, `tensor "${name}": entry is not an object`);
    const dtype = e.dtype;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
      throw bad(path, `tensor "${name}": unknown dtype ${JSON.stringify(dtype)}`);
    }
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(path, `tensor "${name}": shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    const offs = e.data_offsets;
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offs[1] < offs[0]
    ) {
      throw bad(path, `tensor "${name}": data_offsets ${JSON.stringify(offs)} is not [begin, end] with begin <= end`);
    }
    const [begin, end] = offs as [number, number];
    const numel = (shape as number[]).reduce((a, b) => a * b, 1);
    const expected = numel * DTYPE_BYTES[dtype];
    if (end - begin !== expected) {
      throw bad(
        path,
        `tensor "${name}": ${dtype} shape [${shape.join(', ')}] needs ${expected} bytes but data_offsets span ${end - begin}`,
      );
    }
    if (end > dataLen) {
      throw bad(path, `tensor "${name}": data_offsets [${begin}, ${end}] run past the end of the data (${dataLen} bytes)`);
    }
    entries.set(name, { dtype: dtype as Dtype, shape: shape as number[], dataOffsets: [begin, end] });
  }
  // no two tensors may share bytes
  const sorted = [...entries].filter(([, e]) => e.dataOffsets[1] > e.dataOffsets[0]);
  sorted.sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0]);
  for (let i = 1; i < sorted.length; i++) {
    const [pn, pe] = sorted[i - 1];
    const [cn, ce] = sorted[i];
    if (ce.dataOffsets[0] < pe.dataOffsets[1]) {
      throw bad(
        path,
        `tensor "${cn}" (bytes ${ce.dataOffsets[0]}..${ce.dataOffsets[1]}) overlaps tensor "${pn}" (bytes ${pe.dataOffsets[0]}..${pe.dataOffsets[1]})`,
      );
    }
  }
  return { path, entries, metadata, dataStart, fileSize };
}

function openForRead(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`cannot open ${path}: ${code === 'ENOENT' ? 'file not found' : (e as Error).message}`, {
      where: { file: path },
    });
  }
}

/** Read and validate only the header. */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openForRead(path);
  try {
    return parseHeader(fd, path);
  } finally {
    closeSync(fd);
  }
}

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Read one tensor's bytes from the fd and convert to its in-memory type. */
function readTensor(fd: number, header: SafetensorsHeader, name: string): LoadedTensor {
  const e = header.entries.get(name);
  if (!e) throw new UserError(`${header.path}: no tensor named "${name}"`, { where: { file: header.path } });
  if (!READABLE.has(e.dtype)) {
    throw new UserError(`${header.path}: tensor "${name}" has dtype ${e.dtype}, which nanovlm-ts does not read`, {
      where: { file: header.path },
      hint: 'supported dtypes: F32, F16, BF16, F64 (read as float32), I64, I32',
    });
  }
  const [begin, end] = e.dataOffsets;
  const nbytes = end - begin;
  const numel = nbytes / DTYPE_BYTES[e.dtype];
  const pos = header.dataStart + begin;
  const what = `tensor "${name}"`;
  let data: TensorData;
  switch (e.dtype) {
    case 'F32': {
      const out = new Float32Array(numel);
      readExactly(fd, header.path, new Uint8Array(out.buffer), pos, what);
      data = out;
      break;
    }
    case 'I32': {
      const out = new Int32Array(numel);
      readExactly(fd, header.path, new Uint8Array(out.buffer), pos, what);
      data = out;
      break;
    }
    case 'I64': {
      const out = new BigInt64Array(numel);
      readExactly(fd, header.path, new Uint8Array(out.buffer), pos, what);
      data = out;
      break;
    }
    case 'F64': {
      const tmp = new Float64Array(numel);
      readExactly(fd, header.path, new Uint8Array(tmp.buffer), pos, what);
      data = Float32Array.from(tmp);
      break;
    }
    case 'F16':
    case 'BF16': {
      const tmp = new Uint16Array(numel);
      readExactly(fd, header.path, new Uint8Array(tmp.buffer), pos, what);
      const out = new Float32Array(numel);
      if (e.dtype === 'BF16') {
        const u32 = new Uint32Array(out.buffer);
        for (let i = 0; i < numel; i++) u32[i] = tmp[i] << 16;
      } else {
        for (let i = 0; i < numel; i++) out[i] = f16ToF32(tmp[i]);
      }
      data = out;
      break;
    }
    default:
      throw new Error(`unreachable dtype ${e.dtype}`);
  }
  return { dtype: e.dtype, shape: [...e.shape], data };
}

/**
 * An open safetensors file: validated header, tensors read one at a time by name.
 * Use this to read a subset (a Hub checkpoint with extra heads); close() when done.
 */
export interface SafetensorsFile {
  readonly header: SafetensorsHeader;
  readonly names: string[];
  has(name: string): boolean;
  read(name: string): LoadedTensor;
  close(): void;
}

export function openSafetensors(path: string): SafetensorsFile {
  const fd = openForRead(path);
  let header: SafetensorsHeader;
  try {
    header = parseHeader(fd, path);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  let open = true;
  return {
    header,
    names: [...header.entries.keys()],
    has: (name) => header.entries.has(name),
    read: (name) => {
      if (!open) throw new Error(`${path} is closed`);
      return readTensor(fd, header, name);
    },
    close: () => {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/** Read every tensor of a file (validating the header first). */
export function readSafetensors(path: string): {
  tensors: Map<string, LoadedTensor>;
  metadata: Record<string, string> | null;
} {
  const f = openSafetensors(path);
  try {
    const tensors = new Map<string, LoadedTensor>();
    for (const name of f.names) tensors.set(name, f.read(name));
    return { tensors, metadata: f.header.metadata };
  } finally {
    f.close();
  }
}

// ---- writer --------------------------------------------------------------------------------------

export interface TensorToWrite {
  dtype: 'F32' | 'I64' | 'I32';
  shape: number[];
  data: TensorData | number[];
}

function toBytes(name: string, t: TensorToWrite): Uint8Array {
  const numel = t.shape.reduce((a, b) => a * b, 1);
  let arr: Float32Array | Int32Array | BigInt64Array;
  if (t.dtype === 'F32') arr = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number>);
  else if (t.dtype === 'I32') arr = t.data instanceof Int32Array ? t.data : Int32Array.from(t.data as ArrayLike<number>);
  else if (t.data instanceof BigInt64Array) arr = t.data;
  else arr = BigInt64Array.from(Array.from(t.data as ArrayLike<number>, (v) => BigInt(Math.trunc(Number(v)))));
  if (arr.length !== numel) {
    throw new Error(`writeSafetensors: tensor "${name}" has ${arr.length} values but shape [${t.shape}] needs ${numel}`);
  }
  return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
}

/** The header bytes (8-byte length + JSON padded so the data starts 8-byte aligned) for tensors in order. */
function encodeHeader(
  specs: { name: string; dtype: string; shape: number[] }[],
  metadata?: Record<string, string> | null,
): { bytes: Buffer; sizes: number[] } {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  const sizes: number[] = [];
  let offset = 0;
  for (const { name, dtype, shape } of specs) {
    if (name === '__metadata__') throw new Error('writeSafetensors: "__metadata__" is not a tensor name');
    const size = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    header[name] = { dtype, shape, data_offsets: [offset, offset + size] };
    sizes.push(size);
    offset += size;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json, 'utf8')) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(headerBytes.byteLength));
  return { bytes: Buffer.concat([lenBuf, headerBytes]), sizes };
}

/**
 * A temporary file beside `path` (`.<name>.tmp-<pid>-<time>`): write to it, then commit() fsyncs and
 * renames it over `path` (atomic), or abort() removes it.
 */
function tempFile(path: string): { writeAll(b: Uint8Array): void; commit(): void; abort(): void } {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now()}`);
  const fd = openSync(tmp, 'w');
  let open = true;
  const close = () => {
    if (open) closeSync(fd);
    open = false;
  };
  return {
    writeAll(b) {
      let done = 0;
      while (done < b.byteLength) done += writeSync(fd, b, done, b.byteLength - done);
    },
    commit() {
      fsyncSync(fd);
      close();
      renameSync(tmp, path);
    },
    abort() {
      close();
      try {
        unlinkSync(tmp);
      } catch {
        /* already gone */
      }
    },
  };
}

/**
 * Write tensors (in the given order) and optional string metadata. Atomic: writes a temporary file
 * beside `path`, fsyncs, then renames it over `path`.
 */
export function writeSafetensors(
  path: string,
  tensors: Map<string, TensorToWrite>,
  metadata?: Record<string, string> | null,
): void {
  const specs = [...tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, bytes: toBytes(name, t) }));
  const { bytes } = encodeHeader(specs, metadata);
  const f = tempFile(path);
  try {
    f.writeAll(bytes);
    for (const sp of specs) f.writeAll(sp.bytes);
    f.commit();
  } catch (e) {
    f.abort();
    throw e;
  }
}

/**
 * Like writeSafetensors, but each tensor's data is fetched only when it is written (e.g. from a tfjs
 * variable), so saving a model never holds a second full copy of its weights on the host.
 */
export async function writeSafetensorsStreaming(
  path: string,
  tensors: { name: string; dtype: 'F32' | 'I64' | 'I32'; shape: number[]; data: () => TensorData | Promise<TensorData> }[],
  metadata?: Record<string, string> | null,
): Promise<void> {
  const { bytes, sizes } = encodeHeader(tensors, metadata);
  const f = tempFile(path);
  try {
    f.writeAll(bytes);
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i];
      const b = toBytes(t.name, { dtype: t.dtype, shape: t.shape, data: await t.data() });
      if (b.byteLength !== sizes[i]) throw new Error(`writeSafetensors: tensor "${t.name}" has ${b.byteLength} bytes, expected ${sizes[i]}`);
      f.writeAll(b);
    }
    f.commit();
  } catch (e) {
    f.abort();
    throw e;
  }
}
