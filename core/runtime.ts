// Choose and start the tfjs backend. `auto` tries, in order: WebGPU on a hardware adapter (Dawn
// through the optional `webgpu` + @tensorflow/tfjs-backend-webgpu packages, core/webgpu.ts; never
// a software adapter such as lavapipe), @tensorflow/tfjs-node-gpu, @tensorflow/tfjs-node (optional
// peer dependencies: their install downloads libtensorflow, so they are never pulled by
// `npm install`), the embedded wasm backend, then the pure-JS cpu backend, and says which one runs
// and why the others were skipped. `webgpu` takes any adapter, software included.
import * as tf from '@tensorflow/tfjs';
import { UserError } from './errors.ts';
import { installFastKernels } from './kernels/index.ts';
import { nativeBlasHint, nativeMatMulActive, nativeMatMulStatus, nativeMatMulWillRun, setNativeThreads } from './kernels/native-matmul.ts';
import { describeAdapter, gpuAdapter, guardLimits, loadWebGpu, WebGpuUnavailable, type GpuAdapterSummary } from './webgpu.ts';
import { enableWasmThreads } from './wasm-threads.ts';

export type BackendChoice = 'auto' | 'webgpu' | 'tensorflow' | 'wasm' | 'cpu';
export const BACKEND_CHOICES: BackendChoice[] = ['auto', 'webgpu', 'tensorflow', 'wasm', 'cpu'];

export interface RuntimeInfo {
  /** tfjs backend name now active: 'webgpu' | 'tensorflow' | 'wasm' | 'cpu' */
  backend: string;
  /** which package provides it */
  provider: string;
  /** one line per candidate that was skipped, with the reason */
  skipped: string[];
  /** wasm: threads of the threaded wasm build's pool (absent: the single-threaded build) */
  threads?: number;
  /** wasm with the native products: BLAS threads (runtime.threads) */
  blasThreads?: number;
  /** wasm: which matrix-product kernel runs, and its threads (core/kernels/native-matmul.ts) */
  products?: string;
  /** wasm: a note when OpenBLAS runs kernels far below the CPU's (core/kernels/native-matmul.ts blasCoreHint) */
  productsHint?: string;
  /** the GPU adapter (webgpu) */
  adapter?: GpuAdapterSummary;
}

interface Candidate {
  provider: string;
  backend: string;
  load(): Promise<void>;
}

const candidates: Record<string, Candidate> = {
  'webgpu-hardware': { provider: 'webgpu (Dawn) + @tensorflow/tfjs-backend-webgpu, hardware adapter', backend: 'webgpu', load: async () => void (await loadWebGpu({ allowSoftware: false })) },
  webgpu: { provider: 'webgpu (Dawn) + @tensorflow/tfjs-backend-webgpu', backend: 'webgpu', load: async () => void (await loadWebGpu({ allowSoftware: true })) },
  'tfjs-node-gpu': { provider: '@tensorflow/tfjs-node-gpu', backend: 'tensorflow', load: () => importOptional('@tensorflow/tfjs-node-gpu') },
  'tfjs-node': { provider: '@tensorflow/tfjs-node', backend: 'tensorflow', load: () => importOptional('@tensorflow/tfjs-node') },
  wasm: { provider: '@tensorflow/tfjs-backend-wasm', backend: 'wasm', load: loadWasm },
  cpu: { provider: '@tensorflow/tfjs (cpu)', backend: 'cpu', load: async () => {} },
};

const order: Record<BackendChoice, string[]> = {
  auto: ['webgpu-hardware', 'tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'],
  webgpu: ['webgpu'],
  tensorflow: ['tfjs-node-gpu', 'tfjs-node'],
  wasm: ['wasm'],
  cpu: ['cpu'],
};

async function importOptional(name: string): Promise<void> {
  // a variable specifier keeps bundlers and tsc from resolving the optional peer
  const spec: string = name;
  await import(spec);
}

async function loadWasm(): Promise<void> {
  await import('@tensorflow/tfjs-backend-wasm');
}

/**
 * Threads for the wasm backend: threads > 1 starts tfjs-backend-wasm's threaded SIMD build
 * under Node (core/wasm-threads.ts enableWasmThreads, issue 7; see docs/performance.md for when it
 * pays off). The hook: set `threadedWasmWorks` to false to always run the single-threaded build.
 */
export const wasmThreads = { threadedWasmWorks: true };

