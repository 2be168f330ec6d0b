#!/usr/bin/env node
// `npm install` hook: use a prebuild (prebuilds/<platform>-<arch>/) or an existing local build when one
// loads; otherwise compile the addon with cmake-js (the engine, and the CUDA backend when nvcc is found).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
try {
  require('node-gyp-build')(root);
  console.log('vtv: native engine found (prebuild or existing build)');
  process.exit(0);
} catch {
  // fall through to a build
}
console.log('vtv: building the native engine with cmake-js (a few minutes) ...');
const cmakeJs = join(root, 'node_modules', '.bin', 'cmake-js');
const r = spawnSync(cmakeJs, ['compile', '--out', 'build', '--CDVTV_TESTS=OFF', '--CDVTV_BENCH=OFF'], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error('vtv: the native build failed. It needs cmake >= 3.20 and a C++17 compiler (g++ or clang).');
  console.error('     Retry with `npm run build:native`; add --CDVTV_CUDA=OFF to skip CUDA.');
}
process.exit(r.status ?? 1);
