// Built-in image-processor plugins.
import type { Plugin } from '../../core/plugin.ts';
import resize from './resize.ts';

export default [resize] as Plugin[];
