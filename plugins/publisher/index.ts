// Built-in publisher plugins: `local` writes the model folder, `hub` uploads it.
import type { Plugin } from 'nanovlm-ts/plugin-api';
import local from './local.ts';
import hub from './hub.ts';

export default [local, hub] as Plugin[];
