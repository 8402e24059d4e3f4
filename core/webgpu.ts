// The WebGPU backend (issue 15): Dawn, the WebGPU implementation of Chromium, as Node bindings (the
// `webgpu` package: prebuilt dawn.node for linux-x64/arm64, macOS and Windows, nothing downloaded
// at install) under @tensorflow/tfjs-backend-webgpu. Both are optional dependencies, imported only
// when the webgpu backend is asked for (core/runtime.ts). Dawn runs over Vulkan (NVIDIA, AMD/Intel
// through Mesa RADV/ANV, and lavapipe, Mesa's software Vulkan, on a machine without a GPU), Metal
// on macOS and D3D12 on Windows. docs/performance.md says how to install a driver and pin one.
//
// What this file handles (each measured, see issue 15):
// - tfjs-backend-webgpu registers itself only if `navigator.gpu` exists when it is imported: we set
//   it up first, with Object.defineProperty (assigning globalThis.navigator throws on Node >= 21).
// - adapters: `auto` takes a hardware one only (software = lavapipe/SwiftShader, correctness not
//   speed: ~3 GFLOP/s); `webgpu` takes whichever Dawn offers.
// - a tensor larger than the adapter's maxStorageBufferBindingSize gives SILENTLY wrong results
//   (Dawn prints a validation error on stderr only): every kernel's inputs and output are checked
//   against it (guardLimits) and a clear error is thrown instead.
// - first-use shader compilation is slow on lavapipe: Mesa's on-disk shader cache is pointed at a
//   stable folder (VLM_SHADER_CACHE, default ~/.cache/nanovlm-ts/mesa-shaders) unless set already.
// - GPU tensors cannot be read synchronously (dataSync throws "OffscreenCanvas is not defined"):
//   the pipeline reads with `await t.data()` (core/host.ts).
import { homedir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { UserError } from './errors.ts';

/** What `vlm` prints about the adapter, and what bench JSON records. */
export interface GpuAdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** a CPU implementation (lavapipe, SwiftShader): for correctness, not speed */
  software: boolean;
  /** the limits that bound tensor sizes */
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number; maxComputeWorkgroupStorageSize: number; maxComputeWorkgroupsPerDimension: number };
}

/** The adapter the webgpu backend runs on (null before loadWebGpu succeeded). */
export let gpuAdapter: GpuAdapterSummary | null = null;

/** Why the webgpu backend was not started, for runtime.ts's "skipped" line. */
export class WebGpuUnavailable extends Error {}

type Gpu = { requestAdapter(o?: { powerPreference?: string }): Promise<GpuAdapterLike | null> };
type GpuAdapterLike = {
  info: { vendor: string; architecture: string; device: string; description: string; isFallbackAdapter?: boolean };
  isFallbackAdapter?: boolean;
  limits: Record<string, number>;
};

let gpu: Gpu | null = null;

/** A software adapter: Dawn marks it as the fallback adapter; lavapipe says 'software' / llvmpipe. */
export function isSoftware(info: GpuAdapterLike['info'], adapter?: GpuAdapterLike): boolean {
  return !!(info.isFallbackAdapter || adapter?.isFallbackAdapter || info.architecture === 'software' || /llvmpipe|lavapipe|swiftshader/i.test(`${info.device} ${info.description}`));
}

/**
 * Create Dawn's GPU object, pick the adapter, and import tfjs-backend-webgpu so that it registers
 * the 'webgpu' backend (tf.setBackend('webgpu') then starts it on the same adapter: both ask for
 * the high-performance one). Throws WebGpuUnavailable when the packages are missing, no adapter
 * exists, or (allowSoftware false) the only adapter is a software one.
 */
