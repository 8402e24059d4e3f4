// Built-in tokenizer plugins.
import type { Plugin } from '../../core/plugin.ts';
import hf from './hf.ts';
import bytes from './bytes.ts';

export default [hf, bytes] as Plugin[];
