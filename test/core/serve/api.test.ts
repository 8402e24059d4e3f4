// `vlm serve` over plain HTTP: the OpenAI-compatible API (answers equal core/generate.ts's for the
// same prompt, streaming equals the whole answer, usage, queueing, a client that leaves stops its
// generation without leaking a tensor), every kind of bad request gets a 4xx in OpenAI's error shape
// and the server keeps working, no path reaches a file outside the served folders, the default
// address is 127.0.0.1, and the dashboard's run API and event stream follow metrics.jsonl.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { startServe, type Served } from '../../../core/commands/serve.ts';
import { generateText } from '../../../core/generate.ts';
import { vqaPrompt } from '../../../core/data/prompt.ts';
import { releasable, decodeDataUrl } from '../../../core/serve/chat.ts';
import { pngBytes, raw, sseData, testEnv, writeTinyModel } from './helpers.ts';

let dir: string;
let served: Served;
let log: ReturnType<typeof testEnv>;
let png: Buffer;
let dataUrl: string;
const SECRET = 'hf_SeCrEtToKeN1234567890';

const chat = (extra: Record<string, unknown> = {}, text = 'What is this?') =>
  JSON.stringify({
    messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl } }, { type: 'text', text }] }],
    temperature: 0,
    max_tokens: 12,
    ...extra,
  });
const post = (body: string | Buffer, headers: Record<string, string> = {}) => raw(served.url, 'POST', '/v1/chat/completions', body, headers);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vlm-serve-api-'));
  await writeTinyModel(join(dir, 'tiny'));
  png = await pngBytes();
  dataUrl = 'data:image/png;base64,' + png.toString('base64');
  // a folder of runs: one run with metrics, a loss.png and a recipe holding a token-like string
  const run = join(dir, 'runs', 'demo-20260101-000000');
  mkdirSync(run, { recursive: true });
  writeFileSync(join(run, 'recipe.yaml'), `name: demo\n# a token that must never be shown: ${SECRET}\n`);
  writeFileSync(join(run, 'run.json'), '{}\n');
  writeFileSync(join(run, 'metrics.jsonl'), [1, 2].map((s) => JSON.stringify({ type: 'train', step: s, loss: 5 - s, grad_norm: 1, lr: { all: 1e-3 }, tokens_per_s: 100 })).join('\n') + '\n');
  writeFileSync(join(run, 'loss.png'), png);
  writeFileSync(join(dir, 'runs', 'outside.png'), png); // beside the run, not in it
  symlinkSync(join(dir, 'runs', 'outside.png'), join(run, 'link.png'));
  log = testEnv();
  served = (await startServe([join(dir, 'tiny'), join(dir, 'runs'), '--port', '0', '--max-body', '0.5', '--backend', 'wasm'], log.env))!;
});

