// Backend choice: auto falls through webgpu (hardware only) -> tfjs-node-gpu -> tfjs-node -> wasm -> cpu and says why;
// an explicit `tensorflow` without the binding is a UserError with the install command.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../../core/errors.ts';
import { fastKernelsInstalled } from '../../core/kernels/index.ts';
import { describeRuntime, initRuntime } from '../../core/runtime.ts';

const require = createRequire(import.meta.url);
const installed = (p: string) => {
  try {
    require.resolve(p);
    return true;
  } catch {
    return false;
  }
};
const noTfNode = !installed('@tensorflow/tfjs-node') && !installed('@tensorflow/tfjs-node-gpu');
const skip = noTfNode ? {} : { skip: 'a tfjs-node binding is installed here' };

test('auto: wasm when no TensorFlow binding is installed, saying why the others were skipped', skip, async () => {
  const lines: string[] = [];
  const info = await initRuntime('auto', { log: (l) => lines.push(l) });
  if (info.backend === 'webgpu') return assert.equal(info.adapter?.software, false, 'auto took a software adapter'); // a machine with a GPU
  assert.equal(info.backend, 'wasm');
  assert.equal(tf.getBackend(), 'wasm');
  // WebGPU first, but never on a software adapter (lavapipe here and in CI), nor without one
  assert.match(info.skipped[0], /^webgpu \(Dawn\) \+ @tensorflow\/tfjs-backend-webgpu, hardware adapter: (only a software adapter|no WebGPU adapter|the `webgpu` package is not installed)/);
  assert.deepEqual(info.skipped.slice(1), ['@tensorflow/tfjs-node-gpu: not installed', '@tensorflow/tfjs-node: not installed']);
  assert.equal(lines.join('\n'), describeRuntime(info));
  assert.match(lines[0], /^backend: wasm \(@tensorflow\/tfjs-backend-wasm\)/);
  assert.ok(fastKernelsInstalled('wasm'));
});

test('an unknown backend name is a UserError listing the choices', async () => {
  await assert.rejects(initRuntime('webgl' as never), (e: unknown) => e instanceof UserError && /expected one of auto, webgpu, tensorflow, wasm, cpu/.test(e.message));
});

test('explicit cpu', async () => {
  const info = await initRuntime('cpu');
  assert.equal(info.backend, 'cpu');
  assert.equal(tf.getBackend(), 'cpu');
  assert.deepEqual(info.skipped, []);
});

test('explicit tensorflow without the binding: UserError with the install command', skip, async () => {
  await assert.rejects(initRuntime('tensorflow'), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.match(e.format(), /needs @tensorflow\/tfjs-node or @tensorflow\/tfjs-node-gpu/);
    assert.match(e.hint!, /npm install @tensorflow\/tfjs-node \(CPU\)/);
    assert.match(e.hint!, /npm install @tensorflow\/tfjs-node-gpu/);
    return true;
  });
});
