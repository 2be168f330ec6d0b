// `vtv tune` and `vtv bench --kernels` through the compiled CLI, and the kernel tuning cache the engine
// loads at open (src/kernel-tuning.ts), with the regular addon (build/): without a GPU both commands
// say why and write nothing (with one, they run the tiny shapes). cli-kernels-emulated.test.ts runs
// them on the CPU CUDA emulator.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { formatVariantTable, kernelTuningPath, readKernelTuning, userCacheDir } from '../src/kernel-tuning.js';
import { loadAddon } from '../src/native.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const main = join(repo, 'dist', 'src', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'vtv-kernels-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const vtv = (a: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, [main, ...a], { cwd: repo, encoding: 'utf8', env: { ...process.env, ...env } });

describe('kernel tuning cache', () => {
  it('lives in the user cache dir unless overridden, and rejects a malformed file naming it', () => {
    expect(kernelTuningPath({ VTV_KERNEL_TUNING_FILE: '/x/t.json' })).toBe('/x/t.json');
    if (process.platform === 'linux') {
      expect(kernelTuningPath({ XDG_CACHE_HOME: '/c' })).toBe('/c/vtv/kernel-tuning.json');
      expect(userCacheDir({ XDG_CACHE_HOME: '/c' })).toBe('/c/vtv');
    }
    expect(readKernelTuning(join(dir, 'absent.json')).devices).toEqual({});
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"format":"vtv-kernel-tuning","version":1,"devices":{"x":{"winners":3}}}');
    expect(() => readKernelTuning(bad)).toThrow(/bad\.json: devices\.x\./);
    writeFileSync(bad, 'not json');
    expect(() => readKernelTuning(bad)).toThrow(/bad\.json: not valid JSON/);
  });

  it('formats the variant table with the share of the ceiling and the fastest variant', () => {
    const t = formatVariantTable(
      [
        { family: 'gemm', shape: 'gemm M512 N96 K64', variant: 'baseline', ms: 2, tflops: 100, skipped: '' },
        { family: 'gemm', shape: 'gemm M512 N96 K64', variant: 'pipelined', ms: 1, tflops: 200, skipped: '' },
        { family: 'gemm', shape: 'gemm M512 N96 K64', variant: 'cublaslt', ms: 0, tflops: 0, skipped: 'no library' },
      ],
      800,
      { 'gemm M512 N96 K64': 'pipelined' },
    ).split('\n');
    expect(t[0]).toMatch(/family +shape +variant +ms +TFLOP\/s +% of ceiling/);
    expect(t[2]).toMatch(/pipelined +1\.000 +200\.0 +25\.0% +fastest$/);
    expect(t[3]).toMatch(/cublaslt +- +- +- +not run: no library$/);
  });
});

describe('vtv tune and vtv bench --kernels with the regular addon', () => {
  it('say clearly that there is no GPU (or run the tiny shapes on one)', () => {
    const file = join(dir, 'regular.json');
    const cuda = loadAddon()
      .backends()
      .find((b) => b.name === 'cuda');
    const tune = vtv(['tune', '--shapes', 'tiny', '--reps', '1', '--tuning-file', file]);
    const bench = vtv(['bench', '--kernels', '--shapes', 'tiny', '--repeats', '1']);
    if (cuda?.usable) {
      expect(tune.status, tune.stderr).toBe(0);
      expect(Object.keys(readKernelTuning(file).devices)).toHaveLength(1);
      expect(bench.status, bench.stderr).toBe(0);
    } else {
      const why = /^vtv: vtv tune: (no usable CUDA GPU|kernel variants: the CUDA backend is not compiled)/m;
      expect(tune.status).toBe(1);
      expect(tune.stderr).toMatch(why);
      expect(existsSync(file)).toBe(false);
      expect(bench.status).toBe(1);
      expect(bench.stderr).toMatch(/^vtv: vtv bench --kernels: (no usable CUDA GPU|kernel variants: the CUDA backend is not compiled)/m);
    }
    const noWeights = vtv(['bench']);
    expect(noWeights.status).toBe(1);
    expect(noWeights.stderr).toMatch(/^error: required option '--weights <files\.\.\.>' not specified/m);
  });
});
