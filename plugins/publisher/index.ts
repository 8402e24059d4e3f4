// Built-in publisher plugins: `local` writes the model folder, `hub` uploads it.
import type { Plugin } from '../../core/plugin.ts';
import local from './local.ts';
import hub from './hub.ts';

export default [local, hub] as Plugin[];
