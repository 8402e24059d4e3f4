// `vlm serve` in a real browser: Debian's chromium, headless, driven by playwright-core.
//   1. `vlm run <short shapes-tiny> --serve` trains while the dashboard is open: the loss curve
//      grows without a reload (server-sent events following metrics.jsonl).
//   2. `vlm serve <that run>`: the dashboard shows the finished run (curves, eval results, recipe);
//      the playground takes an image through its file picker, a question, and streams the answer,
//      which equals the API's answer for the same settings.
// The pages load nothing from anywhere but the server (every other request is recorded and fails
// the test) and log no error. Screenshots go to $VLM_SCREENSHOTS (docs/img for the docs) or a
// temp folder. Without chromium the tests skip, except under CI=true where they fail.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { startServe, type Served } from '../../../core/commands/serve.ts';
import { REPO_ROOT } from '../../helpers/shared.ts';
import { pngBytes, raw, testEnv, writePng, writeTinyModel } from './helpers.ts';

const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p): p is string => !!p && existsSync(p));
const CI = process.env.CI === 'true';
const skip = CHROMIUM || CI ? {} : { skip: 'needs a chromium browser (Debian: sudo apt-get install chromium; or set CHROMIUM_PATH); CI installs it' };
/** training steps of the run the dashboard watches (more for nicer documentation screenshots) */
const STEPS = Number(process.env.VLM_SERVE_TEST_STEPS ?? 40);

let dir: string;
let shots: string;
let browser: Browser | undefined;
let runDir: string | undefined;
let trainer: ChildProcess | undefined;
const served: Served[] = [];

before(async () => {
  if (skip.skip) return;
  if (!CHROMIUM) assert.fail('CI=true but no chromium at /usr/bin/chromium: the CI script must install it (apt-get install chromium, as the README says)');
  dir = mkdtempSync(join(tmpdir(), 'vlm-serve-browser-'));
  shots = process.env.VLM_SCREENSHOTS ?? join(dir, 'shots');
  mkdirSync(shots, { recursive: true });
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
});

after(async () => {
  trainer?.kill('SIGKILL');
  for (const s of served) await s.close();
  await browser?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A page that may only talk to `origin`; requests elsewhere and page errors are collected. */
async function openPage(origin: string): Promise<{ page: Page; problems: string[] }> {
  const page = await browser!.newPage({ viewport: { width: 1280, height: 900 } });
  const problems: string[] = [];
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(origin) || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
    problems.push(`request to ${url}`);
    return route.abort();
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  return { page, problems };
}

// page scripts are strings: this project's TypeScript has no DOM types
const points = async (page: Page, chart: string) => Number(await page.getAttribute(`#chart-${chart}`, 'data-points'));
/** wait (polling from here: the pages' CSP forbids the string predicates of waitForFunction) */
async function lossPointsAbove(page: Page, n: number, timeoutMs = 240_000): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const p = await points(page, 'loss');
    if (p > n) return p;
    if (Date.now() > end) assert.fail(`the loss curve stayed at ${p} points (waited for more than ${n})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('dashboard: the loss curve grows while `vlm run --serve` trains', { ...skip, timeout: 600_000 }, async () => {
  const out = join(dir, 'runs');
  const args = [
    join(REPO_ROOT, 'bin', 'vlm.js'), 'run',
    `train.max_steps=${STEPS}`, 'train.batch_size=8', 'train.log_every=10', `train.eval_every=${Math.max(10, STEPS / 2)}`, `train.checkpoint_every=${Math.max(10, STEPS / 2)}`,
    `data.train[0].count=${STEPS * 8}`, 'data.val[0].count=16', 'data.eval[0].count=40',
    `runtime.out_dir=${out}`, 'runtime.backend=wasm', '--serve', '--port', '0',
  ];
  let log = '';
  trainer = spawn(process.execPath, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  trainer.stdout!.on('data', (c) => (log += c));
  trainer.stderr!.on('data', (c) => (log += c));
  const exited = new Promise<number | null>((r) => trainer!.on('exit', (code) => r(code)));
  // the dashboard's address, from the run's log line
  let url: string | undefined;
  for (let i = 0; i < 1200 && !url; i++) {
    url = /dashboard: (http:\/\/127\.0\.0\.1:\d+\/)dashboard/.exec(log)?.[1];
    if (!url) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(url, `no dashboard line in the run's output:\n${log}`);
  const { page, problems } = await openPage(url.slice(0, -1));
  await page.goto(url + 'dashboard');
  await lossPointsAbove(page, 0);
  const first = await points(page, 'loss');
  // no reload: the events bring the next steps
  await lossPointsAbove(page, first + 2);
  const later = await points(page, 'loss');
  assert.ok(later > first + 2, `${first} -> ${later}`);
  for (const chart of ['lr', 'grad', 'tps']) assert.ok((await points(page, chart)) >= 1, chart);
  assert.match(await page.textContent('#live') ?? '', /live/);
  assert.match(await page.textContent('#runs') ?? '', /shapes-tiny-\d{8}-\d{6}/);
  await page.screenshot({ path: join(shots, 'dashboard-live.png') });
  assert.deepEqual(problems, []);
  await page.close();
  assert.equal(await exited, 0, log);
  trainer = undefined;
  const runs = readdirSync(out);
  assert.equal(runs.length, 1);
  runDir = join(out, runs[0]);
});

test('the finished run: dashboard with eval results; the playground streams an answer', { ...skip, timeout: 300_000 }, async () => {
  // the model: the run trained above (or, when it failed, a random tiny model folder)
  let source = runDir;
  if (!source) {
    source = join(dir, 'tiny');
    await writeTinyModel(source);
  }
  const env = testEnv();
  const s = (await startServe([source, '--port', '0', '--backend', 'wasm'], env.env))!;
  served.push(s);
  const origin = s.url.slice(0, -1);

  if (runDir) {
    const { page, problems } = await openPage(origin);
    await page.goto(s.url + 'dashboard');
    await page.waitForSelector('#eval-results', { timeout: 60_000 });
    await lossPointsAbove(page, 2, 30_000);
    assert.match(await page.textContent('#details') ?? '', /multiple-choice \/ \S+ \/ accuracy/);
    await page.screenshot({ path: join(shots, 'dashboard.png'), fullPage: true });
    assert.deepEqual(problems, []);
    await page.close();
  }

  const image = writePng(join(dir, 'square.png'), await pngBytes());
  const { page, problems } = await openPage(origin);
  await page.goto(s.url);
  await page.waitForSelector('#params', { timeout: 60_000 }); // the model card's facts
  assert.match(await page.textContent('#params') ?? '', /total/);
  await page.setInputFiles('#file', image);
  await page.waitForSelector('#ask:not([disabled])');
  await page.fill('#question', 'What colour is the square?');
  // count the answer's text changes: a streamed answer changes more than once
  await page.evaluate(`window.changes = 0;
    new MutationObserver(() => window.changes++).observe(document.getElementById('answer'), { childList: true, characterData: true, subtree: true });`);
  await page.click('#ask');
  await page.waitForSelector('#answer[data-state="done"]', { timeout: 120_000 });
  const answer = (await page.textContent('#answer')) ?? '';
  const changes = Number(await page.evaluate('window.changes'));
  assert.match((await page.textContent('#stats')) ?? '', /tokens? in .* tok\/s/);
  await page.screenshot({ path: join(shots, 'playground.png') });
  assert.deepEqual(problems, []);
  await page.close();

  // the page's defaults (greedy, 32 tokens) through the API give the same text
  const dataUrl = 'data:image/png;base64,' + (await pngBytes()).toString('base64');
  const r = await raw(s.url, 'POST', '/v1/chat/completions', JSON.stringify({
    messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl } }, { type: 'text', text: 'What colour is the square?' }] }],
    temperature: 0, max_tokens: 32, top_p: 1, top_k: 0, seed: 0,
  }));
  const j = JSON.parse(r.body);
  assert.equal(answer, j.choices[0].message.content);
  assert.ok(answer.length > 0, 'an answer');
  assert.ok(changes >= Math.min(2, j.usage.completion_tokens), `the answer arrived in pieces (${changes} changes for ${j.usage.completion_tokens} tokens)`);
});