after(async () => {
  await served?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('binds 127.0.0.1 unless --host says otherwise; says where it serves', () => {
  const a = served.app.server.address();
  assert.equal(typeof a === 'object' && a?.address, '127.0.0.1');
  assert.match(log.out(), /serving model tiny and 1 run\(s\) .* at http:\/\/127\.0\.0\.1:\d+\//);
});

test('GET /v1/models lists the served model', async () => {
  const r = await raw(served.url, 'GET', '/v1/models');
  assert.equal(r.status, 200);
  const j = JSON.parse(r.body);
  assert.equal(j.object, 'list');
  assert.deepEqual(j.data.map((m: { id: string; object: string }) => [m.id, m.object]), [['tiny', 'model']]);
});

test('a chat completion is the greedy answer of core/generate.ts, with usage', async () => {
  const r = await post(chat());
  assert.equal(r.status, 200, r.body);
  const j = JSON.parse(r.body);
  assert.equal(j.object, 'chat.completion');
  assert.equal(j.model, 'tiny');
  assert.equal(j.choices[0].message.role, 'assistant');
  // the same prompt through the library: the server adds nothing of its own to generation
  const { model, tokenizer, imageProcessor } = await served.model!.model();
  const [expected] = await generateText(model, tokenizer, imageProcessor, [{ prompt: vqaPrompt('What is this?'), image: new Uint8Array(png) }], { greedy: true, maxNewTokens: 12 });
  assert.equal(j.choices[0].message.content, expected);
  const promptTokens = tokenizer.encode(vqaPrompt('What is this?')).length + model.numImageTokens;
  assert.equal(j.usage.prompt_tokens, promptTokens);
  assert.ok(j.usage.completion_tokens >= 1 && j.usage.completion_tokens <= 12);
  assert.equal(j.usage.total_tokens, promptTokens + j.usage.completion_tokens);
  assert.equal(j.choices[0].finish_reason, j.usage.completion_tokens === 12 ? 'length' : 'stop');
});

test('stream: true sends chat.completion.chunk events whose deltas add up to the answer, then [DONE]', async () => {
  const whole = JSON.parse((await post(chat())).body).choices[0].message.content;
  const r = await post(chat({ stream: true, stream_options: { include_usage: true } }));
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/event-stream/);
  const events = sseData(r.body);
  assert.equal(events.at(-1), '[DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id));
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  assert.equal(text, whole);
  assert.ok(chunks.filter((c) => c.choices[0]?.delta?.content).length >= 2, 'more than one content chunk: tokens are streamed');
  const last = [...chunks].reverse().find((c) => c.choices[0]?.finish_reason);
  assert.ok(['stop', 'length'].includes(last.choices[0].finish_reason));
  assert.equal(last.usage.completion_tokens, JSON.parse((await post(chat())).body).usage.completion_tokens);
  assert.deepEqual(chunks.at(-1).choices, []); // include_usage: a last chunk with usage only
  assert.ok(chunks.at(-1).usage.total_tokens > 0);
});

test('requests queue: concurrent sampled requests get what each gets alone', async () => {
  const bodies = [1, 2, 3].map((seed) => chat({ temperature: 1.5, top_k: 50, top_p: 0.95, seed, max_tokens: 8 }));
  const alone = [];
  for (const b of bodies) alone.push(JSON.parse((await post(b)).body).choices[0].message.content);
  const together = await Promise.all(bodies.map((b) => post(b)));
  assert.deepEqual(together.map((r) => r.status), [200, 200, 200]);
  assert.deepEqual(together.map((r) => JSON.parse(r.body).choices[0].message.content), alone);
  assert.notEqual(new Set(alone).size, 1, 'different seeds sample different answers (else this test shows nothing)');
});

test('a client that disconnects stops its generation; no tensor is leaked; the server goes on', async () => {
  await post(chat()); // the model is loaded
  const tensors = tf.memory().numTensors;
  const before = { ...served.model!.stats };
  const u = new URL(served.url);
  await new Promise<void>((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' } }, (res) => {
      res.on('data', (c: Buffer) => {
        if (c.toString().includes('"content":"') && !c.toString().includes('"content":""')) {
          req.destroy(); // leave after the first token
          resolve();
        }
      });
    });
    req.on('error', () => {});
    req.on('close', () => resolve());
    setTimeout(() => reject(new Error('no token within 20 s')), 20_000).unref();
    req.end(chat({ stream: true, max_tokens: 1024, stop: undefined }));
  });
  for (let i = 0; i < 400 && served.model!.stats.cancelled === before.cancelled; i++) await new Promise((r) => setTimeout(r, 50)); // bounded: 20 s
  assert.equal(served.model!.stats.cancelled, before.cancelled + 1);
  assert.equal(served.model!.stats.completed, before.completed, 'the generation did not run to its end');
  const stopped = /stopped after (\d+) tokens: the client went away/.exec(log.err());
  assert.ok(stopped && Number(stopped[1]) < 1024, log.err());
  assert.equal(tf.memory().numTensors, tensors);
  assert.equal((await post(chat())).status, 200);
  assert.equal(tf.memory().numTensors, tensors);
});

test('stop strings end the answer before them', async () => {
  const whole = JSON.parse((await post(chat({ max_tokens: 12 }))).body).choices[0].message.content as string;
  assert.ok(whole.length >= 2, `a greedy answer of a few characters: ${JSON.stringify(whole)}`);
  const stop = whole.slice(1, 2);
  const j = JSON.parse((await post(chat({ max_tokens: 12, stop: [stop] }))).body);
  assert.equal(j.choices[0].message.content, whole.slice(0, whole.indexOf(stop)));
  assert.equal(j.choices[0].finish_reason, 'stop');
  // streaming never sends a piece of a stop string it later withholds
  assert.deepEqual(releasable('abc: x', [': x'], false), { text: 'abc', stopped: true });
  assert.deepEqual(releasable('abc:', [': x'], false), { text: 'abc', stopped: false });
  assert.deepEqual(releasable('abc\uFFFD', [], false), { text: 'abc', stopped: false });
  assert.deepEqual(releasable('abc:', [': x'], true), { text: 'abc:', stopped: false });
});

test('bad requests get 4xx errors in OpenAI shape, and the server keeps answering', async () => {
  const cases: [string, Promise<{ status: number; body: string }>, number, RegExp][] = [
    ['malformed JSON', post('{"messages": [ '), 400, /malformed JSON/],
    ['not an object', post('[1, 2]'), 400, /JSON object/],
    ['no messages', post('{}'), 400, /messages must be a non-empty array/],
    ['no image', post(JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] })), 400, /exactly one image/],
    ['two images', post(JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl } }, { type: 'image_url', image_url: { url: dataUrl } }, { type: 'text', text: 'q' }] }] })), 400, /exactly one image/],
    ['an undecodable image', post(chat().replace(dataUrl, 'data:image/png;base64,' + Buffer.from('not a png at all').toString('base64'))), 400, /image cannot be used/],
    ['bad base64', post(chat().replace(dataUrl, 'data:image/png;base64,@@@@')), 400, /base64/],
    ['a remote image', post(chat().replace(dataUrl, 'https://example.com/cat.png')), 400, /only data: URLs/],
    ['an unknown part', post(JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'audio' }] }] })), 400, /"text" or "image_url"/],
    ['a bad role', post(JSON.stringify({ messages: [{ role: 'robot', content: 'x' }] })), 400, /role must be/],
    ['max_tokens too large', post(chat({ max_tokens: 100000 })), 400, /max_tokens must be an integer from 1 to 1024/],
    ['a negative temperature', post(chat({ temperature: -1 })), 400, /temperature/],
    ['n = 2', post(chat({ n: 2 })), 400, /\bn must be/],
    ['another model', post(chat({ model: 'gpt-4o' })), 404, /does not exist here; this server has "tiny"/],
    ['a body over --max-body', post(chat().replace(dataUrl, 'data:image/png;base64,' + 'A'.repeat(600 * 1024))), 413, /larger than 524288 bytes/],
    ['not JSON', post('x=1', { 'content-type': 'application/x-www-form-urlencoded' }), 415, /application\/json/],
    ['GET on completions', raw(served.url, 'GET', '/v1/chat/completions'), 405, /POST/],
    ['an unknown route', raw(served.url, 'GET', '/v2/nothing'), 404, /no route/],
  ];
  for (const [what, pending, status, message] of cases) {
    const r = await pending;
    assert.equal(r.status, status, `${what}: ${r.body}`);
    const j = JSON.parse(r.body);
    assert.match(j.error.message, message, what);
    assert.equal(typeof j.error.type, 'string', what);
    assert.ok('param' in j.error && 'code' in j.error, what);
  }
  assert.equal((await post(chat())).status, 200, 'still serving');
  assert.throws(() => decodeDataUrl('data:image/png;base64,', 'x'), /empty/);
});

