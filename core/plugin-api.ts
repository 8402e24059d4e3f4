// The plugin-author API: everything a plugin needs, in one module, importable from outside this
// repository as `nanovlm-ts/plugin-api` (package.json "exports"). The built-in plugins import it
// too, so a user's plugin can do whatever they do. docs/plugins.md describes it.
//
//   import { definePlugin, tf, linear, attention, rmsNorm, param, normalInit, Rng } from 'nanovlm-ts/plugin-api';
//
// tfjs comes from here (`tf`): a plugin must use the same tfjs instance as nanovlm-ts (a second
// copy would have its own engine and backend), so it does not depend on @tensorflow/tfjs itself.
export * as tf from '@tensorflow/tfjs';
// defining a plugin: the plain object, option types from the schema, what core/ asks of it
export * from './plugin.ts';
// the contracts of each kind (VisionEncoder, Projector, Decoder, Tokenizer, Dataset, ...) and the contexts
export type * from './types.ts';
// errors a user can act on (file, YAML path, hint)
export { UserError, UserErrors, isUserError, type Where } from './errors.ts';
// tensor building blocks: linear, attention (+ bias), layerNorm, rmsNorm, geluTanh, silu, siluMul, heads, dropout, loss; parameters and their initialisation
export * from './ops.ts';
// seeded randomness: mulberry32, mixSeed, hashString, permutations, Rng
export * from './rng.ts';
// weights: safetensors files; nanoVLM's VLMConfig (defaults, Hub-config shapes merged with options)
export { openSafetensors, readSafetensors, readSafetensorsHeader, writeSafetensors, type LoadedTensor, type SafetensorsFile } from './weights/safetensors.ts';
export { VLM_CONFIG_DEFAULTS, mergeHubShapes } from './model/config.ts';
// the Hugging Face Hub: a repo id or a folder -> a local folder; Hub backbones (config, key tables, loading)
export { resolveSource, parseRepoId, isRepoId, type ResolveOptions } from './hub/index.ts';
export * from './hub/backbone.ts';
// training support a model plugin uses: activation checkpointing per block; host reads of tensors
export * from './train/activation-checkpointing.ts';
export { hostValues, toHost } from './host.ts';
// native addon functions called directly (wasm backend with native/blas.cc built; null / false otherwise: run the tfjs path)
export { adamwUpdateNative, decodeAttendNative, matMulRowsNative, ropeNative, sumSquaresNative, nativeOptimizerActive, type AdamWStepScalars } from './kernels/native-direct.ts';
