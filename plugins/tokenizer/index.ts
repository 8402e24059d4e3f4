// Built-in tokenizer plugins. Placeholder created by CORE so plugins/index.ts resolves;
// the owner of this kind replaces it with the real list.
import type { Plugin } from '../../core/plugin.ts';

export default [] as Plugin[];