test('no route serves a file outside its folder, encoded or not', async () => {
  const id = 'demo-20260101-000000';
  // the routes work (so the refusals below are refusals, not broken routes)
  assert.equal((await raw(served.url, 'GET', '/static/style.css')).status, 200);
  assert.equal((await raw(served.url, 'GET', `/runs/${id}/loss.png`)).status, 200);
  const attempts = [
    '/static/../../../package.json',
    '/static/..%2f..%2f..%2fpackage.json',
    '/static/%2e%2e/%2e%2e/%2e%2e/package.json',
    '/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fpackage.json',
    '/static/%252e%252e/%252e%252e/%252e%252e/package.json',
    '/static/..%5c..%5c..%5cpackage.json',
    '/static/%2fetc%2fpasswd',
    '/static//etc/passwd',
    '/static/../http.ts',
    '/static/%2e%2e/http.ts',
    '/static/style.css%00.png',
    '/static/%E0%A4%A',
    `/runs/${id}/../outside.png`,
    `/runs/${id}/..%2foutside.png`,
    `/runs/${id}/%2e%2e/outside.png`,
    `/runs/${id}/%2e%2e%2foutside.png`,
    `/runs/${id}/link.png`,
    `/runs/${id}/metrics.jsonl`,
    `/runs/${id}/recipe.yaml`,
    `/runs/..%2f${id}/loss.png`,
    `/runs/%2e%2e/outside.png`,
  ];
  for (const path of attempts) {
    const r = await raw(served.url, 'GET', path);
    assert.equal(r.status, 404, `${path}: ${r.status}`);
    assert.doesNotMatch(r.body, /"name": "nanovlm-ts"|root:|PNG|import /, path);
  }
});

