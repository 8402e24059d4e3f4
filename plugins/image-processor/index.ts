// Built-in image-processor plugins.
import type { Plugin } from 'nanovlm-ts/plugin-api';
import resize from './resize.ts';
import split from './split.ts';

export default [resize, split] as Plugin[];
