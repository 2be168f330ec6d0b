#!/usr/bin/env node
// `npm run prebuild`: prebuildify drives node-gyp only, so we hand it a shim "node-gyp" that runs
// cmake-js with portable CPU flags, and prebuildify copies build/Release/vtv.node into
// prebuilds/<platform>-<arch>/ with its naming scheme (napi, so one build serves every Node version).
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const shimDir = mkdtempSync(join(tmpdir(), 'vtv-prebuild-'));
const cmakeJs = join(root, 'node_modules', '.bin', 'cmake-js');
const arch = process.env.VTV_CPU_ARCH ?? 'x86-64-v3';
const shim = join(shimDir, 'node-gyp');
// prebuildify calls `node-gyp rebuild --target=... --release ...`: we build the same addon with cmake-js.
// A build folder of its own, so the portable -march is really configured and the local build/ keeps its
// settings; the result goes where prebuildify looks for it (build/Release/).
writeFileSync(
  shim,
  [
    '#!/bin/sh',
    'set -e',
    `"${cmakeJs}" compile --out build-prebuild --CDVTV_CPU_ARCH=${arch} --CDVTV_TESTS=OFF --CDVTV_BENCH=OFF`,
    'mkdir -p build/Release',
    'cp build-prebuild/Release/vtv.node build/Release/vtv.node',
    '',
  ].join('\n'),
);
chmodSync(shim, 0o755);
mkdirSync(join(root, 'prebuilds'), { recursive: true });
const prebuildify = join(root, 'node_modules', '.bin', 'prebuildify');
const r = spawnSync(prebuildify, ['--napi', '--strip', '--name', 'vtv'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, PREBUILD_NODE_GYP: shim },
});
process.exit(r.status ?? 1);
