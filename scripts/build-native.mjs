// Builds the optional native product kernel (native/blas.cc -> native/build/nanovlm_blas.node),
// the package's `install` script: `npm ci` runs it. It needs a C++ compiler, Node's headers (they
// ship with Node: <node>/include/node) and a BLAS (Linux: OpenBLAS, `apt-get install
// build-essential libopenblas-dev`; macOS: Accelerate), and never the network. It always exits 0:
// without them it prints one line and the wasm backend keeps its XNNPACK kernels
// (core/kernels/native-matmul.ts decides at start-up). `npm run build:native` reruns it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(new URL('..', import.meta.url).pathname);
const out = path.join(root, 'native', 'build', 'nanovlm_blas.node');
const say = (line) => console.log(`nanovlm-ts: ${line}`);
const skip = (why) => {
  rmSync(out, { force: true }); // an addon left from an earlier build would contradict this line
  say(`native BLAS product kernel not built (${why}); the wasm backend uses its XNNPACK kernels.`);
  process.exit(0);
};

if (process.env.VLM_SKIP_NATIVE === '1') skip('VLM_SKIP_NATIVE=1');

const cxx = [process.env.CXX, 'c++', 'g++', 'clang++'].find((c) => c && spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0);
if (!cxx) skip('no C++ compiler: apt-get install build-essential');

const nodeInclude = [
  process.env.npm_config_nodedir && path.join(process.env.npm_config_nodedir, 'include', 'node'),
  path.resolve(path.dirname(process.execPath), '..', 'include', 'node'),
  path.join(os.homedir(), '.cache', 'node-gyp', process.versions.node, 'include', 'node'),
].find((d) => d && existsSync(path.join(d, 'node_api.h')));
if (!nodeInclude) skip(`no Node headers (node_api.h) next to ${process.execPath}`);

let addonInclude;
try {
  addonInclude = path.dirname(createRequire(import.meta.url).resolve('node-addon-api/package.json'));
} catch {
  skip('node-addon-api is not installed');
}

const mac = process.platform === 'darwin';
const blas = mac ? ['-framework', 'Accelerate', '-DACCELERATE_NEW_LAPACK'] : ['-lopenblas'];
const tmp = `${out}.${process.pid}.tmp`;
mkdirSync(path.dirname(out), { recursive: true });
const args = [
  // -fno-math-errno lets sqrt vectorise (it never changes a value); -ffp-contract=off: no FMA
  // contraction, so the elementwise kernels round like the wasm kernels they replace
  '-O3', '-fno-math-errno', '-ffp-contract=off', '-std=c++17', '-shared', '-fPIC', '-fvisibility=hidden',
  `-I${nodeInclude}`, `-I${addonInclude}`,
  path.join(root, 'native', 'blas.cc'), '-o', tmp,
  ...(mac ? ['-undefined', 'dynamic_lookup'] : []),
  ...blas,
];
const r = spawnSync(cxx, args, { encoding: 'utf8' });
if (r.status !== 0) {
  rmSync(tmp, { force: true });
  const err = `${r.stderr ?? ''}${r.error ?? ''}`;
  if (/cblas\.h|lopenblas|openblas/i.test(err)) skip(mac ? 'Accelerate not found' : 'no OpenBLAS: apt-get install libopenblas-dev');
  skip(`compiler failed: ${err.split('\n').find((l) => /error/i.test(l)) ?? err.split('\n')[0]}`);
}
renameSync(tmp, out);
say(`native BLAS product kernel built (${path.relative(root, out)}, ${mac ? 'Accelerate' : 'OpenBLAS'}).`);
