// Tests run on the embedded default backend (wasm) unless VLM_TEST_BACKEND says otherwise (cpu).
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

let ready: Promise<string> | undefined;
export function useTestBackend(): Promise<string> {
  ready ??= (async () => {
    const name = process.env.VLM_TEST_BACKEND ?? 'wasm';
    if (!(await tf.setBackend(name))) throw new Error(`test backend ${name} failed to initialise`);
    await tf.ready();
    return tf.getBackend();
  })();
  return ready;
}
