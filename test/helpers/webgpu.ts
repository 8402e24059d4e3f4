// Tests on the webgpu backend (core/webgpu.ts): they need a WebGPU adapter. Without one they skip
// with a clear message on a user's machine, but never in CI (CI=true): there they run and fail,
// since README's install steps (lavapipe from bookworm-backports) give CI an adapter.
import { loadWebGpu } from '../../core/webgpu.ts';

let probe: Promise<string | null> | undefined;

/** `{}` when a WebGPU adapter exists (or CI=true), else `{ skip: why }` for node:test. */
export async function needsWebGpu(): Promise<{ skip?: string }> {
  probe ??= loadWebGpu({ allowSoftware: true }).then(
    () => null,
    (e: Error) => e.message,
  );
  const why = await probe;
  if (why === null || process.env.CI === 'true') return {};
  return { skip: `needs a WebGPU adapter (${why}); README "GPU" installs lavapipe (software Vulkan) on Debian 12` };
}
