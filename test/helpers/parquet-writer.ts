// A minimal Parquet writer for tests (no writer package is installed): PLAIN values, RLE levels,
// uncompressed data page v1, Thrift compact footer. It writes the nested shapes our datasets read
// (optional primitives, optional struct of primitives, optional LIST of struct of primitives) and
// can deliberately damage a row group's column metadata (fault tests).
import { writeFileSync } from 'node:fs';
import { brotliCompressSync, gzipSync } from 'node:zlib';

type Prim = { name: string; kind: 'string' | 'binary' | 'int64' };
export type Field =
  | Prim
  | { name: string; kind: 'struct'; fields: Prim[] }
  | { name: string; kind: 'list-struct'; fields: Prim[] }
  /** optional LIST of optional primitives (Hugging Face `Sequence(Value("string"))`) */
  | { name: string; kind: 'list'; element: Prim['kind'] };

const PTYPE = { string: 6, binary: 6, int64: 2 } as const;
const PTYPE_NAME: Record<string, number> = { BOOLEAN: 0, INT32: 1, INT64: 2, BYTE_ARRAY: 6 };

// ---- Thrift compact protocol ---------------------------------------------------------------------
class Thrift {
  bytes: number[] = [];
  private last: number[] = [0];
  varint(n: bigint | number): void {
    let v = BigInt(n);
    while (v >= 0x80n) {
      this.bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.bytes.push(Number(v));
  }
  zigzag(n: bigint | number): void {
    const v = BigInt(n);
    this.varint(v >= 0n ? v << 1n : (-v << 1n) - 1n);
  }
  private header(id: number, type: number): void {
    const d = id - this.last[this.last.length - 1];
    if (d > 0 && d <= 15) this.bytes.push((d << 4) | type);
    else {
      this.bytes.push(type);
      this.zigzag(id);
    }
    this.last[this.last.length - 1] = id;
  }
  i32(id: number, v: number): void {
    this.header(id, 5);
    this.zigzag(v);
  }
  i64(id: number, v: number | bigint): void {
    this.header(id, 6);
    this.zigzag(v);
  }
  bin(id: number, s: string | Uint8Array): void {
    this.header(id, 8);
    const b = typeof s === 'string' ? new TextEncoder().encode(s) : s;
    this.varint(b.length);
    this.bytes.push(...b);
  }
  struct(id: number, body: () => void): void {
    this.header(id, 12);
    this.inner(body);
  }
  inner(body: () => void): void {
    this.last.push(0);
    body();
    this.bytes.push(0);
    this.last.pop();
  }
  list(id: number, elemType: number, n: number, each: (i: number) => void): void {
    this.header(id, 9);
    if (n < 15) this.bytes.push((n << 4) | elemType);
    else {
      this.bytes.push(0xf0 | elemType);
      this.varint(n);
    }
    for (let i = 0; i < n; i++) each(i);
  }
}

// ---- column shredding -----------------------------------------------------------------------------
interface Leaf {
  path: string[];
  prim: Prim;
  maxDef: number;
  maxRep: number;
  /** (row) -> entries {rep, def, value?} */
  shred(row: any): { rep: number; def: number; value?: any }[];
}

function leaves(fields: Field[]): Leaf[] {
  const out: Leaf[] = [];
  for (const f of fields) {
    if (f.kind === 'struct') {
      for (const p of f.fields)
        out.push({ path: [f.name, p.name], prim: p, maxDef: 2, maxRep: 0, shred: (row) => {
          const s = row[f.name];
          if (s == null) return [{ rep: 0, def: 0 }];
          return s[p.name] == null ? [{ rep: 0, def: 1 }] : [{ rep: 0, def: 2, value: s[p.name] }];
        } });
    } else if (f.kind === 'list-struct') {
      for (const p of f.fields)
        out.push({ path: [f.name, 'list', 'element', p.name], prim: p, maxDef: 4, maxRep: 1, shred: (row) => {
          const l = row[f.name];
          if (l == null) return [{ rep: 0, def: 0 }];
          if (!l.length) return [{ rep: 0, def: 1 }];
          return l.map((e: any, j: number) => {
            const rep = j === 0 ? 0 : 1;
            if (e == null) return { rep, def: 2 };
            return e[p.name] == null ? { rep, def: 3 } : { rep, def: 4, value: e[p.name] };
          });
        } });
    } else if (f.kind === 'list') {
      out.push({ path: [f.name, 'list', 'element'], prim: { name: 'element', kind: f.element }, maxDef: 3, maxRep: 1, shred: (row) => {
        const l = row[f.name];
        if (l == null) return [{ rep: 0, def: 0 }];
        if (!l.length) return [{ rep: 0, def: 1 }];
        return l.map((e: any, j: number) => (e == null ? { rep: j === 0 ? 0 : 1, def: 2 } : { rep: j === 0 ? 0 : 1, def: 3, value: e }));
      } });
    } else {
      out.push({ path: [f.name], prim: f, maxDef: 1, maxRep: 0, shred: (row) => (row[f.name] == null ? [{ rep: 0, def: 0 }] : [{ rep: 0, def: 1, value: row[f.name] }]) });
    }
  }
  return out;
}

function rle(levels: number[], maxLevel: number): Uint8Array {
  const width = Math.ceil(Math.log2(maxLevel + 1));
  const bytesPer = Math.ceil(width / 8);
  const out: number[] = [];
  let i = 0;
  while (i < levels.length) {
    let j = i;
    while (j < levels.length && levels[j] === levels[i]) j++;
    let n = (j - i) << 1;
    while (n >= 0x80) {
      out.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    out.push(n);
    for (let b = 0; b < bytesPer; b++) out.push((levels[i] >> (8 * b)) & 0xff);
    i = j;
  }
  const len = out.length;
  return Uint8Array.from([len & 0xff, (len >> 8) & 0xff, (len >> 16) & 0xff, len >>> 24, ...out]);
}

function plain(prim: Prim, values: any[]): Uint8Array {
  const parts: number[] = [];
  for (const v of values) {
    if (prim.kind === 'int64') {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigInt64(0, BigInt(v), true);
      parts.push(...b);
    } else {
      const b = typeof v === 'string' ? new TextEncoder().encode(v) : (v as Uint8Array);
      parts.push(b.length & 0xff, (b.length >> 8) & 0xff, (b.length >> 16) & 0xff, b.length >>> 24);
      for (const x of b) parts.push(x);
    }
  }
  return Uint8Array.from(parts);
}

export interface WriteOptions {
  rowGroupSize?: number;
  /** page compression (hyparquet needs hyparquet-compressors for these) */
  codec?: 'gzip' | 'brotli';
  /** damage: write this physical type into the metadata of row group `rowGroup`'s column `path` */
  wrongType?: { rowGroup: number; path: string; type: 'INT64' | 'INT32' | 'BYTE_ARRAY' };
}

/** Write `rows` with `fields` as a Parquet file; returns its bytes (also written to `path` if given). */
export function writeParquet(path: string | null, fields: Field[], rows: any[], opts: WriteOptions = {}): Uint8Array {
  const ls = leaves(fields);
  const rgSize = opts.rowGroupSize ?? Math.max(1, rows.length);
  // the file body as chunks (a large file would overflow a spread into one number array)
  const pieces: Uint8Array[] = [new TextEncoder().encode('PAR1')];
  const body = { length: 4 };
  const groups: { chunks: { leaf: Leaf; offset: number; size: number; numValues: number }[]; numRows: number; bytes: number }[] = [];
  for (let start = 0; start < rows.length; start += rgSize) {
    const part = rows.slice(start, start + rgSize);
    const chunks: (typeof groups)[number]['chunks'] = [];
    let bytes = 0;
    for (const leaf of ls) {
      const entries = part.flatMap((r) => leaf.shred(r));
      const reps = rle(entries.map((e) => e.rep), leaf.maxRep);
      const defs = rle(entries.map((e) => e.def), leaf.maxDef);
      const vals = plain(leaf.prim, entries.filter((e) => e.def === leaf.maxDef).map((e) => e.value));
      const raw = Uint8Array.from([...(leaf.maxRep ? reps : []), ...defs, ...vals]);
      const page = opts.codec === 'gzip' ? new Uint8Array(gzipSync(raw)) : opts.codec === 'brotli' ? new Uint8Array(brotliCompressSync(raw)) : raw;
      const h = new Thrift();
      h.inner(() => {
        h.i32(1, 0); // DATA_PAGE
        h.i32(2, raw.length);
        h.i32(3, page.length);
        h.struct(5, () => {
          h.i32(1, entries.length);
          h.i32(2, 0); // PLAIN
          h.i32(3, 3); // RLE
          h.i32(4, 3);
        });
      });
      const offset = body.length;
      pieces.push(Uint8Array.from(h.bytes), page);
      body.length += h.bytes.length + page.length;
      chunks.push({ leaf, offset, size: h.bytes.length + page.length, numValues: entries.length });
      bytes += h.bytes.length + page.length;
    }
    groups.push({ chunks, numRows: part.length, bytes });
  }
  // schema elements, depth first
  const schema: { name: string; type?: number; rep?: number; children?: number; converted?: number }[] = [{ name: 'schema', children: fields.length }];
  for (const f of fields) {
    if (f.kind === 'struct') {
      schema.push({ name: f.name, rep: 1, children: f.fields.length });
      for (const p of f.fields) schema.push({ name: p.name, type: PTYPE[p.kind], rep: 1, converted: p.kind === 'string' ? 0 : undefined });
    } else if (f.kind === 'list-struct') {
      schema.push({ name: f.name, rep: 1, children: 1, converted: 3 });
      schema.push({ name: 'list', rep: 2, children: 1 });
      schema.push({ name: 'element', rep: 1, children: f.fields.length });
      for (const p of f.fields) schema.push({ name: p.name, type: PTYPE[p.kind], rep: 1, converted: p.kind === 'string' ? 0 : undefined });
    } else if (f.kind === 'list') {
      schema.push({ name: f.name, rep: 1, children: 1, converted: 3 });
      schema.push({ name: 'list', rep: 2, children: 1 });
      schema.push({ name: 'element', type: PTYPE[f.element], rep: 1, converted: f.element === 'string' ? 0 : undefined });
    } else schema.push({ name: f.name, type: PTYPE[f.kind], rep: 1, converted: f.kind === 'string' ? 0 : undefined });
  }
  const t = new Thrift();
  t.inner(() => {
    t.i32(1, 1);
    t.list(2, 12, schema.length, (i) => {
      const s = schema[i];
      t.inner(() => {
        if (s.type !== undefined) t.i32(1, s.type);
        if (s.rep !== undefined) t.i32(3, s.rep);
        t.bin(4, s.name);
        if (s.children !== undefined) t.i32(5, s.children);
        if (s.converted !== undefined) t.i32(6, s.converted);
      });
    });
    t.i64(3, rows.length);
    t.list(4, 12, groups.length, (g) => {
      const grp = groups[g];
      t.inner(() => {
        t.list(1, 12, grp.chunks.length, (c) => {
          const ch = grp.chunks[c];
          const damaged = opts.wrongType && opts.wrongType.rowGroup === g && opts.wrongType.path === ch.leaf.path.join('.');
          t.inner(() => {
            t.i64(2, ch.offset);
            t.struct(3, () => {
              t.i32(1, damaged ? PTYPE_NAME[opts.wrongType!.type] : PTYPE[ch.leaf.prim.kind]);
              t.list(2, 5, 2, (k) => t.zigzag(k === 0 ? 0 : 3));
              t.list(3, 8, ch.leaf.path.length, (k) => {
                const b = new TextEncoder().encode(ch.leaf.path[k]);
                t.varint(b.length);
                t.bytes.push(...b);
              });
              t.i32(4, opts.codec === 'gzip' ? 2 : opts.codec === 'brotli' ? 4 : 0); // UNCOMPRESSED / GZIP / BROTLI
              t.i64(5, ch.numValues);
              t.i64(6, ch.size);
              t.i64(7, ch.size);
              t.i64(9, ch.offset);
            });
          });
        });
        t.i64(2, grp.bytes);
        t.i64(3, grp.numRows);
      });
    });
    t.bin(6, 'nanovlm-ts test writer');
  });
  const footer = t.bytes;
  const len = footer.length;
  pieces.push(Uint8Array.from([...footer, len & 0xff, (len >> 8) & 0xff, (len >> 16) & 0xff, len >>> 24]), new TextEncoder().encode('PAR1'));
  const out = new Uint8Array(pieces.reduce((a, c) => a + c.length, 0));
  let at = 0;
  for (const c of pieces) {
    out.set(c, at);
    at += c.length;
  }
  if (path) writeFileSync(path, out);
  return out;
}

/** the_cauldron layout */
export const CAULDRON_FIELDS: Field[] = [
  { name: 'images', kind: 'list-struct', fields: [{ name: 'bytes', kind: 'binary' }, { name: 'path', kind: 'string' }] },
  { name: 'texts', kind: 'list-struct', fields: [{ name: 'user', kind: 'string' }, { name: 'assistant', kind: 'string' }, { name: 'source', kind: 'string' }] },
];
/** MMStar layout (without meta_info) */
export const MMSTAR_FIELDS: Field[] = [
  { name: 'index', kind: 'int64' },
  { name: 'question', kind: 'string' },
  { name: 'image', kind: 'struct', fields: [{ name: 'bytes', kind: 'binary' }, { name: 'path', kind: 'string' }] },
  { name: 'answer', kind: 'string' },
  { name: 'category', kind: 'string' },
  { name: 'l2_category', kind: 'string' },
];
