// nanovlm-ts as a library: load a trained model (run directory, model folder or Hub repo id) and
// generate from images and prompts without the CLI.
//
//   import { createRegistry, loadModel, generateText } from 'nanovlm-ts';
//   import builtins from 'nanovlm-ts/plugins';            // the built-in plugins (in this repository: './plugins/index.ts')
//   const registry = createRegistry(builtins);
//   const { model, tokenizer, imageProcessor } = await loadModel('runs/shapes-tiny-.../', { registry });
//   const [answer] = await generateText(model, tokenizer, imageProcessor,
//     [{ prompt: 'Question: What colour is the circle? Answer:', image: pngBytes }], { maxNewTokens: 8 });
//   model.dispose();
//
// `registry` holds the plugins the model was built from (core/ never imports plugins/, so the
// caller passes them). The tfjs backend is whatever is active; `initRuntime('auto')` picks one.
export { loadModel, resolveModelFolder, type LoadedModel, type LoadModelOptions } from './load-model.ts';
export {
  generate,
  generateBatch,
  generateText,
  preparePrompts,
  checkPromptBatch,
  sampleToken,
  samplingDistribution,
  mulberry32,
  type GenerateInputs,
  type GenerateOptions,
  type SamplingOptions,
  type PromptBatch,
} from './generate.ts';
export { definePlugin, type Plugin, type JSONSchema } from './plugin.ts';
export { createRegistry, Registry } from './registry.ts';
export { initRuntime, BACKEND_CHOICES, type BackendChoice, type RuntimeInfo } from './runtime.ts';
export { hostValues, toHost } from './host.ts';
export { UserError, UserErrors, isUserError } from './errors.ts';
export type { VisionLanguageModel } from './model/vlm.ts';
export type * from './types.ts';
