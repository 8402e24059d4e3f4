// The webgpu backend (core/webgpu.ts): it starts on the adapter Dawn offers (lavapipe in CI), says
// which one, and refuses a tensor larger than the adapter binds (which would otherwise compute
// wrong numbers silently) with a clear error. Skips without an adapter, except in CI.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../../core/errors.ts';
import { describeRuntime, initRuntime } from '../../core/runtime.ts';
import { checkTensorSizes, gpuAdapter } from '../../core/webgpu.ts';
import { needsWebGpu } from '../helpers/webgpu.ts';

const skip = await needsWebGpu();

test('runtime.backend webgpu starts and prints the adapter (vendor, architecture, software, limits)', skip, async () => {
  const lines: string[] = [];
  const info = await initRuntime('webgpu', { log: (l) => lines.push(l) });
  assert.equal(info.backend, 'webgpu');
  assert.equal(tf.getBackend(), 'webgpu');
  assert.ok(info.adapter);
  assert.equal(lines.join('\n'), describeRuntime(info));
  lines.splice(0, lines.length, ...lines.join('\n').split('\n'));
  assert.match(lines[0], /^backend: webgpu \(webgpu \(Dawn\) \+ @tensorflow\/tfjs-backend-webgpu\)/);
  assert.match(lines[1], new RegExp(`adapter: ${info.adapter.vendor} ${info.adapter.architecture} · .*max tensor \\d+ MiB \\(maxStorageBufferBindingSize\\)`));
  if (info.adapter.software) assert.match(lines[1], /SOFTWARE/);
  assert.ok(info.adapter.limits.maxStorageBufferBindingSize >= 128 * 2 ** 20);
  // it computes, and reads back asynchronously
  const y = tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2]), tf.tensor2d([5, 6, 7, 8], [2, 2]));
  assert.deepEqual(Array.from(await y.data()), [19, 22, 43, 50]);
});

test('a tensor larger than maxStorageBufferBindingSize is a clear error, not silently wrong numbers', skip, async () => {
  await initRuntime('webgpu');
  const limits = gpuAdapter!.limits;
  const real = limits.maxStorageBufferBindingSize;
  limits.maxStorageBufferBindingSize = 1024 * 1024; // pretend a 1 MiB adapter (the guard reads the limit per kernel)
  try {
    const big = tf.zeros([512, 1024]); // 2 MiB
    assert.throws(() => tf.add(big, 1), (e: unknown) => e instanceof UserError && /\[512, 1024\] needs 2\.0 MiB, more than this GPU adapter binds \(maxStorageBufferBindingSize 1\.0 MiB\)/.test(e.message) && /runtime\.backend/.test(e.format()));
    const small = tf.add(tf.zeros([256, 1024]), 1); // exactly 1 MiB: fine
    assert.equal((await tf.sum(small).data())[0], 256 * 1024);
    // named tensors (a model's parameters) are checked before anything runs
    assert.throws(() => checkTensorSizes([['decoder.token_embedding.weight', big]]), /tensor decoder\.token_embedding\.weight \[512, 1024\] needs 2\.0 MiB/);
    tf.dispose([big, small]);
  } finally {
    limits.maxStorageBufferBindingSize = real;
  }
});
