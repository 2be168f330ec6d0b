// `vtv demo`: the whole method end to end on the bundled data, on a CPU in about two minutes:
// collect -> search -> eval -> report, then print the comparison table and where everything is.
//
// By default it runs the small model trained by train/ and shipped in models/ (docs/model-card-mini.md),
// so the table shows the method working: one-shot above zero-shot, the searched task vector closing
// most of that gap, a random subset of the same size not. `--random-tiny` runs the random tiny model
// instead (the pipeline only; its numbers mean nothing).
//
// Budget (why these numbers): a mini forward with decode costs ~25-40 ms on 2 cores, so two minutes
// afford ~3,000 decodes:
//   collect  3 trn folds x 8 episodes x 5 tasks scored, best 8 kept per task (capture only)
//   search   segmentation at granularity 1 (every head, CLS/query/output slots), DEMO_BUDGET.search
//            steps x samples over 10 canvases (the reference is 500 x 320; the demo says so)
//   eval     4 val folds x DEMO_BUDGET.eval.episodes episodes x 4 conditions, 2 example episodes per fold as PNGs
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Command } from 'commander';
import { preset } from '../config.js';
import type { EvalResults } from '../method/evaluate.js';
import { runPaths } from '../method/run_layout.js';
import { writeRandomWeights } from '../model/random_weights.js';
import { SHIPPED_MODEL, shippedModelPath } from '../model/shipped_model.js';
import { writeReport } from '../report/report.js';
import { collectCommand } from './collect.js';
import { type Deps, defaultDeps, parseIntArg, UsageError } from './common.js';
import { evalCommand } from './eval.js';
import { threadsOption } from './run_options.js';
import { searchCommand } from './search.js';

export const DEMO_BUDGET = {
  collect: { tasks: ['segmentation', 'lowlight_enhance', 'identity', 'inpaint', 'colorization'], folds: [1, 2, 3], episodesPerFold: 8, keep: 8 },
  search: {
    tasks: ['segmentation'],
    steps: 30,
    samplesPerStep: 48,
    trainImages: 10,
    valImages: 4,
    validateEvery: 10,
    checkpointEvery: 10,
    snapshotEvery: 5,
    lr: 0.2,
    granularity: 1,
    select: 'last' as const,
    finalSubset: 'threshold' as const,
  },
  eval: { episodes: 12, examples: 2 },
};

export interface DemoOptions {
  run?: string;
  force?: boolean;
  threads?: number;
  seed?: number;
  /** Multiplies the search steps (tests use a smaller demo). */
  scale?: number;
  /** The random tiny model instead of the shipped trained one. */
  randomTiny?: boolean;
}

export async function demoCommand(o: DemoOptions, deps: Deps = defaultDeps): Promise<string> {
  const t0 = performance.now();
  const run = o.run ?? join('runs', 'demo');
  const paths = runPaths(run);
  if (existsSync(paths.config) && !o.force)
    throw new UsageError(`${run} already holds a run: pass --force to redo the demo there (its files are replaced), or --run <dir>`);
  let model: string;
  let weights: string;
  if (o.randomTiny) {
    model = 'tiny';
    weights = paths.weights;
    if (!existsSync(paths.weights) || o.force) {
      mkdirSync(paths.root, { recursive: true });
      writeRandomWeights(paths.weights, preset('tiny'), o.seed ?? 0);
      deps.log(`demo: random tiny weights -> ${paths.weights}`);
    }
  } else {
    model = SHIPPED_MODEL.preset;
    weights = shippedModelPath();
    deps.log(`demo: the shipped small model (${SHIPPED_MODEL.preset}, trained by train/) -> ${weights}`);
  }
  const common = { run, model, weights: [weights], dataset: 'bundled' as const, threads: o.threads ?? 0 };
  const lap = (what: string) => deps.log(`demo: ${what} done (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  await collectCommand({ ...common, ...DEMO_BUDGET.collect, force: true }, deps);
  lap('collect');
  const s = DEMO_BUDGET.search;
  const steps = Math.max(1, Math.round(s.steps * (o.scale ?? 1)));
  deps.log(
    `demo: searching segmentation with a small budget (${steps} steps x ${s.samplesPerStep} samples; the reference runs 500 x 320), ` +
      `learning rate ${s.lr}, final subset p > 0.5`,
  );
  await searchCommand({ ...common, ...s, steps, force: true, seed: o.seed ?? 0 }, deps);
  lap('search');
  await evalCommand({ ...common, tasks: s.tasks, ...DEMO_BUDGET.eval, force: true }, deps);
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
      `  ${rel(paths.examples('segmentation'))}/   example images`,
      `  ${rel(paths.searchLog('segmentation'))}   the search, one JSON line per step`,
      `  ${rel(paths.subset('segmentation'))}   the chosen heads`,
      `  ${rel(paths.means)}, ${rel(paths.taskness)}`,
      o.randomTiny
        ? 'The weights are random: the numbers show the pipeline works, not what the method achieves.'
        : `The model is vtv's small trained MAE-VQGAN (docs/model-card-mini.md); the search budget is a demo's, far below the reference's.`,
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
    .option('--random-tiny', 'use random tiny weights instead of the shipped model (the pipeline only)', false)
    .action(async (opts: DemoOptions) => {
      await demoCommand(opts, deps);
    });
}