export async function loadWebGpu(opts: { allowSoftware: boolean }): Promise<GpuAdapterSummary> {
  let dawn: { create(flags: string[]): Gpu; globals: Record<string, unknown> };
  try {
    const spec: string = 'webgpu'; // a variable specifier: the optional dependency stays optional for tsc
    dawn = (await import(spec)) as typeof dawn;
  } catch (e) {
    throw new WebGpuUnavailable(notFound(e) ? 'the `webgpu` package is not installed (npm install webgpu)' : `the \`webgpu\` package failed to load (${firstLine(e)})`);
  }
  process.env.MESA_SHADER_CACHE_DIR ??= process.env.VLM_SHADER_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'nanovlm-ts', 'mesa-shaders');
  for (const [k, v] of Object.entries(dawn.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  // VLM_WEBGPU_FLAGS: Dawn's options separated by ';', e.g. "backend=vulkan;adapter=NVIDIA H100 80GB HBM3"
  gpu ??= dawn.create((process.env.VLM_WEBGPU_FLAGS ?? '').split(';').map((f) => f.trim()).filter(Boolean));
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    throw new WebGpuUnavailable(
      'no WebGPU adapter (no Vulkan/Metal/D3D12 driver Dawn can use; on Debian 12: mesa-vulkan-drivers from bookworm-backports and libvulkan1, see README "GPU")',
    );
  }
  const i = adapter.info;
  const L = adapter.limits;
  const summary: GpuAdapterSummary = {
    vendor: i.vendor,
    architecture: i.architecture,
    device: i.device,
    description: i.description,
    software: isSoftware(i, adapter),
    limits: {
      maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
      maxBufferSize: L.maxBufferSize,
      maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: L.maxComputeWorkgroupsPerDimension,
    },
  };
  if (summary.software && !opts.allowSoftware) {
    throw new WebGpuUnavailable(`only a software adapter (${summary.description}): auto takes a hardware GPU only; runtime.backend=webgpu runs on it anyway`);
  }
  const nav = (globalThis as { navigator?: { gpu?: unknown } }).navigator;
  if (nav) Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true, writable: true });
  else Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  try {
    await import('@tensorflow/tfjs-backend-webgpu');
  } catch (e) {
    throw new WebGpuUnavailable(notFound(e) ? '@tensorflow/tfjs-backend-webgpu is not installed (npm install @tensorflow/tfjs-backend-webgpu)' : `@tensorflow/tfjs-backend-webgpu failed to load (${firstLine(e)})`);
  }
  if (!tf.findBackendFactory('webgpu')) throw new WebGpuUnavailable('@tensorflow/tfjs-backend-webgpu did not register (navigator.gpu was not set before it was first imported)');
  gpuAdapter = summary;
  return summary;
}

const MiB = 1024 * 1024;
const mib = (bytes: number) => `${(bytes / MiB).toFixed(bytes < 10 * MiB ? 1 : 0)} MiB`;

/** One line for `vlm`'s start-up log and bench output. */
export function describeAdapter(a: GpuAdapterSummary): string {
  const name = a.description || a.device || '(unnamed)';
  return `adapter: ${a.vendor || '?'} ${a.architecture || '?'} · ${name}${a.software ? ' · SOFTWARE (for correctness, not speed)' : ''} · max tensor ${mib(a.limits.maxStorageBufferBindingSize)} (maxStorageBufferBindingSize), max buffer ${mib(a.limits.maxBufferSize)}`;
}

/** The error for a tensor of `bytes` that cannot be bound on this adapter. */
export function tooLarge(what: string, shape: number[], bytes: number, limit: number): UserError {
  return new UserError(`${what} [${shape.join(', ')}] needs ${mib(bytes)}, more than this GPU adapter binds (maxStorageBufferBindingSize ${mib(limit)}); WebGPU would compute wrong numbers silently`, {
    where: { yamlPath: 'runtime.backend' },
    hint: 'use a smaller batch (train.batch_size, with train.grad_accum for the same step) or model, a GPU whose adapter allows larger buffers, or runtime.backend=wasm',
  });
}

/** Check named tensors (e.g. the model's parameters) against the adapter's limit; no-op off webgpu. */
export function checkTensorSizes(tensors: Iterable<[string, tf.Tensor]>): void {
  if (tf.getBackend() !== 'webgpu' || !gpuAdapter) return;
  const limit = gpuAdapter.limits.maxStorageBufferBindingSize;
  for (const [name, t] of tensors) {
    const bytes = t.size * 4;
    if (bytes > limit) throw tooLarge(`tensor ${name}`, t.shape, bytes, limit);
  }
}

type TensorInfoLike = { shape: number[]; dtype: string };
type WebGpuBackendLike = {
  runWebGPUProgram(program: { outputShape: number[]; shaderKey?: string; constructor: { name: string } }, inputs: TensorInfoLike[], dtype: string, ...rest: unknown[]): unknown;
};

/**
 * Every kernel of the active webgpu backend checks its inputs and output against the adapter's
 * maxStorageBufferBindingSize before it runs (one comparison per tensor: negligible next to a dispatch).
 */
export function guardLimits(): void {
  if (!gpuAdapter) return;
  const backend = tf.backend() as unknown as WebGpuBackendLike & { __vlmGuarded?: boolean };
  if (backend.__vlmGuarded) return;
  const run = backend.runWebGPUProgram.bind(backend);
  backend.runWebGPUProgram = (program, inputs, dtype, ...rest) => {
    const limit = gpuAdapter?.limits.maxStorageBufferBindingSize ?? Infinity;
    const kernel = program.constructor.name.replace(/Program$/, '');
    for (const t of inputs) {
      const bytes = sizeOf(t.shape) * 4; // float32 / int32 / bool: 4 bytes per element on WebGPU
      if (bytes > limit) throw tooLarge(`an input of the GPU kernel ${kernel}`, t.shape, bytes, limit);
    }
    const out = sizeOf(program.outputShape) * 4;
    if (out > limit) throw tooLarge(`the output of the GPU kernel ${kernel}`, program.outputShape, out, limit);
    return run(program, inputs, dtype, ...rest);
  };
  backend.__vlmGuarded = true;
}

function sizeOf(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function notFound(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0];
}
