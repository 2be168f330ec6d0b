// The small model vtv trains and ships (models/mae-vqgan-mini.safetensors, docs/model-card-mini.md):
// - the file is the documented one (checksum, tensors and shapes, training record);
// - on held-out episodes (the bundled data; training used other generator seeds) the method works as
//   the paper reports at scale: one-shot prompting is clearly above zero-shot on segmentation, the
//   searched task vector recovers most of that gap, and a random subset of the same size does not.
//   This runs the demo's own pipeline (collect -> search -> eval) with its budget, so `vtv demo`
//   shows the same numbers.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { modelRecord } from '../scripts/model-card.js';
import { checkWeights, type Deps, defaultDeps } from '../src/cli/common.js';
import { demoCommand } from '../src/cli/demo.js';
import { ModelConfigSchema, preset } from '../src/config.js';
import type { EvalResults } from '../src/method/evaluate.js';
import { runPaths } from '../src/method/run_layout.js';
import { SHIPPED_MODEL, shippedCardPath, shippedModelPath } from '../src/model/shipped_model.js';

const dir = mkdtempSync(join(tmpdir(), 'vtv-shipped-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the shipped small model', () => {
  it('is the file its record describes', () => {
    const want = JSON.parse(readFileSync(shippedCardPath(), 'utf8'));
    const got = modelRecord(shippedModelPath());
    expect(got.sha256).toBe(want.sha256);
    expect(got.bytes).toBe(want.bytes);
    expect(got.tensors).toEqual(want.tensors);
    const config = ModelConfigSchema.parse(JSON.parse(got.metadata.vtv_config as string));
    expect(config).toEqual(preset(SHIPPED_MODEL.preset));
    expect(() => checkWeights(config, [shippedModelPath()], { vqganEncoder: true })).not.toThrow();
    for (const k of ['steps', 'seed', 'data_seed', 'wall_s', 'commit', 'vqgan_steps']) expect(got.metadata[k], k).toBeDefined();
  });

  it('shows the in-context gap on held-out episodes, and the searched task vector recovers it', async () => {
    const logs: string[] = [];
    const deps: Deps = { ...defaultDeps, log: (m) => logs.push(m), progress: false };
    const run = join(dir, 'demo');
    await demoCommand({ run, threads: 2 }, deps);
    const res = JSON.parse(readFileSync(runPaths(run).evalJson, 'utf8')) as EvalResults;
    const seg = res.summary.find((r) => r.task === 'segmentation');
    expect(seg, JSON.stringify(res.summary)).toBeDefined();
    const { oneShot, zeroShot, taskVector, random } = seg!;
    const gap = oneShot - zeroShot;
    const table = logs.filter((l) => l.includes('closes')).join('\n');
    expect(gap, table).toBeGreaterThanOrEqual(0.15);
    expect(taskVector - zeroShot, table).toBeGreaterThanOrEqual(0.5 * gap);
    expect(random - zeroShot, table).toBeLessThan(0.2 * gap);
  });
});
