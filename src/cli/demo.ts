// `vtv demo`: the whole method end to end on the bundled data, on a CPU in about a minute:
// collect -> search -> eval -> report, then print the comparison table and where everything is.
//
// By default the model is the small MAE-VQGAN the package ships (models/mae-vqgan-mini.safetensors,
// trained by train/, docs/model-card-mini.md), and the demo searches two tasks on it. `--random` runs the
// tiny preset with random weights instead (the pipeline works, the numbers mean nothing); `--weights`
// runs any other trained model.
//
// Budget (why these numbers): the tiny model's cost is its VQGAN decode at 224x224 (~22 ms per decoded
// sample on 2 cores; the MAE part is ~2-9 ms), so a minute affords ~2,500 decodes (less on a busy machine):
//   collect  3 trn folds x 8 episodes x 5 tasks scored (120 decodes), best 8 kept per task (capture only)
//   search   per task, 24 steps x 48 samples (lr 0.2, last step thresholded) over 10 canvases (<= 1,152 decodes, fewer as samples
//            repeat), validation on 16 canvases every 6 steps; the reference is 500 steps x 320 samples.
//            Segmentation gets 60 steps: on the shipped model its subset is larger and slower to
//            emerge (24 steps closed about a third of its gap, 60 more than half).
//            The shipped model decodes faster than the tiny one (its VQGAN is narrower at full size),
//            which pays for its second task.
//   eval     4 val folds x 8 episodes x 4 conditions (128 decodes), 2 example episodes per fold as PNGs
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { Command } from 'commander';
import { preset } from '../config.js';
import type { EvalResults } from '../method/evaluate.js';
import { writeRandomWeights } from '../model/random-weights.js';
import { findShippedModel, SHIPPED_MODEL } from '../model/shipped.js';
import { writeReport } from '../report/report.js';
import { runPaths } from '../run/layout.js';
import { collectCommand } from './collect.js';
import { configFromWeights, type Deps, defaultDeps, parseIntArg, UsageError } from './common.js';
import { evalCommand } from './eval.js';
import { threadsOption } from './run-options.js';
import { searchCommand } from './search.js';

export const DEMO_BUDGET = {
  collect: { tasks: ['segmentation', 'lowlight_enhance', 'identity', 'inpaint', 'colorization'], folds: [1, 2, 3], episodesPerFold: 8, keep: 8 },
  // lr 0.2 and the last step's probabilities thresholded at 0.5 (the reference: lr 0.1, one Bernoulli draw
  // at the best validation step): over 24 steps that finds the shipped model's low-light vector on every
  // seed tried, where the reference's rule sometimes drew a weaker subset.
  search: {
    steps: 24,
    /** Tasks whose search needs more steps than `steps` on a trained model. */
    stepsPerTask: { segmentation: 60 } as Record<string, number>,
    samplesPerStep: 48,
    trainImages: 10,
    valImages: 16,
    validateEvery: 6,
    checkpointEvery: 6,
    snapshotEvery: 6,
    lr: 0.2,
    select: 'last' as const,
    finalSubset: 'threshold' as const,
  },
  eval: { episodes: 8, examples: 2 },
};

export interface DemoOptions {
  run?: string;
  force?: boolean;
  threads?: number;
  seed?: number;
  /** Multiplies the search steps (tests use a smaller demo). */
  scale?: number;
  /** A trained model to run instead of the shipped one (e.g. one made by train/), and its preset. */
  weights?: string;
  model?: string;
  /** Random tiny weights instead of a trained model (what the unit tests run). */
  random?: boolean;
  /** Tasks to search (default: segmentation and low-light enhancement on a trained model, segmentation on random weights). */
  tasks?: string[];
}

/** The tasks the demo searches on a trained model: the shipped model's task vectors work for these two. */
export const DEMO_TASKS_TRAINED = ['segmentation', 'lowlight_enhance'];

