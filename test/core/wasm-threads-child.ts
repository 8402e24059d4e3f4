// Child process of wasm-threads.test.ts: start the wasm backend with runtime.threads 2 through the runtime
// (VLM_THREADED_WASM from the parent chooses the build),
// compute two products, print the facts as one JSON line, and end (must exit by itself).
import * as tf from '@tensorflow/tfjs';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { initRuntime } from '../../core/runtime.ts';

const info = await initRuntime('wasm', { threads: 2 });
const a = tf.tensor2d([[1, 2, 3], [4, 5, 6]]);
const b = tf.tensor2d([[1, 0], [0, 1], [1, 1]]);
const c = tf.matMul(a, b).arraySync();
const big = tf.ones([256, 128]);
const s = tf.matMul(big, big, false, true).dataSync();
// the native product kernel (when built) on the threaded build's shared heap
const t = tf.matMul(tf.range(0, 6).reshape([3, 2]), tf.ones([3, 4]), true, false).arraySync();
console.log(JSON.stringify({ threads: info.threads, blasThreads: info.blasThreads, pool: getThreadsCount(), c, s0: s[0], sLast: s[s.length - 1], t, products: info.products, blob: typeof Blob.prototype.text }));
