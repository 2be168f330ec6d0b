// A task of the user's own, given by example pairs (src/data/pairs.ts), as a run records it: the pairs,
// a seeded train/validation split, the metric (IoU when the outputs are binary masks, else MSE, or
// chosen), the one-shot prompts kept, the task means and the taskness. `vtv search` and `vtv eval`
// find it by name in the run and build its canvases from the pairs, as they do from a dataset for the
// built-in tasks.
//
// Collection follows collect.ts: every ordered (query, support) pair of distinct training pairs (up to
// `episodes`, a seeded sample) is scored as a one-shot prompt, the best `keep` are kept with each query
// and each support used once, and their head outputs are averaged. Taskness needs more than one task;
// the new task is contrasted with the identity copy of the same prompts' inputs ([s.in, s.in, q.in,
// q.in]), the neutral task the built-in collection also records.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildCanvas } from '../data/canvas.js';
import type { TaskCanvas } from '../data/episode-canvas.js';
import {
  findPairs,
  loadPairs,
  outputsAreMasks,
  PAIRS_MANIFEST,
  type PairEpisode,
  type PairFiles,
  type PreparedPair,
  pairCanvas,
  pairEpisodes,
  splitPairs,
} from '../data/pairs.js';
import { Rng } from '../data/rng.js';
import type { MetricName } from '../data/tasks/index.js';
import { getTask, TASK_IDS } from '../data/tasks/index.js';
import { CANVAS_FLOATS } from '../engine.js';
import { InputError, UsageError } from '../errors.js';
import { writeJsonAtomic } from '../run/atomic-file.js';
import { MULTITASK, type RunPaths } from '../run/layout.js';
import type { TaskMeansEntry } from '../run/means-file.js';
import { meansOf, recordActivations, selectPrompts } from './collect.js';
import type { EpisodeSource } from './evaluate.js';
import type { ForwardEngine } from './forward-engine.js';
import type { CanvasSet } from './reinforce.js';
import { newTasknessAccumulator, type Taskness, tasknessAddTask, tasknessScores } from './taskness.js';

export interface PairsTaskFile {
  format: 'vtv-pairs-task';
  version: 1;
  name: string;
  /** The folder the pairs came from (absolute). */
  dir: string;
  layout: 'folders' | 'manifest';
  metric: MetricName;
  /** 'detected': IoU because every output is a 0/255 grey mask, else MSE; 'chosen': --metric. */
  metricFrom: 'detected' | 'chosen';
  seed: number;
  valFraction: number;
  pairs: PairFiles[];
  train: string[];
  val: string[];
  /** One-shot prompts scored. */
  scored: number;
  /** The kept prompts, best first; prompts[0] is the run's best example. */
  prompts: { query: string; support: string; metric: number }[];
}

export interface PairsCollectOptions {
  /** Most (query, support) candidates scored (a seeded sample of all ordered pairs of training pairs). */
  episodes: number;
  keep: number;
  seed: number;
  valFraction: number;
  batch: number;
  /** Default: detected from the outputs. */
  metric?: MetricName;
}

export const PAIRS_COLLECT: PairsCollectOptions = { episodes: 1000, keep: 100, seed: 15, valFraction: 0.2, batch: 16 };

/** A user task's name: letters, digits, '_' and '-', not a built-in task's id. */
export function checkPairsTaskName(name: string | undefined): string {
  if (!name) throw new UsageError('--pairs needs --task-name <name> for the new task');
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(name))
    throw new UsageError(`task name '${name}' may hold only letters, digits, '_' and '-' (and start with a letter or digit)`);
  if ((TASK_IDS as readonly string[]).includes(name) || name === MULTITASK)
    throw new UsageError(`task name '${name}' is taken by a built-in task: choose another`);
  return name;
}

export interface PairsCollectProgress {
  phase: 'score' | 'record';
  done: number;
  total: number;
}

