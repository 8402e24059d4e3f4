// `npm run bench [-- options]`: `vlm bench` on the benchmark recipes (recipes/bench/tiny.yaml,
// recipes/bench/small.yaml) in one process; options as `vlm bench --help` (e.g. --json out.json,
// --threads 2, --steps 20). See docs/performance.md for the figures and how to read them.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cli } from '../core/cli.ts';
import builtins from '../plugins/index.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const recipes = args.filter((a) => a.endsWith('.yaml'));
const rest = args.filter((a) => !a.endsWith('.yaml'));
const list = recipes.length ? recipes : ['tiny', 'small'].map((n) => join(root, 'recipes', 'bench', `${n}.yaml`));
process.exitCode = await cli(['bench', ...list, ...rest], { builtins });
