// The one place that loads the native addon: the file $VTV_ADDON names, else a prebuild from
// prebuilds/<platform>-<arch>/ (made by `npm run prebuild`), else the local build in build/Release/
// (made by `npm run build:native`).
// When neither loads, the error says what was tried and the command that fixes it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeAddon } from '../bindings/addon.js';
import { EngineError } from './errors.js';

const require = createRequire(import.meta.url);

/** The package root: the folder with package.json, whether we run from src/ (tsx) or dist/src/. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'CMakeLists.txt'))) return dir;
    dir = dirname(dir);
  }
  throw new EngineError('vtv: cannot find the package root (package.json next to CMakeLists.txt)');
}

let cached: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  if (cached) return cached;
  // VTV_ADDON names one vtv.node to use instead (another build: e.g. build-emu/Release/vtv.node, the
  // CUDA backend on the CPU CUDA emulator).
  const override = process.env.VTV_ADDON;
  if (override) {
    if (!existsSync(override)) throw new EngineError(`vtv: VTV_ADDON=${override}: no such file`);
    try {
      cached = require(override) as NativeAddon;
      return cached;
    } catch (err) {
      const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
      throw new EngineError(`vtv: VTV_ADDON=${override} could not be loaded: ${reason}`);
    }
  }
  const root = packageRoot();
  const loader = require('node-gyp-build') as (dir: string) => unknown;
  try {
    cached = loader(root) as NativeAddon;
    return cached;
  } catch (err) {
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    const tried = [join(root, 'prebuilds', `${process.platform}-${process.arch}`), join(root, 'build', 'Release', 'vtv.node')];
    throw new EngineError(
      [
        'vtv: the native engine (vtv.node) could not be loaded.',
        `  looked in: ${tried.join(', ')}`,
        `  reason: ${reason}`,
        '  fix: build it with `npm run build:native` (needs cmake >= 3.20 and a C++17 compiler;',
        '       CUDA is optional: VTV_CUDA=OFF npm run build:native to skip it),',
        `       or install a prebuild for ${process.platform}-${process.arch} (npm run prebuild).`,
      ].join('\n'),
    );
  }
}
