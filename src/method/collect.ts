// `vtv collect` (docs/method.md#collection): score one-shot prompts over training episodes for every task, keep the best
// K (query, support) prompts per task, and record per-task means of the pre-projection head outputs
// over those prompts; also the per-(layer, head) taskness score.
//
// Variance for taskness: the engine's capture gives sums over a batch, so each kept prompt is run as
// its own capture call (batch 1) and the per-sample activations are accumulated here in float64 as
// sums and sums of squares. That is exact, costs K small forwards per task (the collection is a few
// hundred forwards against the filter's thousands) and keeps at most two float64 tables per task live.
import type { Episode, EpisodeRef, SegmentationDataset } from '../data/dataset.js';
import { buildTaskCanvas, buildTaskCanvases } from '../data/episode-canvas.js';
import { Rng } from '../data/rng.js';
import { getTask, type Task } from '../data/tasks/index.js';
import { CANVAS_FLOATS, type TaskMeans } from '../engine.js';
import { InputError } from '../errors.js';
import type { TaskMeansEntry } from '../run/means-file.js';
import type { ForwardEngine } from './forward-engine.js';
import { newTasknessAccumulator, type Taskness, type TasknessAccumulator, tasknessAddTask, tasknessScores } from './taskness.js';

export interface CollectOptions {
  tasks: string[]; // reference: the 5 tasks 0..4
  folds: number[]; // trn folds the candidate episodes come from; reference [1, 2, 3]
  episodesPerFold: number; // reference 1000
  keep: number; // reference 100
  seed: number; // reference np seed 15
  /** Reproduce the reference's filtering (docs/method.md#quirks): dedupe keeps the worst score, recorded supports are re-drawn, class from any fold. */
  referenceQuirks: boolean;
  batch: number; // episodes per engine call while scoring
}

export const REFERENCE_COLLECT: CollectOptions = {
  tasks: ['segmentation', 'lowlight_enhance', 'identity', 'inpaint', 'colorization'],
  folds: [1, 2, 3],
  episodesPerFold: 1000,
  keep: 100,
  seed: 15,
  referenceQuirks: false,
  batch: 16,
};

export interface ScoredPrompt {
  fold: number;
  ref: EpisodeRef;
  queryId: string;
  supportId: string;
  classId: number;
  metric: number;
}

export interface CollectResult {
  means: Map<string, TaskMeansEntry>;
  kept: Map<string, ScoredPrompt[]>;
  scored: number;
  taskness: Taskness;
}

export interface CollectProgress {
  phase: 'score' | 'record';
  done: number;
  total: number;
}

const better = (t: Pick<Task, 'metric'>) => (a: Pick<ScoredPrompt, 'metric'>, b: Pick<ScoredPrompt, 'metric'>) =>
  t.metric === 'iou' ? b.metric - a.metric : a.metric - b.metric;

/**
 * Ranks and filters candidates. Corrected: best first, each support image and each query image used
 * at most once (keeping its best prompt). Reference (docs/method.md#quirks): sort ascending and dedupe keeping the
 * smaller metric (the worst IoU), then rank.
 */
export function selectPrompts<P extends Pick<ScoredPrompt, 'queryId' | 'supportId' | 'metric'>>(
  task: Pick<Task, 'metric'>,
  candidates: P[],
  keep: number,
  referenceQuirks: boolean,
): P[] {
  const dedupe = (list: P[], key: (p: P) => string) => {
    const seen = new Set<string>();
    return list.filter((p) => (seen.has(key(p)) ? false : (seen.add(key(p)), true)));
  };
  const finite = candidates.filter((c) => Number.isFinite(c.metric));
  let list = referenceQuirks ? [...finite].sort((a, b) => a.metric - b.metric) : [...finite].sort(better(task));
  list = dedupe(list, (p) => p.supportId);
  list = dedupe(list, (p) => p.queryId);
  return list.sort(better(task)).slice(0, keep);
}

function concatCanvases(list: Float32Array[]): Float32Array {
  const out = new Float32Array(list.length * CANVAS_FLOATS);
  list.forEach((c, i) => out.set(c, i * CANVAS_FLOATS));
  return out;
}

/** Re-draws a same-class support for the record, as the reference's second ds[idx] call does. */
function quirkSupport(ds: SegmentationDataset, fold: number, p: ScoredPrompt, seed: number): string {
  const same = ds.entries({ split: 'trn', fold }).filter((e) => e.classId === p.classId && e.id !== p.queryId);
  return same.length ? Rng.fromSeed(seed).fork(`quirk-support/${fold}/${p.ref.index}`).pick(same).id : p.supportId;
}

