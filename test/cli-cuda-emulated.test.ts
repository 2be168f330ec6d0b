// The cuda backend through the addon, the library and the CLI, on the CPU CUDA emulator: scripts/test.sh
// builds an addon whose CUDA backend runs the very .cu sources on the CPU (build-emu/, see
// tools/cuda-emulator/README.md) and names it in VTV_EMULATED_ADDON. Checked here: the backend and
// the precision reach the engine, fp32 on cuda matches the cpu backend sample by sample, and
// `vtv collect` and `vtv search` run with --backend cuda --precision bf16. The emulator is slow (seconds
// per decoded image), so the runs are tiny.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectCommand } from '../src/cli/collect.js';
import { type Deps, defaultDeps } from '../src/cli/common.js';
import { searchCommand } from '../src/cli/search.js';
import { preset } from '../src/config.js';
import { Rng } from '../src/data/rng.js';
import { CANVAS_FLOATS, Engine } from '../src/engine.js';
import { writeRandomWeights } from '../src/model/random-weights.js';
import { loadAddon } from '../src/native.js';
import { runPaths } from '../src/run/layout.js';

const addon = process.env.VTV_EMULATED_ADDON;
const tiny = preset('tiny');
const dir = mkdtempSync(join(tmpdir(), 'vtv-cuda-emu-'));
const weights = join(dir, 'tiny.safetensors');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!addon)('cuda backend on the CPU CUDA emulator (npm test builds build-emu/ and sets VTV_EMULATED_ADDON)', () => {
  beforeAll(() => {
    if (!existsSync(addon!)) throw new Error(`VTV_EMULATED_ADDON=${addon}: no such file`);
    process.env.VTV_ADDON = addon; // this test file runs in its own process (pool: forks)
    writeRandomWeights(weights, tiny, 5);
  });

  it('lists the cuda backend as usable, on the emulator', () => {
    const cuda = loadAddon()
      .backends()
      .find((b) => b.name === 'cuda');
    expect(cuda?.compiled).toBe(true);
    expect(cuda?.usable).toBe(true);
    expect(cuda?.detail).toMatch(/emulator/);
  });

  it('fp32 on cuda gives the cpu backend losses and tokens, and bf16 runs', async () => {
    const canvases = new Float32Array(2 * CANVAS_FLOATS);
    const rng = Rng.fromSeed(9);
    for (let i = 0; i < canvases.length; i++) canvases[i] = 4 * rng.float() - 2;
    const req = { mode: 'one-shot' as const, canvases, loss: 'mse' as const, outputs: { tokens: true } };
    const cpu = await Engine.open({ config: tiny, weights, backend: 'cpu', threads: 2 });
    const gpu = await Engine.open({ config: tiny, weights, backend: 'cuda', precision: 'fp32' });
    expect(gpu.backend.name).toBe('cuda');
    const a = await cpu.forward(req);
    const b = await gpu.forward(req);
    expect(Array.from(b.tokens!)).toEqual(Array.from(a.tokens!));
    for (let i = 0; i < 2; i++) expect(b.losses![i]).toBeCloseTo(a.losses![i]!, 4);
    const bf = await Engine.open({ config: tiny, weights, backend: 'cuda', precision: 'bf16' });
    const c = await bf.forward(req);
    for (const l of c.losses!) expect(Number.isFinite(l)).toBe(true);
    await expect(Engine.open({ config: tiny, weights, backend: 'cpu', precision: 'bf16' })).rejects.toThrow(/bf16.*CUDA/);
  });

  it('runs vtv collect and vtv search with --backend cuda --precision bf16', async () => {
    const logs: string[] = [];
    const deps: Deps = { ...defaultDeps, log: (m) => logs.push(m), progress: false };
    const run = join(dir, 'run');
    const base = { run, weights: [weights], dataset: 'bundled' as const, backend: 'cuda' as const, precision: 'bf16' as const };
    await collectCommand({ ...base, tasks: ['segmentation'], folds: [1], episodesPerFold: 2, keep: 2, batch: 2 }, deps);
    expect(logs.join('\n')).toMatch(/engine: cuda/);
    await searchCommand({ run, tasks: ['segmentation'], steps: 1, samplesPerStep: 4, trainImages: 2, validateEvery: 0, valImages: 1 }, deps);
    const p = runPaths(run);
    expect(JSON.parse(readFileSync(p.config, 'utf8'))).toMatchObject({ backend: 'cuda', precision: 'bf16' });
    const steps = readFileSync(p.searchLog('segmentation'), 'utf8').trim().split('\n');
    expect(steps).toHaveLength(1);
    const step = JSON.parse(steps[0]!);
    expect(Number.isFinite(step.loss)).toBe(true);
    expect(step.uniqueDecodes).toBeGreaterThan(0);
    expect(step.uniqueDecodes).toBeLessThanOrEqual(4);
  }, 600_000);
});
