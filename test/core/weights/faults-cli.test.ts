// Fault injection, weights: a model folder is produced by a real `vlm run` (3 steps of the tiny
// model), then copies of it are damaged the ways files get damaged (cut short, header length or
// JSON broken, offsets overlapping or past the end, dtype or shape not matching, NaN values, a
// config.json that disagrees with the tensors, config.json missing) and loaded the ways a user
// loads them: `vlm generate --model <folder>` and `model.from: <folder>` in a recipe.
// Each case: exit 1, the message names the file (and the tensor) and what to do, no stack trace,
// the damaged folder itself left exactly as it was (loading never "repairs" or rewrites it).
// test/core/weights/safetensors.test.ts checks the reader's messages in-process; this is the user's view.
import assert from 'node:assert/strict';
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { assertNoLeftovers, assertUnchanged, assertUserError, png, pool, runDirIn, snapshot, tinyRecipe, vlm, workspace, type CliResult } from '../../helpers/cli-faults.ts';

let cwd = '';
let N: { square: string; norm: string; overlap: string[]; outside: string };
let frozen = new Map<string, string>();
const skipOutputs = (rel: string) => rel.startsWith('runs') || rel.startsWith('.hf-home');
let model = ''; // the published model folder of the fixture run
const C: Record<string, Promise<CliResult>> = {};

interface Header {
  n: number;
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  body: Buffer;
}

function parse(file: string): Header {
  const raw = readFileSync(file);
  const n = Number(raw.readBigUInt64LE(0));
  const header = JSON.parse(raw.subarray(8, 8 + n).toString('utf8'));
  delete header.__metadata__;
  return { n, header, body: raw.subarray(8 + n) };
}

function pack(header: object, body: Buffer): Buffer {
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, body]);
}

/** a copy of the model folder named `name`, changed by `edit` */
function variant(name: string, edit: (dir: string) => void): string {
  const dir = join(cwd, name);
  cpSync(model, dir, { recursive: true });
  edit(dir);
  return name;
}

const st = (dir: string) => join(dir, 'model.safetensors');
const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x));

/** `vlm generate` on a folder, quickly (greedy, one generation of two tokens) */
const gen = (folder: string) => ['generate', '--model', folder, '--image', 'photo.png', '--greedy', '--num', '1', '--max-new-tokens', '2', '--backend', 'wasm'];

