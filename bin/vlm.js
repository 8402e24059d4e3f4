#!/usr/bin/env node
// The `vlm` executable and the composition root: it registers tsx (so the TypeScript sources,
// and user plugins written in TypeScript, load without a build step), then hands the built-in
// plugins (plugins/index.ts, loaded once a command needs them) to the CLI (core/cli.ts).
// core/ never imports plugins/ itself.
import { register } from 'tsx/esm/api';
import { register as registerCjs } from 'tsx/cjs/api';

register();
registerCjs(); // a .ts plugin in a folder node treats as CommonJS (no "type": "module") loads too
const { cli } = await import('../core/cli.ts');
const builtins = async () => (await import('../plugins/index.ts')).default;
process.exitCode = await cli(process.argv.slice(2), { builtins });
