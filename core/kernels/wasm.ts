// What the wasm kernels of this folder share: tfjs-backend-wasm's internal types (the parts the
// kernels touch), views of a tensor on the wasm heap, and the stock kernels ours replaced (a
// kernel hands the cases it does not speed up back to the stock one: `stock('Sum')`).
import * as tf from '@tensorflow/tfjs';

export type TensorInfo = { dataId: object; shape: number[]; dtype: tf.DataType };
export type WasmData = { id: number; memoryOffset: number; shape: number[]; dtype: string; refCount: number };
export interface WasmBackend {
  wasm: {
    cwrap(name: string, ret: null, args: string[]): (...args: unknown[]) => void;
    tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
  };
  dataIdMap: { get(dataId: object): WasmData };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: string): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}
export type KernelArgs = { inputs: Record<string, TensorInfo | undefined>; backend: WasmBackend; attrs: Record<string, any> };

/** Kernel configs we replaced (index.ts), to restore them (tests compare against the originals). */
export const originals = new Map<string, tf.KernelConfig>();

/** The stock wasm kernel `name` that ours replaced. */
export function stock(name: string): tf.KernelConfig {
  return originals.get(`${name}/wasm`)!;
}

export function fill(t: TensorInfo, backend: WasmBackend, v: number): void {
  const d = backend.dataIdMap.get(t.dataId);
  const size = t.shape.reduce((p, x) => p * x, 1);
  const heap = (backend.wasm as unknown as { HEAPF32: Float32Array }).HEAPF32;
  heap.fill(v, d.memoryOffset / 4, d.memoryOffset / 4 + size);
}

export type HeapArray = Float32Array | Int32Array | Uint8Array;
export function heapView(t: TensorInfo, backend: WasmBackend): HeapArray {
  const d = backend.dataIdMap.get(t.dataId);
  const size = t.shape.reduce((p, x) => p * x, 1);
  const buf = (backend.wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8.buffer;
  if (t.dtype === 'int32') return new Int32Array(buf, d.memoryOffset, size);
  if (t.dtype === 'bool') return new Uint8Array(buf, d.memoryOffset, size);
  if (t.dtype === 'float32') return new Float32Array(buf, d.memoryOffset, size);
  throw new Error(`wasm kernels: unsupported dtype ${t.dtype}`);
}

export function stridesOf(shape: number[]): number[] {
  const st = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

export function shapeBytes(shape: number[]): Uint8Array {
  return new Uint8Array(new Int32Array(shape).buffer);
}