before(async () => {
  cwd = workspace();
  writeFileSync(join(cwd, 'r.yaml'), stringify(tinyRecipe()));
  writeFileSync(join(cwd, 'photo.png'), png(40, 30));
  const r = await vlm(['run', 'r.yaml'], { cwd });
  assert.equal(r.code, 0, r.all);
  model = join(runDirIn(cwd)!, 'model');
  assert.ok(existsSync(join(model, 'model.safetensors')) && existsSync(join(model, 'config.json')));

  const { header, body } = parse(st(model));
  const names = Object.keys(header).sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0]);
  const square = names.find((k) => header[k].shape.length === 2 && header[k].shape[0] === 48 && header[k].shape[1] === 48)!;
  // two neighbours with the same byte length: the second starts 4 bytes inside the first
  const pair = names.findIndex((k, i) => i + 1 < names.length && header[k].data_offsets[1] - header[k].data_offsets[0] === header[names[i + 1]].data_offsets[1] - header[names[i + 1]].data_offsets[0]);
  const norm = names.find((k) => /^decoder\.blocks\.0\..*norm.*weight$/.test(k))!;

  const folders = {
    truncated: variant('truncated', (d) => writeFileSync(st(d), readFileSync(st(d)).subarray(0, Math.floor(readFileSync(st(d)).length / 2)))),
    headerLen: variant('header-len', (d) => {
      const raw = readFileSync(st(d));
      raw.writeBigUInt64LE(BigInt(raw.length * 10), 0);
      writeFileSync(st(d), raw);
    }),
    headerJson: variant('header-json', (d) => {
      const raw = readFileSync(st(d));
      raw.fill('{'.charCodeAt(0), 8, 8 + Number(raw.readBigUInt64LE(0)));
      writeFileSync(st(d), raw);
    }),
    overlap: variant('overlap', (d) => {
      const h = clone(header);
      const [a, b] = [names[pair], names[pair + 1]];
      const len = h[a].data_offsets[1] - h[a].data_offsets[0];
      h[b].data_offsets = [h[a].data_offsets[0] + 4, h[a].data_offsets[0] + 4 + len];
      writeFileSync(st(d), pack(h, body));
    }),
    outside: variant('outside', (d) => {
      const h = clone(header);
      const k = names[2];
      const len = h[k].data_offsets[1] - h[k].data_offsets[0];
      h[k].data_offsets = [body.length + 8, body.length + 8 + len];
      writeFileSync(st(d), pack(h, body));
    }),
    dtype: variant('dtype', (d) => {
      const h = clone(header);
      h[square].dtype = 'F16';
      writeFileSync(st(d), pack(h, body));
    }),
    shape: variant('shape', (d) => {
      const h = clone(header);
      h[square].shape = [24, 96]; // same byte length, wrong shape for the model
      writeFileSync(st(d), pack(h, body));
    }),
    nan: variant('nan', (d) => {
      const b = Buffer.from(body);
      const [s, e] = header[norm].data_offsets;
      for (let o = s; o < e; o += 4) b.writeFloatLE(NaN, o);
      writeFileSync(st(d), pack(header, b));
    }),
    config: variant('config', (d) => {
      const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
      c.lm_inter_dim = 128;
      writeFileSync(join(d, 'config.json'), JSON.stringify(c, null, 4));
    }),
    noConfig: variant('no-config', (d) => rmSync(join(d, 'config.json'))),
  };
  // the recipe's model section names the components and `from` the weights; with `from` alone the
  // checkpoint's config.json must describe the model
  writeFileSync(join(cwd, 'from-truncated.yaml'), stringify(tinyRecipe({ name: 'from-truncated', model: { ...(tinyRecipe().model as object), from: 'truncated' } })));
  writeFileSync(join(cwd, 'from-no-config.yaml'), stringify(tinyRecipe({ name: 'from-no-config', model: { from: 'no-config', tokenizer: { use: 'bytes' }, image_processor: { use: 'resize' } } })));
  N = { square, norm, overlap: [names[pair], names[pair + 1]], outside: names[2] };

  // images a user may pass to vlm generate: a decompression bomb (10^10 pixels declared in 69 bytes),
  // an empty file, a file that is no image, a directory
  writeFileSync(join(cwd, 'bomb.png'), png(100_000, 100_000, { idat: Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]) }));
  writeFileSync(join(cwd, 'empty.png'), '');
  writeFileSync(join(cwd, 'notes.png'), 'not an image\n'.repeat(10));
  frozen = snapshot(cwd, skipOutputs);
  const run = pool(3);
  const good = join(runDirIn(cwd)!, 'model');
  for (const img of ['bomb.png', 'empty.png', 'notes.png', 'truncated']) {
    C[`image:${img}`] = run(() => vlm(['generate', '--model', good, '--image', img, '--num', '1', '--max-new-tokens', '2', '--backend', 'wasm'], { cwd }));
  }
  for (const [k, folder] of Object.entries(folders)) C[k] = run(() => vlm(gen(folder), { cwd }));
  // model.from in a recipe: the same checks through vlm run's load stage
  C.fromTruncated = run(() => vlm(['run', 'from-truncated.yaml'], { cwd }));
  C.fromNoConfig = run(() => vlm(['run', 'from-no-config.yaml'], { cwd }));
  for (const p of Object.values(C)) p.catch(() => undefined);
});

