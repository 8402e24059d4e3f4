// Child process of blas-hint.test.ts: load the addon (OpenBLAS reads OPENBLAS_CORETYPE once, when it
// loads, so each case needs its own process) and print the core OpenBLAS runs, the product line,
// and OPENBLAS_CORETYPE as this process's environment holds it afterwards, as one JSON line.
import { installNativeMatMul, loadNativeBlas, nativeMatMulStatus } from '../../../core/kernels/native-matmul.ts';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

await tf.setBackend('wasm');
const addon = loadNativeBlas();
installNativeMatMul('wasm');
console.log(JSON.stringify({ corename: addon?.info().corename ?? null, products: nativeMatMulStatus(), env: process.env.OPENBLAS_CORETYPE ?? null }));
