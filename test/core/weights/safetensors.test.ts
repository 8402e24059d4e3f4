// safetensors reader/writer: round trips, F16/BF16/F64 read as float32, and corrupt files giving a
// UserError that names the file and the bad tensor (never a crash or a hang).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../../../core/errors.ts';
import { openSafetensors, readSafetensors, readSafetensorsHeader, writeSafetensors, type TensorToWrite } from '../../../core/weights/safetensors.ts';

const dir = mkdtempSync(join(tmpdir(), 'st-test-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** a file from a raw header object and data bytes */
function rawFile(name: string, header: unknown, data: Uint8Array, lenOverride?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(json.length));
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat([len, json, Buffer.from(data)]));
  return p;
}

function rejects(path: string, pattern: RegExp): void {
  assert.throws(
    () => readSafetensors(path),
    (e: unknown) => {
      assert.ok(e instanceof UserError, `expected a UserError, got ${e}`);
      assert.ok(e.message.includes(path), `message names the file: ${e.message}`);
      assert.match(e.message, pattern);
      return true;
    },
  );
}

test('write then read: F32, I32, I64, metadata, 8-byte aligned data, atomic (no temp file left)', () => {
  const p = join(dir, 'rt.safetensors');
  const tensors = new Map<string, TensorToWrite>([
    ['a', { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, -2, 3.5, 1e-30, NaN, Infinity]) }],
    ['b', { dtype: 'I32', shape: [3], data: new Int32Array([-1, 0, 2147483647]) }],
    ['c', { dtype: 'I64', shape: [2], data: new BigInt64Array([-100n, 9007199254740993n]) }],
    ['scalar', { dtype: 'F32', shape: [], data: new Float32Array([6.25]) }],
    ['empty', { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) }],
  ]);
  writeSafetensors(p, tensors, { format: 'pt', 'decoder.token_embedding.weight': 'decoder.head.weight' });
  const bytes = readFileSync(p);
  const n = Number(bytes.readBigUInt64LE(0));
  assert.equal((8 + n) % 8, 0, 'data section starts 8-byte aligned');
  const r = readSafetensors(p);
  assert.deepEqual(r.metadata, { format: 'pt', 'decoder.token_embedding.weight': 'decoder.head.weight' });
  assert.deepEqual([...r.tensors.keys()], ['a', 'b', 'c', 'scalar', 'empty']);
  assert.deepEqual(r.tensors.get('a')!.shape, [2, 3]);
  assert.deepEqual(Array.from(r.tensors.get('a')!.data as Float32Array), [1, -2, 3.5, Math.fround(1e-30), NaN, Infinity]);
  assert.deepEqual(Array.from(r.tensors.get('b')!.data as Int32Array), [-1, 0, 2147483647]);
  assert.deepEqual(Array.from(r.tensors.get('c')!.data as BigInt64Array), [-100n, 9007199254740993n]);
  assert.deepEqual(r.tensors.get('scalar')!.shape, []);
  assert.equal(r.tensors.get('empty')!.data.length, 0);
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('tmp')), []);
});

test('F16, BF16 and F64 are read as float32', () => {
  const f16 = new Uint16Array([0x3c00, 0xc000, 0x3555, 0x0001, 0x7c00, 0x0000]); // 1, -2, ~0.33325, 2^-24, inf, 0
  const bf16 = new Uint16Array([0x3f80, 0xc040, 0x3eaa]); // 1, -3, 0.33203125
  const f64 = new Float64Array([0.1, -1e10]);
  const data = Buffer.concat([Buffer.from(f16.buffer), Buffer.from(bf16.buffer), Buffer.from(f64.buffer)]);
  const header = {
    h: { dtype: 'F16', shape: [6], data_offsets: [0, 12] },
    b: { dtype: 'BF16', shape: [3], data_offsets: [12, 18] },
    d: { dtype: 'F64', shape: [2], data_offsets: [18, 34] },
  };
  const r = readSafetensors(rawFile('half.safetensors', header, data)).tensors;
  assert.deepEqual(Array.from(r.get('h')!.data as Float32Array), [1, -2, Math.fround(0.333251953125), 2 ** -24, Infinity, 0]);
  assert.deepEqual(Array.from(r.get('b')!.data as Float32Array), [1, -3, 0.33203125]);
  assert.deepEqual(Array.from(r.get('d')!.data as Float32Array), [Math.fround(0.1), Math.fround(-1e10)]);
});

test('openSafetensors reads tensors by name without reading the rest', () => {
  const p = join(dir, 'sub.safetensors');
  writeSafetensors(p, new Map<string, TensorToWrite>([
    ['x', { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }],
    ['y', { dtype: 'F32', shape: [1], data: new Float32Array([3]) }],
  ]));
  const f = openSafetensors(p);
  try {
    assert.deepEqual(f.names, ['x', 'y']);
    assert.ok(f.has('y') && !f.has('z'));
    assert.deepEqual(Array.from(f.read('y').data as Float32Array), [3]);
    assert.throws(() => f.read('z'), /no tensor named "z"/);
  } finally {
    f.close();
  }
});

