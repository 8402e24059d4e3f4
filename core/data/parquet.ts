// Reading Parquet datasets (the_cauldron, MMStar layouts) with hyparquet, row group by row group:
// only the metadata of every file and ONE row group per stream are in memory at a time.
//   - openParquet: footer + schema, a UserError naming the file when it is not Parquet / truncated;
//   - checkLeaves: every row group must carry the leaf columns a dataset needs, with the expected
//     physical type (a shard or row group written with another schema is named with its column);
//   - ParquetDataset: selection (seeded shuffle -> skip / limit -> val_ratio split, as nanoVLM's
//     train.py: shuffle(seed=0), cut-off, last val_ratio part = validation), per-epoch order (row
//     groups shuffled, rows shuffled inside a row group, streams e.g. subsets mixed by a seeded
//     shuffle), resumable with `skip` without reading the skipped rows.
import { stat } from 'node:fs/promises';
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead, type AsyncBuffer, type FileMetaData } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { UserError } from '../errors.ts';
import type { Dataset, Sample } from '../types.ts';
import { hashString, mixSeed, mulberry32, permutation, shuffleInPlace } from '../rng.ts';

export interface ParquetFile {
  path: string;
  /** how messages name it (relative path) */
  display: string;
  file: AsyncBuffer;
  metadata: FileMetaData;
  /** first global row of each row group, plus the total at the end */
  groupStarts: number[];
  numRows: number;
}

/** Open a Parquet file's footer. Not Parquet / truncated / unreadable -> UserError naming it. */
export async function openParquet(path: string, display = path): Promise<ParquetFile> {
  let file: AsyncBuffer;
  let metadata: FileMetaData;
  try {
    const st = await stat(path);
    if (st.size < 12) throw new Error(`${st.size} bytes is too short for a Parquet file`);
    file = await asyncBufferFromFile(path);
    metadata = await parquetMetadataAsync(file);
  } catch (e) {
    throw new UserError(`${display} is not a readable Parquet file (${(e as Error).message}); is it truncated or another format?`, {
      where: { file: path },
      hint: 'download it again, or remove it from the dataset folder',
      cause: e,
    });
  }
  return parquetFile(path, display, file, metadata);
}

function parquetFile(path: string, display: string, file: AsyncBuffer, metadata: FileMetaData): ParquetFile {
  const groupStarts = [0];
  for (const rg of metadata.row_groups) groupStarts.push(groupStarts[groupStarts.length - 1] + Number(rg.num_rows));
  return { path, display, file, metadata, groupStarts, numRows: groupStarts[groupStarts.length - 1] };
}

/**
 * Open a Parquet file given as an AsyncBuffer (e.g. HTTP range reads of a Hub file, core/hub/lazy.ts):
 * only its footer is read here. `path` is where messages point (a URL).
 */