describe('damaged weights through vlm generate --model and model.from', () => {
  it('truncated model.safetensors: names the file and a tensor past the end; says re-download or re-save', async () => {
    assertUserError(await C.truncated, /error: \S*truncated\/model\.safetensors: not a valid safetensors file: tensor "[^"]+": data_offsets \[\d+, \d+\] run past the end of the data/, /-> the file is truncated or corrupt; re-download or re-save it/);
  });

  it('header length larger than the file', async () => {
    assertUserError(await C.headerLen, /header-len\/model\.safetensors: not a valid safetensors file: header length \d+ exceeds the file size/, /-> /);
  });

  it('header JSON invalid', async () => {
    assertUserError(await C.headerJson, /header-json\/model\.safetensors: not a valid safetensors file: header is not valid UTF-8 JSON/, /-> /);
  });

  it('overlapping tensors: both named', async () => {
    const [a, b] = N.overlap;
    assertUserError(await C.overlap, new RegExp(`overlap/model\\.safetensors: not a valid safetensors file: tensor "${b}" \\(bytes \\d+\\.\\.\\d+\\) overlaps tensor "${a}"`));
  });

  it('offsets outside the data: the tensor named', async () => {
    assertUserError(await C.outside, new RegExp(`outside/model\\.safetensors: not a valid safetensors file: tensor "${N.outside}": data_offsets .* run past the end of the data`));
  });

  it('dtype that does not match the byte length: tensor, dtype, shape and sizes', async () => {
    assertUserError(await C.dtype, new RegExp(`dtype/model\\.safetensors: not a valid safetensors file: tensor "${N.square}": F16 shape \\[48, 48\\] needs 4608 bytes but data_offsets span 9216`));
  });

  it('a shape the model does not have: expected vs found, and what to do', async () => {
    assertUserError(
      await C.shape,
      /shape\/model\.safetensors does not match the model built from its config:/,
      new RegExp(`tensor "${N.square}": expected shape \\[48,48\\], found \\[24,96\\]`),
      /-> the checkpoint and config\.json \(or nanovlm-ts\.json\) disagree/,
    );
  });

  it('NaN-filled weights: a warning naming the tensor, and the command still runs', async () => {
    const r = await C.nan;
    assert.equal(r.code, 0, r.all);
    assert.match(r.stderr, new RegExp(`warning: .*nan/model\\.safetensors: tensor "${N.norm.replace(/\./g, '\\.')}" contains NaN or Inf values`));
    assert.match(r.stdout, /Generation 1:/);
  });

  it('config.json that does not match the tensors: every differing tensor listed', async () => {
    const r = await C.config;
    assertUserError(r, /config\/model\.safetensors does not match the model built from its config:/, /decoder\.blocks\.0\.mlp\.gate_proj\.weight": expected shape \[128,48\], found \[96,48\]/, /-> the checkpoint and config\.json/);
  });

  it('missing config.json: says what a model folder needs', async () => {
    assertUserError(await C.noConfig, /--model no-config: no model found/, /-> expected config\.json \+ model\.safetensors there/);
  });

  it('model.from a truncated checkpoint: vlm run stops in the load stage naming the file', async () => {
    assertUserError(await C.fromTruncated, /truncated\/model\.safetensors: not a valid safetensors file/, /-> the file is truncated or corrupt/);
  });

  it('model.from alone, a folder without config.json: names config.json and the folder', async () => {
    assertUserError(await C.fromNoConfig, /no-config\/config\.json not found: .*no-config is not a nanoVLM checkpoint folder/);
  });

  it('vlm generate --image: a decompression bomb, an empty file, a non-image, a directory: user errors naming the file', async () => {
    assertUserError(await C['image:bomb.png'], /error: --image bomb\.png: the image exceeds the pixel cap of \d+ \(decompression bomb\?\)/, /-> /);
    assertUserError(await C['image:empty.png'], /error: --image empty\.png: the image is empty \(0 bytes\)/, /-> /);
    assertUserError(await C['image:notes.png'], /error: --image notes\.png: cannot decode the image/, /-> /);
    assertUserError(await C['image:truncated'], /error: --image truncated: not a file/, /-> give the path of an image file/);
  });

  it('no damaged folder was modified, nothing half-written was left', async () => {
    await Promise.allSettled(Object.values(C));
    assertUnchanged(frozen, snapshot(cwd, skipOutputs), 'a model file');
    assertNoLeftovers(cwd);
  });
});
