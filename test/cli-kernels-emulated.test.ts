// `vtv tune` and `vtv bench --kernels` on the CPU CUDA emulator's addon (VTV_EMULATED_ADDON, set by
// scripts/test.sh; see native/cuda_emulator/README.md): the tiny shapes are timed (the times mean
// nothing there, the plumbing is what is checked), the winners stored per device in the kernel tuning
// cache, and an engine on the cuda backend loads them at open (src/kernel-tuning.ts).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { preset } from '../src/config.js';
import { Engine } from '../src/engine.js';
import { deviceKey, readKernelTuning } from '../src/kernel-tuning.js';
import { writeRandomWeights } from '../src/model/random-weights.js';
import { loadAddon } from '../src/native.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const main = join(repo, 'dist', 'src', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'vtv-kernels-emu-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const vtv = (a: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, [main, ...a], { cwd: repo, encoding: 'utf8', env: { ...process.env, ...env } });

const emulated = process.env.VTV_EMULATED_ADDON;

describe.skipIf(!emulated)('vtv tune on the CPU CUDA emulator (tiny shapes)', () => {
  it('times every variant, stores the winners per device, and an engine loads them', async () => {
    const file = join(dir, 'emulated.json');
    const env = { VTV_ADDON: emulated };
    const tooBig = vtv(['tune', '--shapes', 'model', '--tuning-file', file], env);
    expect(tooBig.status).toBe(1);
    expect(tooBig.stderr).toMatch(/too large for the CPU CUDA emulator/);

    const r = vtv(['tune', '--reps', '1', '--tuning-file', file], env);
    expect(r.status, r.stderr).toBe(0);
    for (const v of ['gemm', 'conv3x3', 'attention', 'groupnorm', 'baseline', 'pipelined', 'nhwc', 'fastest']) expect(r.stdout).toContain(v);
    expect(r.stdout).toMatch(/cublaslt .*not run: cuBLASLt does not run on the CPU CUDA emulator/);
    const f = readKernelTuning(file);
    const keys = Object.keys(f.devices);
    expect(keys).toHaveLength(1);
    const entry = f.devices[keys[0]!]!;
    expect(entry.device.emulated).toBe(true);
    expect(keys[0]).toBe(deviceKey(entry.device));
    expect(entry.shapes).toBe('tiny');
    // The tiny set: 2 gemm, 2 conv3x3, 3 conv_nhwc, 1 attention, 2 groupnorm shapes.
    expect(Object.keys(entry.winners)).toHaveLength(10);
    for (const [shape, variant] of Object.entries(entry.winners)) {
      const timed = entry.rows.filter((row) => row.shape === shape && !row.skipped);
      expect(Math.min(...timed.map((row) => row.ms))).toBe(timed.find((row) => row.variant === variant)!.ms);
    }

    const b = vtv(['bench', '--kernels', '--repeats', '1'], env);
    expect(b.status, b.stderr).toBe(0);
    expect(b.stdout).toMatch(/% of ceiling/);
    expect(b.stdout).toMatch(/ceiling: [0-9.]+ TFLOP\/s bf16/);

    // An engine on the cuda backend loads this device's winners at open, or the defaults when told.
    process.env.VTV_ADDON = emulated; // this test file runs in its own process (pool: forks)
    const weights = join(dir, 'tiny.safetensors');
    writeRandomWeights(weights, preset('tiny'), 3);
    const open = (kernelTuning: 'auto' | 'defaults') =>
      Engine.open({ config: preset('tiny'), weights, backend: 'cuda', precision: 'bf16', kernelTuning, kernelTuningFile: file });
    const e1 = await open('auto');
    expect(loadAddon().kernelTuning()).toEqual(entry.winners);
    e1.close();
    const e2 = await open('defaults');
    expect(loadAddon().kernelTuning()).toEqual({});
    e2.close();
    // 'tune' times again at open; a cache that cannot be written is reported and the table still used.
    const logs: string[] = [];
    const unwritable = join(weights, 'kernel-tuning.json'); // its parent is a file
    const e3 = await Engine.open({
      config: preset('tiny'),
      weights,
      backend: 'cuda',
      precision: 'bf16',
      kernelTuning: 'tune',
      kernelTuningFile: unwritable,
      log: (m) => logs.push(m),
    });
    expect(Object.keys(loadAddon().kernelTuning())).toHaveLength(10);
    expect(logs.join('\n')).toMatch(/could not store the kernel tuning in .*tiny\.safetensors\/kernel-tuning\.json/);
    e3.close();
  }, 600_000);
});
