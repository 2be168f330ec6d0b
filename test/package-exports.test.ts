// The published package: every subpath of the exports map loads from dist/ (compiled by scripts/test.sh
// before vitest) with its declarations next to it, and the tarball holds what a user runs (the engine's
// sources to build, the compiled TypeScript, data, docs) and none of the tests, benchmarks, training
// scripts or the CUDA emulator.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'));

describe('package.json', () => {
  it('exports each subpath with its types first, and each loads', async () => {
    const subpaths = Object.keys(pkg.exports).filter((k) => k !== './package.json');
    expect(subpaths).toEqual(expect.arrayContaining(['.', './engine', './method']));
    for (const sub of subpaths) {
      const entry = pkg.exports[sub];
      expect(Object.keys(entry)[0], sub).toBe('types');
      expect(existsSync(join(repo, entry.types)), `${entry.types}: compile dist/ first`).toBe(true);
      const mod = await import(`vtv${sub.slice(1)}`);
      expect(Object.keys(mod).length, sub).toBeGreaterThan(0);
    }
    expect((await import('vtv/method')).runSearch).toBe((await import('vtv')).runSearch);
  });

  it('packs only what a user runs', () => {
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: repo, encoding: 'utf8' });
    const files: string[] = JSON.parse(out)[0].files.map((f: { path: string }) => f.path);
    for (const need of [
      'package.json',
      'CMakeLists.txt',
      'scripts/install.mjs',
      'bindings/addon.cc',
      'native/include/vtv/engine.h',
      'native/src/engine/engine.cc',
      'native/src/engine/backend.h',
      // the native build generates vtv/model_constants.h from the JSON the TypeScript imports
      'native/cmake/model_constants.cmake',
      'src/model-constants.json',
      'dist/src/model-constants.json',
      'dist/src/index.js',
      'dist/src/cli/main.js',
      // the engine's .d.ts files import the addon's types from here
      'dist/bindings/addon.d.ts',
      'docs/method.md',
      'docs/architecture.md',
      'README.md',
    ]) {
      expect(files, need).toContain(need);
    }
    const banned = /^(test|benchmarks|train|native\/tests|native\/bench|tools|\.ci)\/|^scripts\/(?!install\.mjs$)/;
    expect(files.filter((f) => banned.test(f))).toEqual([]);
  });
});
