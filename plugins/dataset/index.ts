// Built-in dataset plugins.
import type { Plugin } from 'nanovlm-ts/plugin-api';
import cauldron from './cauldron.ts';
import mmstar from './mmstar.ts';
import folder from './folder.ts';
import syntheticShapes from './synthetic-shapes.ts';

export default [cauldron, mmstar, folder, syntheticShapes] as Plugin[];
