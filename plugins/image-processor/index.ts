// Built-in image-processor plugins.
import type { Plugin } from '../../core/plugin.ts';
import resize from './resize.ts';
import split from './split.ts';

export default [resize, split] as Plugin[];