/**
 * Whether runtime.threads > 1 starts the threaded wasm build. Not when the native products run
 * (issue 16): the threads then go to BLAS (setNativeThreads), where a step's time is, and the wasm
 * build stays single-threaded, because its pool's workers spin-wait after every wasm kernel and
 * take the cores the BLAS threads need (measured in docs/performance.md "Threads").
 * VLM_THREADED_WASM=1 starts it anyway (to measure), =0 never.
 */
function threadedWasm(threads: number | null | undefined): boolean {
  if (!threads || threads <= 1 || !wasmThreads.threadedWasmWorks || process.env.VLM_THREADED_WASM === '0') return false;
  return process.env.VLM_THREADED_WASM === '1' || !nativeMatMulWillRun();
}

/** Patches needed while the wasm backend initialises; returns the undo. */
function setWasmThreads(threads: number | null | undefined): { threads?: number; restore: () => void } {
  if (!threadedWasm(threads)) return { restore: () => {} };
  return { threads: threads!, restore: enableWasmThreads(threads!) };
}

export async function initRuntime(
  choice: BackendChoice = 'auto',
  opts: { threads?: number | null; log?: (line: string) => void } = {},
): Promise<RuntimeInfo> {
  if (!order[choice]) throw new UserError(`backend "${choice}": expected one of ${BACKEND_CHOICES.join(', ')}`, { where: { yamlPath: 'runtime.backend' } });
  const skipped: string[] = [];
  for (const key of order[choice]) {
    const c = candidates[key];
    try {
      await c.load();
    } catch (e) {
      const why = e instanceof WebGpuUnavailable ? e.message : notInstalled(e) ? 'not installed' : `failed to load (${firstLine(e)})`;
      skipped.push(`${c.provider}: ${why}`);
      continue;
    }
    const wt = c.backend === 'wasm' ? setWasmThreads(opts.threads) : { restore: () => {} };
    let threads = (wt as { threads?: number }).threads;
    let ok = false;
    try {
      ok = await tf.setBackend(c.backend);
      await tf.ready();
    } catch (e) {
      skipped.push(`${c.provider}: failed to start (${firstLine(e)})`);
      continue;
    } finally {
      wt.restore();
    }
    if (threads) threads = (await import('@tensorflow/tfjs-backend-wasm')).getThreadsCount();
    if (!ok || tf.getBackend() !== c.backend) {
      skipped.push(`${c.provider}: failed to start`);
      continue;
    }
    setNativeThreads(opts.threads);
    installFastKernels(c.backend);
    const products = c.backend === 'wasm' ? nativeMatMulStatus() : undefined;
    if (c.backend === 'webgpu') guardLimits();
    const blasThreads = c.backend === 'wasm' && nativeMatMulActive() ? Math.max(1, Math.floor(opts.threads ?? 1)) : undefined;
    const productsHint = (c.backend === 'wasm' && nativeBlasHint()) || undefined;
    const info: RuntimeInfo = { backend: c.backend, provider: c.provider, skipped, threads, blasThreads, products, productsHint, adapter: c.backend === 'webgpu' ? gpuAdapter ?? undefined : undefined };
    opts.log?.(describeRuntime(info));
    return info;
  }
  if (choice === 'tensorflow') {
    throw new UserError(`backend "tensorflow" needs @tensorflow/tfjs-node or @tensorflow/tfjs-node-gpu (${skipped.join("; ")})`, {
      where: { yamlPath: 'runtime.backend' },
      hint: 'npm install @tensorflow/tfjs-node (CPU) or npm install @tensorflow/tfjs-node-gpu (CUDA GPU), or use runtime.backend=auto',
    });
  }
  if (choice === 'webgpu') {
    throw new UserError(`backend "webgpu" could not start (${skipped.join('; ')})`, {
      where: { yamlPath: 'runtime.backend' },
      hint: 'a Vulkan (Linux), Metal (macOS) or D3D12 (Windows) driver is needed; on Debian 12 without a GPU: lavapipe from bookworm-backports (README "GPU"); or use runtime.backend=auto',
    });
  }
  throw new UserError(`no tfjs backend could start (${skipped.join('; ')})`, { where: { yamlPath: 'runtime.backend' } });
}

export function describeRuntime(info: RuntimeInfo): string {
  const lines = [`backend: ${info.backend} (${info.provider})${info.threads ? `, ${info.threads} threads` : ''}`];
  if (info.products) lines.push(`  ${info.products}`);
  if (info.productsHint) lines.push(`  ${info.productsHint}`);
  if (info.adapter) lines.push(`  ${describeAdapter(info.adapter)}`);
  for (const s of info.skipped) lines.push(`  skipped ${s}`);
  return lines.join('\n');
}

function notInstalled(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0];
}
