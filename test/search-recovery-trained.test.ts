// The search recovers a working task vector on the shipped trained model, from scratch, for several
// seeds: `vtv demo`'s collect -> search -> eval for low-light enhancement at granularity 1 over all 68
// variables (24 steps x 48 samples), evaluated on the bundled data's held-out val folds. Each seed's
// searched subset must close most of the one-shot/zero-shot gap, and more of it than a random subset
// of the same size. (The planted-problem tests check the search on random weights, where the answer is
// known by construction; this one checks it where the answer is the model's own.)
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Deps, defaultDeps } from '../src/cli/common.js';
import { demoCommand } from '../src/cli/demo.js';
import type { EvalResults } from '../src/method/evaluate.js';
import { shippedModelPath } from '../src/model/shipped.js';
import { runPaths } from '../src/run/layout.js';

const dir = mkdtempSync(join(tmpdir(), 'vtv-recovery-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('search on the shipped model', () => {
  for (const seed of [1, 2]) {
    it(`recovers the low-light task vector (seed ${seed})`, { timeout: 240_000 }, async () => {
      const deps: Deps = { ...defaultDeps, log: () => {}, progress: false };
      const run = join(dir, `seed${seed}`);
      await demoCommand({ run, weights: shippedModelPath(), tasks: ['lowlight_enhance'], seed, threads: 2 }, deps);
      const res = JSON.parse(readFileSync(runPaths(run).evalJson, 'utf8')) as EvalResults;
      const s = res.summary.find((r) => r.task === 'lowlight_enhance')!;
      const gap = s.zeroShot - s.oneShot; // MSE
      const closed = (x: number) => (s.zeroShot - x) / gap;
      expect(gap).toBeGreaterThan(0.5);
      expect(closed(s.taskVector)).toBeGreaterThanOrEqual(0.7);
      expect(closed(s.taskVector)).toBeGreaterThan(closed(s.random) + 0.3);
    });
  }
});