test('playground: tokens arrive one by one, and Stop ends the generation on the server', { ...skip, timeout: 300_000 }, async () => {
  // a random tiny model never says eos early: long answers to watch
  const folder = join(dir, 'random');
  await writeTinyModel(folder);
  const env = testEnv();
  const s = (await startServe([folder, '--port', '0', '--backend', 'wasm'], env.env))!;
  served.push(s);
  const image = writePng(join(dir, 'square2.png'), await pngBytes());
  const { page, problems } = await openPage(s.url.slice(0, -1));
  await page.goto(s.url);
  await page.waitForSelector('#params', { timeout: 60_000 });
  await page.setInputFiles('#file', image);
  await page.waitForSelector('#ask:not([disabled])');
  // 200 tokens: long enough (~0.5 s) that a browser starved by a loaded machine still reads the
  // stream more than once (32 tokens of the tiny model once arrived in one read under CI's load)
  await page.$eval('#max-tokens', (e) => void ((e as unknown as { value: string }).value = '200'));
  await page.evaluate(`window.changes = 0;
    new MutationObserver(() => window.changes++).observe(document.getElementById('answer'), { childList: true, characterData: true, subtree: true });`);
  await page.click('#ask');
  await page.waitForSelector('#answer[data-state="done"]', { timeout: 120_000 });
  const answer = (await page.textContent('#answer')) ?? '';
  assert.match((await page.textContent('#stats')) ?? '', /^200 tokens in /);
  const changes = Number(await page.evaluate('window.changes'));
  assert.ok(changes >= 2, `the answer arrived in pieces (${changes} changes of the answer for 200 tokens)`);
  assert.ok(answer.length > 0);
  assert.equal(s.model!.stats.completed, 1);

  // Stop: the page aborts the request, the server notices and stops generating
  await page.$eval('#max-tokens', (e) => void ((e as unknown as { value: string }).value = '1024'));
  await page.click('#ask');
  await page.waitForSelector('#stop:not([disabled])');
  await page.click('#stop');
  await page.waitForSelector('#answer[data-state="stopped"]', { timeout: 60_000 });
  for (let i = 0; i < 100 && s.model!.stats.cancelled === 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(s.model!.stats.cancelled, 1, env.err());
  assert.equal(s.model!.stats.completed, 1);
  assert.deepEqual(problems, []);
  await page.close();
});