test('the dashboard API lists runs and streams new metrics lines and new runs; no secret is shown', async () => {
  const runs = JSON.parse((await raw(served.url, 'GET', '/api/runs')).body).runs;
  assert.deepEqual(runs.map((r: { id: string }) => r.id), ['demo-20260101-000000']);
  assert.ok(!JSON.stringify(runs).includes(SECRET) && JSON.stringify(runs).includes('hf_***'), 'the recipe is shown redacted');
  const metrics = JSON.parse((await raw(served.url, 'GET', '/api/runs/demo-20260101-000000/metrics')).body);
  assert.deepEqual(metrics.records.map((r: { step: number }) => r.step), [1, 2]);
  assert.equal((await raw(served.url, 'GET', '/api/runs/nope/metrics')).status, 404);
  for (const page of ['/', '/dashboard', '/api/info']) assert.ok(!(await raw(served.url, 'GET', page)).body.includes(SECRET), page);

  // follow the event stream while a line is appended (first half only: a line is whole once its newline is written) and a run appears
  const u = new URL(served.url);
  const got: string[] = [];
  const req = request({ host: u.hostname, port: u.port, path: '/api/events' });
  const waitFor = async (pred: () => boolean, what: string) => {
    for (let i = 0; i < 400 && !pred(); i++) await new Promise((r) => setTimeout(r, 50)); // bounded: 20 s
    assert.ok(pred(), `${what}; got ${got.join(' | ')}`);
  };
  await new Promise<void>((resolve) => {
    req.on('response', (res) => {
      res.setEncoding('utf8');
      res.on('data', (c: string) => got.push(c));
      resolve();
    });
    req.end();
  });
  await waitFor(() => got.join('').includes('event: hello'), 'hello');
  const file = join(dir, 'runs', 'demo-20260101-000000', 'metrics.jsonl');
  const line = JSON.stringify({ type: 'train', step: 3, loss: 1.5, grad_norm: 0.5, lr: { all: 1e-3 }, tokens_per_s: 120 });
  appendFileSync(file, line.slice(0, 20));
  await new Promise((r) => setTimeout(r, 700)); // > one poll: the half line must not be sent
  assert.ok(!got.join('').includes('event: metrics'), 'an incomplete line is not sent');
  appendFileSync(file, line.slice(20) + '\n');
  await waitFor(() => got.join('').includes('event: metrics'), 'the new line arrives');
  const ev = sseData(got.join('').split('event: metrics\n')[1])[0];
  assert.deepEqual(JSON.parse(ev), { run: 'demo-20260101-000000', from: 2, records: [JSON.parse(line)] });
  const later = join(dir, 'runs', 'later-20260101-000100');
  mkdirSync(later);
  writeFileSync(join(later, 'metrics.jsonl'), JSON.stringify({ type: 'train', step: 1, loss: 3 }) + '\n');
  await waitFor(() => got.join('').includes('"id":"later-20260101-000100"'), 'a new run appears');
  await waitFor(() => got.join('').includes('"run":"later-20260101-000100","from":0'), "the new run's metrics arrive");
  req.destroy();
  assert.ok(!log.err().includes(SECRET));
});

test('command-line mistakes are UserErrors that say what to do', async () => {
  const env = testEnv().env;
  await assert.rejects(startServe([join(dir, 'no', 'such', 'folder'), '--port', '0'], env), /no such folder, and not a Hub repo id/);
  await assert.rejects(startServe([join(dir, 'tiny'), '--port', '70000'], env), /--port 70000: expected an integer from 0 to 65535/);
  const port = (served.app.server.address() as { port: number }).port;
  await assert.rejects(startServe([join(dir, 'tiny'), '--port', String(port), '--backend', 'wasm'], env), (e: Error & { hint?: string }) => /EADDRINUSE/.test(e.message) && /--port <another>/.test(e.hint ?? ''));
  const help = testEnv();
  assert.equal(await startServe(['--help'], help.env), null);
  assert.match(help.out(), /--host <host> .*127\.0\.0\.1/);
});
