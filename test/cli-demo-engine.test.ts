// `vtv demo` with the real engine (tiny random weights, bundled data), search shortened to a quarter:
// every file of the run layout appears and the results are finite numbers.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Deps, defaultDeps } from '../src/cli/common.js';
import { demoCommand } from '../src/cli/demo.js';
import { runPaths } from '../src/run/layout.js';

const dir = mkdtempSync(join(tmpdir(), 'vtv-demo-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('vtv demo (real engine)', () => {
  it('runs collect -> search -> eval and writes the run layout', async () => {
    const logs: string[] = [];
    const deps: Deps = { ...defaultDeps, log: (m) => logs.push(m), progress: false };
    const run = join(dir, 'demo');
    await demoCommand({ run, scale: 0.25, threads: 2, random: true }, deps);
    const p = runPaths(run);
    for (const f of [
      p.config,
      p.weights,
      p.means,
      p.prompts,
      p.taskness,
      p.searchState('segmentation'),
      p.searchLog('segmentation'),
      p.subset('segmentation'),
      p.evalJson,
      p.evalMd,
    ]) {
      expect(existsSync(f), f).toBe(true);
    }
    const res = JSON.parse(readFileSync(p.evalJson, 'utf8'));
    expect(res.rows).toHaveLength(4);
    for (const row of res.rows) for (const k of ['oneShot', 'zeroShot', 'taskVector', 'random']) expect(row[k]).toBeGreaterThanOrEqual(0);
    const log = readFileSync(p.searchLog('segmentation'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(log).toHaveLength(6);
    expect(log[0].validation).toBeDefined();
    expect(readdirSync(p.examples('segmentation')).filter((f) => f.endsWith('.png')).length).toBe(4 * 2 * 8);
    expect(logs.join('\n')).toMatch(/demo finished in/);
  });
});
