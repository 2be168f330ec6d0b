// The "taskness" score (docs/method.md#taskness): for a candidate (layer, head[, position]),
//   rho = sum_e Var(h_all[e]) / (n * sum_j sum_e Var(h_task_j[e])),
// with e over the head's channels (and, per (layer, head), over all positions too), n tasks, j a task,
// population variances over the recorded prompts, h_all the prompts of all tasks pooled. High rho:
// varies across tasks, stable within a task. The paper uses it for analysis only; the search does not.
import { type ModelConfig, ONE_SHOT_DEC_TOKENS, ONE_SHOT_ENC_TOKENS } from '../config.js';

export interface TasknessAccumulator {
  config: ModelConfig;
  tasks: number;
  count: number;
  sumEnc: Float64Array;
  sqEnc: Float64Array;
  sumDec: Float64Array;
  sqDec: Float64Array;
  /** Per (layer, head, position): sum over tasks of the within-task variance summed over channels. */
  withinEnc: Float64Array;
  withinDec: Float64Array;
}

export interface Taskness {
  /** Layers 0..encDepth-1 are the encoder, then the decoder; positions are one-shot positions. */
  perHead: { layer: number; head: number; rho: number }[];
  /** [layer][head][position] for the encoder (148 positions) and decoder (197). */
  perPositionEnc: number[][][];
  perPositionDec: number[][][];
  tasks: number;
  prompts: number;
}

export function newTasknessAccumulator(c: ModelConfig): TasknessAccumulator {
  const ne = c.encDepth * ONE_SHOT_ENC_TOKENS * c.encDim;
  const nd = c.decDepth * ONE_SHOT_DEC_TOKENS * c.decDim;
  return {
    config: c,
    tasks: 0,
    count: 0,
    sumEnc: new Float64Array(ne),
    sqEnc: new Float64Array(ne),
    sumDec: new Float64Array(nd),
    sqDec: new Float64Array(nd),
    withinEnc: new Float64Array(c.encDepth * c.encHeads * ONE_SHOT_ENC_TOKENS),
    withinDec: new Float64Array(c.decDepth * c.decHeads * ONE_SHOT_DEC_TOKENS),
  };
}

/** Sum over each head's channels of the population variance, per (layer, head, position). */
function varianceByHead(n: number, sum: Float64Array, sq: Float64Array, depth: number, tokens: number, heads: number, dim: number, into: Float64Array): void {
  const hd = dim / heads;
  for (let l = 0; l < depth; l++)
    for (let p = 0; p < tokens; p++)
      for (let h = 0; h < heads; h++) {
        let v = 0;
        const base = (l * tokens + p) * dim + h * hd;
        for (let j = 0; j < hd; j++) {
          const m = sum[base + j]! / n;
          v += Math.max(0, sq[base + j]! / n - m * m);
        }
        into[(l * heads + h) * tokens + p]! += v;
      }
}

/** Adds one task: its prompt count and per-element sums and sums of squares of the head outputs. */
export function tasknessAddTask(
  acc: TasknessAccumulator,
  n: number,
  sumEnc: Float64Array,
  sqEnc: Float64Array,
  sumDec: Float64Array,
  sqDec: Float64Array,
): void {
  const c = acc.config;
  varianceByHead(n, sumEnc, sqEnc, c.encDepth, ONE_SHOT_ENC_TOKENS, c.encHeads, c.encDim, acc.withinEnc);
  varianceByHead(n, sumDec, sqDec, c.decDepth, ONE_SHOT_DEC_TOKENS, c.decHeads, c.decDim, acc.withinDec);
  for (let i = 0; i < sumEnc.length; i++) (acc.sumEnc[i]! += sumEnc[i]!), (acc.sqEnc[i]! += sqEnc[i]!);
  for (let i = 0; i < sumDec.length; i++) (acc.sumDec[i]! += sumDec[i]!), (acc.sqDec[i]! += sqDec[i]!);
  acc.tasks += 1;
  acc.count += n;
}

export function tasknessScores(acc: TasknessAccumulator): Taskness {
  const c = acc.config;
  const allEnc = new Float64Array(acc.withinEnc.length);
  const allDec = new Float64Array(acc.withinDec.length);
  varianceByHead(acc.count, acc.sumEnc, acc.sqEnc, c.encDepth, ONE_SHOT_ENC_TOKENS, c.encHeads, c.encDim, allEnc);
  varianceByHead(acc.count, acc.sumDec, acc.sqDec, c.decDepth, ONE_SHOT_DEC_TOKENS, c.decHeads, c.decDim, allDec);
  const n = acc.tasks;
  const ratio = (a: number, w: number) => (w > 0 ? a / (n * w) : a > 0 ? Number.POSITIVE_INFINITY : 0);
  const perHead: Taskness['perHead'] = [];
  const per = (all: Float64Array, within: Float64Array, depth: number, heads: number, tokens: number, layer0: number) => {
    const grid: number[][][] = [];
    for (let l = 0; l < depth; l++) {
      const rows: number[][] = [];
      for (let h = 0; h < heads; h++) {
        let a = 0;
        let w = 0;
        const row: number[] = [];
        for (let p = 0; p < tokens; p++) {
          const i = (l * heads + h) * tokens + p;
          a += all[i]!;
          w += within[i]!;
          row.push(ratio(all[i]!, within[i]!));
        }
        rows.push(row);
        perHead.push({ layer: layer0 + l, head: h, rho: ratio(a, w) });
      }
      grid.push(rows);
    }
    return grid;
  };
  const perPositionEnc = per(allEnc, acc.withinEnc, c.encDepth, c.encHeads, ONE_SHOT_ENC_TOKENS, 0);
  const perPositionDec = per(allDec, acc.withinDec, c.decDepth, c.decHeads, ONE_SHOT_DEC_TOKENS, c.encDepth);
  return { perHead, perPositionEnc, perPositionDec, tasks: n, prompts: acc.count };
}