export async function openParquetBuffer(file: AsyncBuffer, display: string, path: string): Promise<ParquetFile> {
  let metadata: FileMetaData;
  try {
    if (file.byteLength < 12) throw new Error(`${file.byteLength} bytes is too short for a Parquet file`);
    metadata = await parquetMetadataAsync(file);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${display} is not a readable Parquet file (${(e as Error).message}); is it truncated or another format?`, {
      where: { file: path },
      hint: 'check the file on the Hub, or download the dataset and pass the local copy',
      cause: e,
    });
  }
  return parquetFile(path, display, file, metadata);
}

/** A leaf a dataset needs: first and last path element (e.g. images / bytes, whatever the list nesting is called) */
export interface Leaf {
  column: string;
  leaf: string;
  type: 'BYTE_ARRAY' | 'INT64' | 'INT32';
  /** alternative physical types accepted */
  alt?: string[];
}

/** Check the schema and every row group's column chunks for the leaves; UserError naming file, row group and column. */
export function checkLeaves(pf: ParquetFile, leaves: Leaf[]): void {
  const rgs = pf.metadata.row_groups;
  for (const l of leaves) {
    const want = [l.type, ...(l.alt ?? [])];
    if (!pf.metadata.schema.some((s) => s.name === l.column))
      throw new UserError(`${pf.display}: no column "${l.column}" (columns: ${topColumns(pf).join(', ')})`, {
        where: { file: pf.path },
        hint: 'this file does not have the layout the dataset plugin reads; check the dataset type (cauldron / mmstar) or the file',
      });
    rgs.forEach((rg, i) => {
      const chunk = rg.columns.find((c) => c.meta_data && c.meta_data.path_in_schema[0] === l.column && c.meta_data.path_in_schema[c.meta_data.path_in_schema.length - 1] === l.leaf);
      const name = `${l.column}.…${l.leaf}`;
      if (!chunk?.meta_data)
        throw new UserError(`${pf.display}: row group ${i} has no column chunk ${name}`, { where: { file: pf.path }, hint: 'the file was written with another schema; rewrite or remove it' });
      if (!want.includes(chunk.meta_data.type))
        throw new UserError(`${pf.display}: row group ${i} column ${chunk.meta_data.path_in_schema.join('.')} is ${chunk.meta_data.type}, expected ${want.join(' or ')}`, {
          where: { file: pf.path },
          hint: 'the file was written with another schema; rewrite or remove it',
        });
    });
  }
}

export function topColumns(pf: ParquetFile): string[] {
  const out: string[] = [];
  const schema = pf.metadata.schema;
  // walk the root's children, skipping their subtrees
  let i = 1;
  const skip = (k: number): number => {
    let n = schema[k].num_children ?? 0;
    let j = k + 1;
    while (n-- > 0) j = skip(j);
    return j;
  };
  while (i < schema.length) {
    out.push(schema[i].name);
    i = skip(i);
  }
  return out;
}

/**
 * Rows of one row group (all, or local rows [from, to)), as objects with the given top-level
 * columns (binary as Uint8Array).
 */
export async function readRows(pf: ParquetFile, rowGroup: number, columns: string[], from = 0, to?: number): Promise<Record<string, any>[]> {
  const rowStart = pf.groupStarts[rowGroup] + from;
  const rowEnd = to === undefined ? pf.groupStarts[rowGroup + 1] : pf.groupStarts[rowGroup] + to;
  try {
    let rows: Record<string, any>[] = [];
    await parquetRead({
      file: pf.file,
      metadata: pf.metadata,
      columns,
      rowStart,
      rowEnd,
      rowFormat: 'object',
      utf8: false,
      compressors,
      onComplete: (r: Record<string, any>[]) => (rows = r),
    });
    if (rows.length !== rowEnd - rowStart) throw new Error(`got ${rows.length} rows, expected ${rowEnd - rowStart}`);
    return rows;
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${pf.display}: cannot read row group ${rowGroup} (rows ${rowStart}-${rowEnd - 1}, columns ${columns.join(', ')}): ${(e as Error).message}`, {
      where: { file: pf.path },
      hint: 'the file is damaged or was written with another schema; download it again or remove it',
      cause: e,
    });
  }
}

const dec = new TextDecoder();
/** a string column value (hyparquet gives Uint8Array for un-annotated binary) */
export function text(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return dec.decode(v);
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  return undefined;
}
/** an image value: {bytes, path} struct (or raw bytes) -> bytes, or an empty array when absent */
export function imageBytes(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  const b = (v as { bytes?: unknown } | null | undefined)?.bytes;
  if (b instanceof Uint8Array) return b;
  if (typeof b === 'string') return new TextEncoder().encode(b);
  return new Uint8Array(0);
}

// ---- a dataset over Parquet files ---------------------------------------------------------------

export interface ParquetDatasetOptions {
  name: string;
  /** keys the per-epoch order (default: name); stays the same when the user renames the dataset */
  orderKey?: string;
  /** files in order; `stream` groups them (e.g. one per subset) for mixing */
  files: { pf: ParquetFile; stream: number }[];
  columns: string[];
  /** `near`: the rows read with it (its row group span), `globalRow`: its index over all files */
  toSample(row: Record<string, any>, id: string, near: { rows: Record<string, any>[]; globalRow: number }): Sample;
  /** seed of the selection shuffle (nanoVLM: 0) */
  selectSeed: number;
  /** seed of the per-epoch order */
  orderSeed: number;
  shuffle: boolean;
  skip: number;
  limit: number | null;
  valRatio: number;
  split: 'train' | 'val';
  /** apply the seeded selection shuffle even without skip / limit / val_ratio (default: only when needed) */
}

interface Unit {
  file: number;
  group: number;
  /** row indices inside the row group */
  rows: Int32Array;
}

export class ParquetDataset implements Dataset {
  readonly name: string;
  private units: Unit[][] = []; // per stream, in file order
  private count = 0;
  private fileStarts: number[];