export async function collectTaskVectors(
  engine: ForwardEngine,
  ds: SegmentationDataset,
  opt: CollectOptions,
  onProgress?: (p: CollectProgress) => void,
): Promise<CollectResult> {
  const tasks = opt.tasks.map((t) => getTask(t));
  if (tasks.length === 0) throw new InputError('collect: no tasks given');
  for (const f of opt.folds) {
    if (!Number.isInteger(f) || f < 0 || f >= ds.folds) throw new InputError(`collect: fold ${f} does not exist in dataset '${ds.name}' (0..${ds.folds - 1})`);
  }
  const candidates = new Map<string, ScoredPrompt[]>(tasks.map((t) => [t.id, []]));
  const total = opt.folds.length * opt.episodesPerFold;
  let done = 0;
  for (const fold of opt.folds) {
    const spec = { split: 'trn' as const, fold };
    if (ds.entries(spec).length === 0) throw new InputError(`collect: ${ds.name} trn fold ${fold} is empty`);
    const refs = ds.episodeRefs(spec, opt.seed, opt.episodesPerFold);
    for (let off = 0; off < refs.length; off += opt.batch) {
      const chunk = refs.slice(off, off + opt.batch);
      const eps: Episode[] = chunk.map((r) => ds.loadEpisode(r));
      const perEpisode = eps.map((ep) => buildTaskCanvases(tasks, ep));
      for (let t = 0; t < tasks.length; t++) {
        const res = await engine.forward({
          mode: 'one-shot',
          canvases: concatCanvases(perEpisode.map((c) => c[t]!.canvas)),
          loss: tasks[t]!.metric,
        });
        chunk.forEach((ref, i) => {
          candidates.get(tasks[t]!.id)!.push({ fold, ref, queryId: ref.queryId, supportId: ref.supportId, classId: ref.classId, metric: res.metrics![i]! });
        });
      }
      done += chunk.length;
      onProgress?.({ phase: 'score', done, total });
    }
  }
  if (done === 0) throw new InputError('collect: no episodes to score (empty dataset or --episodes 0)');

  // Reference quirk: the class of an image is looked up over all trn folds, the last match winning.
  const classOf = new Map<string, number>();
  if (opt.referenceQuirks) for (let f = 0; f < ds.folds; f++) for (const e of ds.entries({ split: 'trn', fold: f })) classOf.set(e.id, e.classId);

  const kept = new Map<string, ScoredPrompt[]>();
  const means = new Map<string, TaskMeansEntry>();
  const c = engine.config;
  const acc: TasknessAccumulator = newTasknessAccumulator(c);
  const recordTotal = tasks.reduce((a, t) => a + Math.min(opt.keep, candidates.get(t.id)!.length), 0);
  let recorded = 0;
  for (const task of tasks) {
    let sel = selectPrompts(task, candidates.get(task.id)!, opt.keep, opt.referenceQuirks);
    if (opt.referenceQuirks) {
      sel = sel.map((p) => ({ ...p, supportId: quirkSupport(ds, p.fold, p, opt.seed), classId: classOf.get(p.queryId) ?? p.classId }));
    }
    if (sel.length === 0) throw new InputError(`collect: no usable prompt for task '${task.id}'`);
    kept.set(task.id, sel);
    // The recorded prompt is the (query, support) pair kept, with the episode's own task randomness;
    // canvases are built one at a time, so memory stays flat.
    const canvases = (function* () {
      for (const p of sel) yield buildTaskCanvas(task, ds.loadEpisode({ ...p.ref, supportId: p.supportId, classId: p.classId })).canvas;
    })();
    const sums = await recordActivations(engine, canvases, () => onProgress?.({ phase: 'record', done: ++recorded, total: recordTotal }));
    means.set(task.id, { means: meansOf(sums), count: sums.n });
    tasknessAddTask(acc, sums.n, sums.sumEnc, sums.sqEnc, sums.sumDec, sums.sqDec);
  }
  return { means, kept, scored: done, taskness: tasknessScores(acc) };
}

/** Per-element sums and sums of squares of the head outputs over some one-shot prompts. */
export interface ActivationSums {
  n: number;
  sumEnc: Float64Array;
  sqEnc: Float64Array;
  sumDec: Float64Array;
  sqDec: Float64Array;
}

/** Runs each canvas as its own one-shot capture call and accumulates the sums (see the header). */
export async function recordActivations(engine: ForwardEngine, canvases: Iterable<Float32Array>, onEach?: () => void): Promise<ActivationSums> {
  const c = engine.config;
  const s: ActivationSums = {
    n: 0,
    sumEnc: new Float64Array(c.encDepth * 148 * c.encDim),
    sqEnc: new Float64Array(c.encDepth * 148 * c.encDim),
    sumDec: new Float64Array(c.decDepth * 197 * c.decDim),
    sqDec: new Float64Array(c.decDepth * 197 * c.decDim),
  };
  for (const canvas of canvases) {
    const r = await engine.forward({ mode: 'one-shot', canvases: canvas, capture: true });
    accumulate(r.captureEnc!, s.sumEnc, s.sqEnc);
    accumulate(r.captureDec!, s.sumDec, s.sqDec);
    s.n++;
    onEach?.();
  }
  return s;
}

/** The task means (float32) of recorded sums. */
export function meansOf(s: ActivationSums): TaskMeans {
  return { enc: Float32Array.from(s.sumEnc, (x) => x / s.n), dec: Float32Array.from(s.sumDec, (x) => x / s.n) };
}

function accumulate(x: Float32Array, sum: Float64Array, sq: Float64Array): void {
  if (x.length !== sum.length) throw new Error(`collect: capture has ${x.length} floats, expected ${sum.length}`);
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    sum[i]! += v;
    sq[i]! += v * v;
  }
}
