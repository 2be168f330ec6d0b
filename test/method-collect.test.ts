import { describe, expect, it } from 'vitest';
import { preset } from '../src/config.js';
import type { EpisodeRef } from '../src/data/dataset.js';
import { getTask } from '../src/data/tasks/index.js';
import { type ScoredPrompt, selectPrompts } from '../src/method/collect.js';
import { newTasknessAccumulator, tasknessAddTask, tasknessScores } from '../src/method/taskness.js';

const ref = { index: 0 } as EpisodeRef;
const p = (q: string, s: string, metric: number): ScoredPrompt => ({ fold: 1, ref, queryId: q, supportId: s, classId: 1, metric });

describe('prompt selection (docs/method.md#collection)', () => {
  const cands = [p('q1', 's1', 0.9), p('q1', 's2', 0.2), p('q2', 's1', 0.5), p('q3', 's3', 0.7), p('q4', 's4', Number.NaN)];
  it('corrected: best first, each query and support once, keeping its best prompt', () => {
    const sel = selectPrompts(getTask('segmentation'), cands, 10, false);
    expect(sel.map((x) => `${x.queryId}/${x.supportId}`)).toEqual(['q1/s1', 'q3/s3']);
  });
  it('reference quirk: dedupe keeps the smaller metric (the worst IoU)', () => {
    const sel = selectPrompts(getTask('segmentation'), cands, 10, true);
    // ascending: q1/s2 .2, q2/s1 .5, q3/s3 .7, q1/s1 .9 -> by support: s2, s1(q2), s3 -> by query: all distinct
    expect(sel.map((x) => `${x.queryId}/${x.supportId}`)).toEqual(['q3/s3', 'q2/s1', 'q1/s2']);
  });
  it('MSE tasks rank ascending and keep K', () => {
    const sel = selectPrompts(getTask('colorization'), cands, 1, false);
    expect(sel.map((x) => x.queryId)).toEqual(['q1']);
    expect(sel[0]!.metric).toBe(0.2);
  });
});

describe('taskness (docs/method.md#taskness)', () => {
  it('is Var_all / (n * sum of within-task variances), per (layer, head)', () => {
    const c = { ...preset('tiny'), encDepth: 1, decDepth: 1 };
    const acc = newTasknessAccumulator(c);
    const ne = 148 * c.encDim;
    const nd = 197 * c.decDim;
    // Two tasks, two prompts each; one channel of head 0 at position 0 varies: task A {0, 2}, task B {10, 12}.
    const add = (xs: number[]) => {
      const sumE = new Float64Array(ne);
      const sqE = new Float64Array(ne);
      sumE[0] = xs[0]! + xs[1]!;
      sqE[0] = xs[0]! ** 2 + xs[1]! ** 2;
      tasknessAddTask(acc, 2, sumE, sqE, new Float64Array(nd), new Float64Array(nd));
    };
    add([0, 2]);
    add([10, 12]);
    const t = tasknessScores(acc);
    // Var_all of {0,2,10,12} = 26; within: 1 + 1; n = 2 -> 26 / (2 * 2) = 6.5
    expect(t.perHead[0]).toEqual({ layer: 0, head: 0, rho: 6.5 });
    expect(t.perPositionEnc[0]![0]![0]).toBe(6.5);
    expect(t.perHead[1]!.rho).toBe(0); // a head that never varies
  });
});