export interface PairsCollectResult {
  file: PairsTaskFile;
  means: TaskMeansEntry;
  taskness: Taskness;
}

const concat = (list: Float32Array[]) => {
  const out = new Float32Array(list.length * CANVAS_FLOATS);
  list.forEach((c, i) => out.set(c, i * CANVAS_FLOATS));
  return out;
};

export async function collectPairsTask(
  engine: ForwardEngine,
  name: string,
  dir: string,
  opt: PairsCollectOptions,
  onProgress?: (p: PairsCollectProgress) => void,
): Promise<PairsCollectResult> {
  checkPairsTaskName(name);
  if (!Number.isInteger(opt.keep) || opt.keep < 1) throw new UsageError(`collect: --keep must be a positive integer, got ${opt.keep}`);
  if (!Number.isInteger(opt.episodes) || opt.episodes < 1) throw new UsageError(`collect: --episodes-per-fold must be a positive integer, got ${opt.episodes}`);
  if (opt.metric !== undefined && opt.metric !== 'iou' && opt.metric !== 'mse') throw new UsageError(`--metric must be iou or mse, got '${opt.metric}'`);
  const root = resolve(dir);
  const files = findPairs(root);
  const layout = existsSync(join(root, PAIRS_MANIFEST)) ? 'manifest' : 'folders';
  const split = splitPairs(
    files.map((p) => p.id),
    opt.seed,
    opt.valFraction,
  );
  const pairs = new Map(loadPairs(files).map((p) => [p.id, p]));
  const metric: MetricName = opt.metric ?? (outputsAreMasks(files.map((p) => p.output)) ? 'iou' : 'mse');

  // Every ordered (query, support) pair of distinct training pairs, a seeded sample if there are more.
  let cands: { queryId: string; supportId: string }[] = [];
  for (const q of split.train) for (const s of split.train) if (q !== s) cands.push({ queryId: q, supportId: s });
  if (cands.length > opt.episodes) cands = Rng.fromSeed(opt.seed).fork('pairs-candidates').shuffle(cands).slice(0, opt.episodes);
  const scored: { queryId: string; supportId: string; metric: number }[] = [];
  for (let off = 0; off < cands.length; off += opt.batch) {
    const chunk = cands.slice(off, off + opt.batch);
    const res = await engine.forward({
      mode: 'one-shot',
      canvases: concat(chunk.map((c) => pairCanvas(pairs.get(c.supportId)!, pairs.get(c.queryId)!).canvas)),
      loss: metric,
    });
    chunk.forEach((c, i) => scored.push({ ...c, metric: res.metrics![i]! }));
    onProgress?.({ phase: 'score', done: scored.length, total: cands.length });
  }
  const kept = selectPrompts({ metric }, scored, opt.keep, false);
  if (kept.length === 0) throw new InputError(`collect: no usable prompt for task '${name}' (every one-shot score was NaN)`);

  let recorded = 0;
  const total = 2 * kept.length;
  const step = () => onProgress?.({ phase: 'record', done: ++recorded, total });
  const sums = await recordActivations(
    engine,
    kept.map((p) => pairCanvas(pairs.get(p.supportId)!, pairs.get(p.queryId)!).canvas),
    step,
  );
  const identity = await recordActivations(
    engine,
    kept.map((p) => {
      const s = pairs.get(p.supportId)!.inputCell;
      const q = pairs.get(p.queryId)!.inputCell;
      return buildCanvas([s, s, q, q]);
    }),
    step,
  );
  const acc = newTasknessAccumulator(engine.config);
  for (const x of [sums, identity]) tasknessAddTask(acc, x.n, x.sumEnc, x.sqEnc, x.sumDec, x.sqDec);

  const file: PairsTaskFile = {
    format: 'vtv-pairs-task',
    version: 1,
    name,
    dir: root,
    layout,
    metric,
    metricFrom: opt.metric ? 'chosen' : 'detected',
    seed: opt.seed,
    valFraction: opt.valFraction,
    pairs: files,
    train: split.train,
    val: split.val,
    scored: scored.length,
    prompts: kept.map((p) => ({ query: p.queryId, support: p.supportId, metric: p.metric })),
  };
  return { file, means: { means: meansOf(sums), count: sums.n }, taskness: tasknessScores(acc) };
}