  constructor(private o: ParquetDatasetOptions) {
    this.name = o.name;
    const starts: number[] = [0];
    for (const f of o.files) starts.push(starts[starts.length - 1] + f.pf.numRows);
    const N = starts[starts.length - 1];
    this.fileStarts = starts;
    // selection, as nanoVLM train.py: shuffle(seed) -> first `total` -> last val part is validation
    let members: Int32Array;
    if (o.skip === 0 && o.limit == null && o.valRatio === 0) {
      members = new Int32Array(N).map((_, i) => i);
    } else {
      const perm = permutation(N, o.selectSeed);
      const sel = perm.subarray(Math.min(o.skip, N), Math.min(N, o.skip + (o.limit ?? N)));
      const valSize = Math.floor(sel.length * o.valRatio);
      members = Int32Array.from(o.split === 'val' ? sel.subarray(sel.length - valSize) : sel.subarray(0, sel.length - valSize)).sort();
    }
    this.count = members.length;
    // group the members by (file, row group), per stream
    const streams = new Map<number, Unit[]>();
    let f = 0;
    let cur: { unit: Unit; rows: number[] } | null = null;
    const flush = () => {
      if (cur) {
        cur.unit.rows = Int32Array.from(cur.rows);
        const s = o.files[cur.unit.file].stream;
        if (!streams.has(s)) streams.set(s, []);
        streams.get(s)!.push(cur.unit);
      }
      cur = null;
    };
    for (const g of members) {
      while (g >= starts[f + 1]) f++;
      const local = g - starts[f];
      const gs = o.files[f].pf.groupStarts;
      let group = 0;
      while (local >= gs[group + 1]) group++;
      if (!cur || cur.unit.file !== f || cur.unit.group !== group) {
        flush();
        cur = { unit: { file: f, group, rows: new Int32Array(0) }, rows: [] };
      }
      cur!.rows.push(local - gs[group]);
    }
    flush();
    this.units = [...streams.keys()].sort((a, b) => a - b).map((k) => streams.get(k)!);
  }

  async size(): Promise<number> {
    return this.count;
  }

  /** the order of one stream in an epoch: its units (shuffled or not), each with its rows in order */
  private streamOrder(stream: number, epoch: number): Unit[] {
    const units = this.units[stream];
    if (!this.o.shuffle) return units;
    const rand = mulberry32(mixSeed(this.o.orderSeed, hashString(this.o.orderKey ?? this.name), epoch, stream));
    const order = units.map((u) => ({ ...u, rows: u.rows.slice() }));
    shuffleInPlace(order, rand);
    for (const u of order) shuffleInPlace(u.rows, rand);
    return order;
  }

  async *samples(opts: { epoch?: number; skip?: number } = {}): AsyncIterable<Sample> {
    const epoch = opts.epoch ?? 0;
    const S = this.units.length;
    const sizes = this.units.map((us) => us.reduce((a, u) => a + u.rows.length, 0));
    // which stream each position comes from
    const label = new Uint16Array(this.count);
    let k = 0;
    sizes.forEach((n, s) => label.fill(s, k, (k += n)));
    if (this.o.shuffle && S > 1) shuffleInPlace(label, mulberry32(mixSeed(this.o.orderSeed, hashString(this.o.orderKey ?? this.name), epoch, 0xffff)));
    const skip = Math.min(opts.skip ?? 0, this.count);
    const skipPer = new Array(S).fill(0);
    for (let i = 0; i < skip; i++) skipPer[label[i]]++;
    const iters = this.units.map((_, s) => this.streamRows(s, epoch, skipPer[s]));
    try {
      for (let i = skip; i < this.count; i++) {
        const r = await iters[label[i]].next();
        if (r.done) throw new Error(`internal: stream ${label[i]} of ${this.name} ended early`);
        yield r.value;
      }
    } finally {
      await Promise.allSettled(iters.map((it) => it.return(undefined)));
    }
  }

  /** rows of one stream in epoch order, skipping `skip` (whole row groups are skipped without reading) */
  private async *streamRows(stream: number, epoch: number, skip: number): AsyncGenerator<Sample> {
    for (const u of this.streamOrder(stream, epoch)) {
      if (skip >= u.rows.length) {
        skip -= u.rows.length;
        continue;
      }
      const { pf } = this.o.files[u.file];
      // read only the span of rows this unit needs (e.g. the 1% validation rows of a row group)
      // (the span of the whole unit, not only after `skip`: what a sample sees stays the same on resume)
      let lo = Infinity;
      let hi = -1;
      for (let j = 0; j < u.rows.length; j++) {
        lo = Math.min(lo, u.rows[j]);
        hi = Math.max(hi, u.rows[j]);
      }
      const rows = await readRows(pf, u.group, this.o.columns, lo, hi + 1);
      const base = pf.groupStarts[u.group];
      for (let j = skip; j < u.rows.length; j++) {
        const local = u.rows[j];
        yield this.o.toSample(rows[local - lo] ?? {}, `${pf.display} row ${base + local}`, { rows, globalRow: this.fileStarts[u.file] + base + local });
      }
      skip = 0;
    }
  }
}
