// Built-in tokenizer plugins.
import type { Plugin } from 'nanovlm-ts/plugin-api';
import hf from './hf.ts';
import bytes from './bytes.ts';

export default [hf, bytes] as Plugin[];