export const writePairsTaskFile = (path: string, f: PairsTaskFile) => writeJsonAtomic(path, f);

/** A recorded pairs task with its images, read again from the pairs' files. */
export class PairsTask {
  private prepared?: Map<string, PreparedPair>;

  constructor(
    readonly file: PairsTaskFile,
    readonly path: string,
  ) {}

  static read(path: string): PairsTask {
    if (!existsSync(path)) throw new InputError(`${path} does not exist: record the task with \`vtv collect --pairs DIR --task-name <name>\``);
    const f = JSON.parse(readFileSync(path, 'utf8')) as PairsTaskFile;
    if (f.format !== 'vtv-pairs-task' || f.version !== 1) throw new InputError(`${path} is not a vtv pairs task (version 1)`);
    return new PairsTask(f, path);
  }

  get name(): string {
    return this.file.name;
  }

  get metric(): MetricName {
    return this.file.metric;
  }

  pair(id: string): PreparedPair {
    if (!this.prepared) this.prepared = new Map(loadPairs(this.file.pairs).map((p) => [p.id, p]));
    const p = this.prepared.get(id);
    if (!p) throw new InputError(`${this.path}: no pair '${id}'`);
    return p;
  }

  /** The best kept prompt's example pair. */
  bestExample(): PreparedPair {
    return this.pair(this.file.prompts[0]!.support);
  }

  /** Episodes whose queries come from a split (in split order) and whose examples are training pairs. */
  episodes(split: 'train' | 'val', seed: number, count: number, start = 0): PairEpisode[] {
    const queries = split === 'train' ? this.file.train : this.file.val;
    return pairEpisodes(queries, this.file.train, `${this.name}/${split}`, seed, count, start);
  }

  canvas(e: PairEpisode): TaskCanvas {
    return pairCanvas(this.pair(e.supportId), this.pair(e.queryId));
  }

  /** Canvases of episodes [start, start+count) of a split, for the search. */
  canvasSet(split: 'train' | 'val', seed: number, start: number, count: number): CanvasSet {
    const eps = this.episodes(split, seed, count, start);
    return { canvases: concat(eps.map((e) => this.canvas(e).canvas)), count: eps.length };
  }

  /** The validation split as eval's episodes: each validation pair once (at most `count`), with a seeded training example. */
  evalSource(): EpisodeSource {
    return {
      metric: this.metric,
      folds: [0],
      episodes: (_fold, seed, count) =>
        this.episodes('val', seed, Math.min(count, this.file.val.length)).map((e) => ({ index: e.index, build: () => this.canvas(e) })),
    };
  }
}

/**
 * A task name as a run knows it: a built-in task id (or reference index) or a task recorded from pairs
 * in this run (tasks/<name>/task.json). An unknown name lists both kinds.
 */
export function resolveRunTask(paths: Pick<RunPaths, 'pairsTask' | 'root'>, name: string): { id: string; metric: MetricName; pairs?: PairsTask } {
  if (existsSync(paths.pairsTask(name))) {
    const pairs = PairsTask.read(paths.pairsTask(name));
    return { id: name, metric: pairs.metric, pairs };
  }
  try {
    const t = getTask(name);
    return { id: t.id, metric: t.metric };
  } catch (e) {
    const tasksDir = join(paths.root, 'tasks');
    const own = existsSync(tasksDir) ? readdirSync(tasksDir).filter((d) => existsSync(paths.pairsTask(d))) : [];
    throw new InputError(`${(e as Error).message}${own.length ? `; tasks of this run from pairs: ${own.join(', ')}` : ''}`);
  }
}
