// wasm threads under Node: tfjs-backend-wasm's threaded SIMD build started from Node (used by
// core/runtime.ts initRuntime for runtime.threads > 1).
import * as tf from '@tensorflow/tfjs';
import { setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';

// tfjs-backend-wasm ships a threaded+SIMD build (XNNPACK on a pthreadpool), but its loader is
// written for browsers and fails under Node in three places; enableWasmThreads() bridges them
// for the duration of the backend's initialisation, then puts everything back:
//   1. it passes the pthread worker script and the main script as Blobs / blob: URLs, which a
//      Node worker cannot load -> Blob is recorded, URL.createObjectURL writes the text to a
//      temp file and returns its path; the worker's "load" message gets that path instead of
//      the Blob (worker_threads.Worker.prototype.postMessage);
//   2. the main script is the bundle's factory function as text, which refers to the bundle's
//      module-scope helpers (require$$0.., commonjsGlobal, _scriptDir) -> defined in a prelude;
//   3. the pool size is os.cpus().length / 2 (hyper-threading assumption), i.e. 1 on a 2-core
//      machine -> os.cpus() reports 2 x threads while the module initialises;
// and WASM_HAS_MULTITHREAD_SUPPORT (false under Node) is set to true. Afterwards the pool's
// workers are unref'ed, or the process would never exit.
// Call BEFORE tf.setBackend('wasm'); returns a function that restores the patched globals
// (call it once tf.ready() resolved). threads <= 1 does nothing.
export function enableWasmThreads(threads: number): () => void {
  if (!(threads > 1)) return () => {};
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nanovlm-wasm-'));
  const mainPath = path.join(dir, 'main.js');
  const OrigBlob = globalThis.Blob;
  const origCreate = URL.createObjectURL;
  const origPost = Worker.prototype.postMessage;
  const origCpus = os.cpus;
  const texts = new WeakMap<object, string>();
  const files = new WeakMap<object, string>();
  let n = 0;
  const fileOf = (b: object): string => {
    let p = files.get(b);
    if (p) return p;
    let text = texts.get(b)!;
    if (text.startsWith('var WasmBackendModuleThreadedSimd')) {
      const prelude =
        'var require$$0=require("fs"),require$$1=require("path"),require$$3=require("perf_hooks"),' +
        `require$$4=require("os"),commonjsGlobal=global,_scriptDir=${JSON.stringify(mainPath)};\n`;
      text = prelude + text;
      p = mainPath;
    } else {
      p = path.join(dir, `worker-${n++}.js`);
    }
    fs.writeFileSync(p, text);
    files.set(b, p);
    return p;
  };
  class RecordingBlob extends OrigBlob {
    constructor(parts: any[], opts?: any) {
      super(parts, opts);
      texts.set(this, parts.map(String).join(''));
    }
  }
  (globalThis as { Blob: typeof Blob }).Blob = RecordingBlob as typeof Blob;
  URL.createObjectURL = (b: Blob) => (texts.has(b) ? fileOf(b) : origCreate(b));
  Worker.prototype.postMessage = function (this: Worker, msg: any, ...rest: any[]) {
    if (msg && msg.cmd === 'load' && texts.has(msg.urlOrBlob)) msg = { ...msg, urlOrBlob: fileOf(msg.urlOrBlob) };
    return (origPost as (...a: unknown[]) => void).call(this, msg, ...rest);
  } as typeof origPost;
  const cpus = origCpus();
  (os as { cpus: typeof os.cpus }).cpus = () => Array.from({ length: 2 * threads }, (_, i) => cpus[i % cpus.length]);
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  setThreadsCount(threads);
  return () => {
    // the pool's workers would keep Node alive after the program ends: unref them
    const wasm = (tf.findBackend('wasm') as unknown as { wasm?: { PThread?: { unusedWorkers: Worker[]; runningWorkers: Worker[] } } } | undefined)?.wasm;
    for (const w of [...(wasm?.PThread?.unusedWorkers ?? []), ...(wasm?.PThread?.runningWorkers ?? [])]) w.unref();
    (globalThis as { Blob: typeof Blob }).Blob = OrigBlob;
    URL.createObjectURL = origCreate;
    Worker.prototype.postMessage = origPost;
    (os as { cpus: typeof os.cpus }).cpus = origCpus;
    fs.rmSync(dir, { recursive: true, force: true });
  };
}
