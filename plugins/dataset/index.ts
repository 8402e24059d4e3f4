// Built-in dataset plugins.
import type { Plugin } from '../../core/plugin.ts';
import syntheticShapes from './synthetic-shapes.ts';

export default [syntheticShapes] as Plugin[];
