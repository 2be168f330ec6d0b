// `vtv demo`: the whole method end to end on the bundled data with random tiny weights, on a CPU in
// about a minute: collect -> search -> eval -> report, then print where everything is.
//
// Budget (why these numbers): the tiny model's cost is its VQGAN decode at 224x224 (~22 ms per decoded
// sample on 2 cores, measured 2026-11-28; the MAE part is ~2-9 ms), so a minute affords ~2,500 decodes (less on a busy machine):
//   collect  3 trn folds x 8 episodes x 5 tasks scored (120 decodes), best 8 kept per task (capture only)
//   search   segmentation, 24 steps x 48 samples over 10 canvases (<= 1,152 decodes, fewer as samples
//            repeat), validation on 16 canvases every 6 steps; the reference is 500 steps x 320 samples
//   eval     4 val folds x 8 episodes x 4 conditions (128 decodes), 2 example episodes per fold as PNGs
import { existsSync, mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Command } from 'commander';
import { preset } from '../config.js';
import { runPaths } from '../method/run_layout.js';
import { writeRandomWeights } from '../model/random_weights.js';
import { writeReport } from '../report/report.js';
import { collectCommand } from './collect.js';
import { type Deps, defaultDeps, parseIntArg, UsageError } from './common.js';
import { evalCommand } from './eval.js';
import { threadsOption } from './run_options.js';
import { searchCommand } from './search.js';

export const DEMO_BUDGET = {
  collect: { tasks: ['segmentation', 'lowlight_enhance', 'identity', 'inpaint', 'colorization'], folds: [1, 2, 3], episodesPerFold: 8, keep: 8 },
  search: { tasks: ['segmentation'], steps: 24, samplesPerStep: 48, trainImages: 10, valImages: 16, validateEvery: 6, checkpointEvery: 6, snapshotEvery: 6 },
  eval: { episodes: 8, examples: 2 },
};

export interface DemoOptions {
  run?: string;
  force?: boolean;
  threads?: number;
  seed?: number;
  /** Multiplies the search steps (tests use a smaller demo). */
  scale?: number;
}

export async function demoCommand(o: DemoOptions, deps: Deps = defaultDeps): Promise<string> {
  const t0 = performance.now();
  const run = o.run ?? join('runs', 'demo');
  const paths = runPaths(run);
  if (existsSync(paths.config) && !o.force)
    throw new UsageError(`${run} already holds a run: pass --force to redo the demo there (its files are replaced), or --run <dir>`);
  const config = preset('tiny');
  if (!existsSync(paths.weights) || o.force) {
    mkdirSync(paths.root, { recursive: true });
    writeRandomWeights(paths.weights, config, o.seed ?? 0);
    deps.log(`demo: random tiny weights -> ${paths.weights}`);
  }
  const common = { run, model: 'tiny', weights: [paths.weights], dataset: 'bundled' as const, threads: o.threads ?? 0 };
  const lap = (what: string) => deps.log(`demo: ${what} done (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  await collectCommand({ ...common, ...DEMO_BUDGET.collect, force: true }, deps);
  lap('collect');
  const s = DEMO_BUDGET.search;
  await searchCommand({ ...common, ...s, steps: Math.max(1, Math.round(s.steps * (o.scale ?? 1))), force: true, seed: o.seed ?? 0 }, deps);
  lap('search');
  await evalCommand({ ...common, tasks: s.tasks, ...DEMO_BUDGET.eval, force: true }, deps);
  lap('eval');
  const report = writeReport(paths.root);
  lap('report');
  const rel = (p: string) => {
    const r = relative(process.cwd(), p);
    return r.startsWith('..') ? p : r || '.';
  };
  deps.log(
    [
      '',
      `demo finished in ${((performance.now() - t0) / 1000).toFixed(1)} s. Results in ${rel(paths.root)}/:`,
      `  ${rel(report.html)}   the HTML report (open it in a browser)`,
      `  ${rel(paths.evalMd)}      the comparison table (one-shot / zero-shot / task vector / random)`,
      `  ${rel(paths.evalJson)}`,
      `  ${rel(paths.examples('segmentation'))}/   example images`,
      `  ${rel(paths.searchLog('segmentation'))}   the search, one JSON line per step`,
      `  ${rel(paths.subset('segmentation'))}   the chosen heads`,
      `  ${rel(paths.means)}, ${rel(paths.taskness)}`,
      'The weights are random: the numbers show the pipeline works, not what the method achieves.',
    ].join('\n'),
  );
  return paths.evalMd;
}

export function demoProgram(deps: Deps = defaultDeps): Command {
  return new Command('demo')
    .description('run collect -> search -> eval end to end on the bundled data with random tiny weights (about a minute on a CPU)')
    .option('--run <dir>', 'run directory', join('runs', 'demo'))
    .option('--force', 'redo the demo in an existing run directory', false)
    .addOption(threadsOption())
    .option('--seed <n>', 'weights and search seed', parseIntArg('--seed'), 0)
    .action(async (opts: DemoOptions) => {
      await demoCommand(opts, deps);
    });
}
