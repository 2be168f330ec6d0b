// The search on a planted problem, with the fake engine (no addon needed): targets are made by
// patching a hidden subset; the search must find it, and its loss must fall.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { meansDecFloats, meansEncFloats, preset } from '../src/config.js';
import { Rng } from '../src/data/rng.js';
import { CANVAS_FLOATS, type TaskMeans } from '../src/engine.js';
import { REFERENCE_SEARCH, runSearch, type SearchInputs, type SearchOptions } from '../src/method/reinforce.js';
import { VariableSpace } from '../src/method/variables.js';
import { FakeEngine, targetsFromImages } from './method-fake-engine.js';

const tiny = preset('tiny');

export function randomMeans(rng: Rng): TaskMeans {
  return {
    enc: Float32Array.from({ length: meansEncFloats(tiny) }, () => rng.float() * 4 - 2),
    dec: Float32Array.from({ length: meansDecFloats(tiny) }, () => rng.float() * 4 - 2),
  };
}
export function randomCanvases(rng: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n * CANVAS_FLOATS }, () => rng.float() * 2 - 1);
}

async function plantedProblem(seed: number, hiddenCount: number) {
  const rng = Rng.fromSeed(seed);
  const engine = new FakeEngine(tiny);
  const space = new VariableSpace(tiny, 1, 'zero-shot');
  const means = randomMeans(rng);
  const hidden = new Uint8Array(space.count);
  for (const v of rng.shuffle(Array.from({ length: space.count }, (_, i) => i)).slice(0, hiddenCount)) hidden[v] = 1;
  const make = async (n: number) => {
    const canvases = randomCanvases(rng, n);
    const masks = new Uint8Array(n * space.maskBytes);
    const one = space.masks(hidden, 1);
    for (let i = 0; i < n; i++) masks.set(one, i * one.length);
    const r = await engine.forward({ mode: 'zero-shot', canvases, patch: { means, masks }, outputs: { images: true } });
    return { canvases, count: n, targets: targetsFromImages(r.images!, n) };
  };
  const inputs: SearchInputs = { engine, space, tasks: [{ name: 'planted', loss: 'mse', means }], train: [await make(10)], validation: [await make(6)] };
  return { inputs, hidden, engine };
}

const budget: SearchOptions = {
  ...REFERENCE_SEARCH,
  steps: 150,
  samplesPerStep: 128,
  validateEvery: 25,
  finalSubset: 'threshold',
  seed: 11,
  checkpointEvery: 20,
};

describe('REINFORCE on a planted subset (fake engine)', () => {
  it('recovers the hidden subset with precision and recall >= 0.9, and the loss falls', async () => {
    const { inputs, hidden } = await plantedProblem(5, 8);
    const losses: number[] = [];
    const res = await runSearch(inputs, budget, { onStep: (r) => losses.push(r.loss) });
    let tp = 0;
    let fp = 0;
    let fn = 0;
    for (let v = 0; v < hidden.length; v++) {
      if (res.choice[v] && hidden[v]) tp++;
      else if (res.choice[v]) fp++;
      else if (hidden[v]) fn++;
    }
    expect(tp / Math.max(1, tp + fp)).toBeGreaterThanOrEqual(0.9);
    expect(tp / (tp + fn)).toBeGreaterThanOrEqual(0.9);
    const head = losses.slice(0, 5).reduce((a, b) => a + b) / 5;
    const tail = losses.slice(-5).reduce((a, b) => a + b) / 5;
    expect(tail).toBeLessThan(0.25 * head);
  });

  it('an interrupted and resumed search writes the same state and log as an uninterrupted one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vtv-search-'));
    const opt = { ...budget, steps: 12, checkpointEvery: 5, validateEvery: 4 };
    const a = await plantedProblem(7, 5);
    await runSearch(a.inputs, opt, { statePath: join(dir, 'a.json'), logPath: join(dir, 'a.jsonl') });

    const b = await plantedProblem(7, 5);
    let n = 0;
    // Stop after 7 steps: the state covers 7 steps; then resume to 12.
    await runSearch(b.inputs, opt, { statePath: join(dir, 'b.json'), logPath: join(dir, 'b.jsonl'), shouldStop: () => ++n === 7 });
    expect(JSON.parse(readFileSync(join(dir, 'b.json'), 'utf8')).step).toBe(7);
    const resumed = await runSearch(b.inputs, opt, { statePath: join(dir, 'b.json'), logPath: join(dir, 'b.jsonl'), resume: true });
    expect(resumed.completed).toBe(true);
    expect(readFileSync(join(dir, 'b.json'), 'utf8')).toBe(readFileSync(join(dir, 'a.json'), 'utf8'));
    const strip = (p: string) =>
      readFileSync(p, 'utf8')
        .trim()
        .split('\n')
        .map((l) => ({ ...JSON.parse(l), seconds: 0 }));
    expect(strip(join(dir, 'b.jsonl'))).toEqual(strip(join(dir, 'a.jsonl')));
  });

  it('refuses to resume a different configuration and leaves the state untouched', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vtv-search-'));
    const p = await plantedProblem(7, 5);
    const opt = { ...budget, steps: 3 };
    await runSearch(p.inputs, opt, { statePath: join(dir, 's.json'), logPath: join(dir, 'l.jsonl') });
    const before = readFileSync(join(dir, 's.json'), 'utf8');
    const logBefore = readFileSync(join(dir, 'l.jsonl'), 'utf8');
    await expect(runSearch(p.inputs, { ...opt, lr: 0.05 }, { statePath: join(dir, 's.json'), logPath: join(dir, 'l.jsonl'), resume: true })).rejects.toThrow(
      /different search configuration[\s\S]*options\.lr: 0\.1 vs 0\.05/,
    );
    await expect(runSearch(p.inputs, opt, { statePath: join(dir, 'missing.json'), resume: true })).rejects.toThrow(/no search state/);
    expect(readFileSync(join(dir, 's.json'), 'utf8')).toBe(before);
    expect(readFileSync(join(dir, 'l.jsonl'), 'utf8')).toBe(logBefore);
  });

  it("binds each task's means once per search, not once per step", async () => {
    const { inputs, engine } = await plantedProblem(5, 8);
    await runSearch(inputs, { ...budget, steps: 6, validateEvery: 2 });
    expect(engine.binds).toBe(1);
    expect(engine.calls).toBeGreaterThanOrEqual(6);
  });

  it('keeps restricted variables off (encoder-only / decoder-only)', async () => {
    const { inputs } = await plantedProblem(5, 8);
    const res = await runSearch(inputs, { ...budget, steps: 3, restrict: 'decoder-only', finalSubset: 'sample' });
    const enc = inputs.space.encoderCount;
    expect(res.selectedLogits.subarray(0, enc).every((x) => x === -1000)).toBe(true);
    expect(res.choice.subarray(0, enc).every((x) => x === 0)).toBe(true);
    const res2 = await runSearch(inputs, { ...budget, steps: 3, restrict: 'encoder-only' });
    expect(res2.selectedLogits.subarray(enc).every((x) => x === -1000)).toBe(true);
  });
});