export async function demoCommand(o: DemoOptions, deps: Deps = defaultDeps): Promise<string> {
  const t0 = performance.now();
  const run = o.run ?? join('runs', 'demo');
  const paths = runPaths(run);
  if (existsSync(paths.config) && !o.force)
    throw new UsageError(`${run} already holds a run: pass --force to redo the demo there (its files are replaced), or --run <dir>`);
  // --force starts the demo's run afresh, so a run made with another model (the random tiny one, say)
  // does not stand in the way. Only a directory holding a vtv run is removed.
  if (existsSync(paths.config) && o.force) rmSync(paths.root, { recursive: true, force: true });
  let model: string;
  let weights: string;
  let trained = true;
  const shipped = o.weights || o.random ? undefined : findShippedModel();
  if (o.weights && o.random) throw new UsageError('--weights and --random: pick one');
  if (o.weights) {
    if (!existsSync(o.weights)) throw new UsageError(`--weights ${o.weights}: no such file`);
    weights = resolve(o.weights);
    model = o.model ?? configFromWeights([weights])?.name ?? 'tiny';
    deps.log(`demo: model '${model}' from ${weights}`);
  } else if (shipped) {
    weights = shipped;
    model = SHIPPED_MODEL;
    deps.log(`demo: the shipped small model '${model}' (${relative(process.cwd(), shipped) || shipped}; docs/model-card-mini.md)`);
  } else {
    if (!o.random) deps.log('demo: this install has no shipped model (models/); running random tiny weights');
    trained = false;
    model = 'tiny';
    weights = paths.weights;
    if (!existsSync(paths.weights) || o.force) {
      mkdirSync(paths.root, { recursive: true });
      writeRandomWeights(paths.weights, preset('tiny'), o.seed ?? 0);
      deps.log(`demo: random tiny weights -> ${paths.weights}`);
    }
  }
  const tasks = o.tasks ?? (trained ? DEMO_TASKS_TRAINED : ['segmentation']);
  const common = { run, model, weights: [weights], dataset: 'bundled' as const, threads: o.threads ?? 0 };
  const lap = (what: string) => deps.log(`demo: ${what} done (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  await collectCommand({ ...common, ...DEMO_BUDGET.collect, force: true }, deps);
  lap('collect');
  const { stepsPerTask, ...s } = DEMO_BUDGET.search;
  for (const task of tasks) {
    const base = trained ? (stepsPerTask[task] ?? s.steps) : s.steps; // random weights: nothing to find
    const steps = Math.max(1, Math.round(base * (o.scale ?? 1)));
    deps.log(`demo: searching ${task} with a small budget (${steps} steps x ${s.samplesPerStep} samples; the reference runs 500 x 320)`);
    await searchCommand({ ...common, ...s, tasks: [task], steps, force: true, seed: o.seed ?? 0 }, deps);
    lap(`search ${task}`);
  }
  await evalCommand({ ...common, tasks, ...DEMO_BUDGET.eval, force: true }, deps);
  lap('eval');
  const report = writeReport(paths.root);
  lap('report');
  const rel = (p: string) => {
    const r = relative(process.cwd(), p);
    return r.startsWith('..') ? p : r || '.';
  };
  const results = JSON.parse(readFileSync(paths.evalJson, 'utf8')) as EvalResults;
  deps.log(
    [
      '',
      ...results.summary.map((r) => gapLine(r)),
      '',
      `demo finished in ${((performance.now() - t0) / 1000).toFixed(1)} s. Results in ${rel(paths.root)}/:`,
      `  ${rel(report.html)}   the HTML report (open it in a browser)`,
      `  ${rel(paths.evalMd)}      the comparison table (one-shot / zero-shot / task vector / random)`,
      `  ${rel(paths.evalJson)}`,
      `  ${rel(paths.examples(tasks[0] as string))}/   example images (one folder per task)`,
      `  ${rel(paths.searchLog(tasks[0] as string))}   the search, one JSON line per step`,
      `  ${rel(paths.subset(tasks[0] as string))}   the chosen heads`,
      `  ${rel(paths.means)}, ${rel(paths.taskness)}`,
      trained
        ? `The search budget is a demo's, far below the reference's (500 steps x 320 samples); the held-out episodes are the bundled data's validation folds.`
        : 'The weights are random: the numbers show the pipeline works, not what the method achieves.',
    ].join('\n'),
  );
  return paths.evalMd;
}

/** One line per task: how much of the one-shot vs zero-shot gap the task vector and the random subset close. */
export function gapLine(r: EvalResults['summary'][number]): string {
  const sign = r.metric === 'iou' ? 1 : -1;
  const gap = sign * (r.oneShot - r.zeroShot);
  const closed = (x: number) => (gap !== 0 ? `${((100 * sign * (x - r.zeroShot)) / gap).toFixed(0)}%` : 'n/a');
  const f = (x: number) => x.toFixed(3);
  const what = `${r.task} (${r.metric === 'iou' ? 'mIoU, higher is better' : 'MSE, lower is better'})`;
  // Without an in-context gap (one-shot no better than zero-shot) there is nothing for a task vector to
  // close, and a percentage of a negative gap would read as the opposite of what happened.
  if (gap <= 0)
    return `${what}: one-shot ${f(r.oneShot)}, zero-shot ${f(r.zeroShot)}: no in-context gap (one-shot is not better), nothing to close; task vector ${f(r.taskVector)}, random subset ${f(r.random)}`;
  return (
    `${r.task} (${r.metric === 'iou' ? 'mIoU, higher is better' : 'MSE, lower is better'}): one-shot ${f(r.oneShot)}, zero-shot ${f(r.zeroShot)}, ` +
    `task vector ${f(r.taskVector)} (closes ${closed(r.taskVector)} of the gap), random subset ${f(r.random)} (closes ${closed(r.random)})`
  );
}

export function demoProgram(deps: Deps = defaultDeps): Command {
  return new Command('demo')
    .description('run collect -> search -> eval -> report end to end on the bundled data with the shipped small model (about two minutes on a CPU)')
    .option('--run <dir>', 'run directory', join('runs', 'demo'))
    .option('--force', 'redo the demo in an existing run directory', false)
    .addOption(threadsOption())
    .option('--seed <n>', 'search seed (and the random tiny weights seed)', parseIntArg('--seed'), 0)
    .option('--weights <file>', 'a trained model (safetensors) instead of the shipped one, e.g. one made by train/')
    .option('--random', 'random tiny weights instead of a trained model (the pipeline only; about a minute)', false)
    .option('--tasks <list>', 'tasks to search (default: segmentation,lowlight_enhance; segmentation with --random)', (v: string) => v.split(','))
    .option('--model <preset>', "the preset of --weights (default: from the file's metadata)")
    .action(async (opts: DemoOptions) => {
      await demoCommand(opts, deps);
    });
}