const good = { w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };

test('corrupt: truncated files', () => {
  const full = readFileSync(rawFile('full.safetensors', good, new Uint8Array(16)));
  const p1 = join(dir, 'trunc-len.safetensors');
  writeFileSync(p1, full.subarray(0, 5));
  rejects(p1, /shorter than the 8-byte header length/);
  const p2 = join(dir, 'trunc-data.safetensors');
  writeFileSync(p2, full.subarray(0, full.length - 4));
  rejects(p2, /tensor "w".*past the end of the data/);
  const p3 = join(dir, 'trunc-header.safetensors');
  writeFileSync(p3, full.subarray(0, 20));
  rejects(p3, /header length \d+ exceeds the file size/);
});

test('corrupt: header length larger than the file (huge u64)', () => {
  rejects(rawFile('huge.safetensors', good, new Uint8Array(16), 0xffffffffffffffffn), /header length 18446744073709551615 exceeds the file size/);
});

test('corrupt: header is not JSON / not an object', () => {
  rejects(rawFile('badjson.safetensors', '{"w": {"dtype": "F32", ', new Uint8Array(16)), /header is not valid UTF-8 JSON/);
  rejects(rawFile('array.safetensors', '[1, 2]', new Uint8Array(0)), /header is not a JSON object/);
});

test('corrupt: overlapping tensors are named', () => {
  const h = {
    a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
    b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
  };
  rejects(rawFile('overlap.safetensors', h, new Uint8Array(16)), /tensor "b" \(bytes 8\.\.16\) overlaps tensor "a"/);
});

test('corrupt: dtype x shape does not match the byte length; unknown dtype; bad shape; bad offsets', () => {
  rejects(rawFile('mismatch.safetensors', { w: { dtype: 'F32', shape: [3, 2], data_offsets: [0, 16] } }, new Uint8Array(16)), /tensor "w": F32 shape \[3, 2\] needs 24 bytes but data_offsets span 16/);
  rejects(rawFile('dtype.safetensors', { w: { dtype: 'F99', shape: [4], data_offsets: [0, 16] } }, new Uint8Array(16)), /tensor "w": unknown dtype "F99"/);
  rejects(rawFile('shape.safetensors', { w: { dtype: 'F32', shape: [-4], data_offsets: [0, 16] } }, new Uint8Array(16)), /tensor "w": shape \[-4\]/);
  rejects(rawFile('offs.safetensors', { w: { dtype: 'F32', shape: [4], data_offsets: [16, 0] } }, new Uint8Array(16)), /tensor "w": data_offsets \[16,0\]/);
  rejects(rawFile('meta.safetensors', { __metadata__: { a: 1 }, ...good }, new Uint8Array(16)), /__metadata__\["a"\] is not a string/);
});

test('a known but unsupported dtype is refused on read, naming the tensor', () => {
  const p = rawFile('u8.safetensors', { m: { dtype: 'U8', shape: [4], data_offsets: [0, 4] } }, new Uint8Array(4));
  assert.equal(readSafetensorsHeader(p).entries.get('m')!.dtype, 'U8');
  rejects(p, /tensor "m" has dtype U8/);
});

test('a missing file is a UserError naming it', () => {
  rejects(join(dir, 'nope.safetensors'), /file not found/);
});

test('streaming writer: same bytes as the in-memory writer; a failure keeps the old file and leaves no temp file', async () => {
  const { writeSafetensorsStreaming } = await import('../../../core/weights/safetensors.ts');
  const a = new Float32Array([1, 2, 3, 4, 5, 6]);
  const b = new BigInt64Array([7n, -8n]);
  const p1 = join(dir, 'mem.safetensors');
  const p2 = join(dir, 'stream.safetensors');
  writeSafetensors(p1, new Map<string, TensorToWrite>([['a', { dtype: 'F32', shape: [2, 3], data: a }], ['b', { dtype: 'I64', shape: [2], data: b }]]), { k: 'v' });
  await writeSafetensorsStreaming(p2, [
    { name: 'a', dtype: 'F32', shape: [2, 3], data: async () => a },
    { name: 'b', dtype: 'I64', shape: [2], data: () => b },
  ], { k: 'v' });
  assert.deepEqual(readFileSync(p2), readFileSync(p1));
  await assert.rejects(
    writeSafetensorsStreaming(p2, [
      { name: 'a', dtype: 'F32', shape: [2, 3], data: () => a },
      { name: 'b', dtype: 'F32', shape: [2], data: () => Promise.reject(new Error('device lost')) },
    ]),
    /device lost/,
  );
  assert.deepEqual(readFileSync(p2), readFileSync(p1), 'the previous file is untouched');
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp-')), []);
});
