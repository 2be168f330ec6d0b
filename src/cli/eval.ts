// `vtv eval`: one-shot, zero-shot, task vector and random subset on the same validation episodes.
import { existsSync, writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { writeJsonAtomic } from '../method/atomic_file.js';
import { type EvalTask, evaluateTaskVectors, resultsMarkdown } from '../method/evaluate.js';
import { readMeansFile } from '../method/means_file.js';
import { resolveRunTask } from '../method/pairs_task.js';
import { MULTITASK } from '../method/run_layout.js';
import { readSubsetFile } from '../method/subset_file.js';
import {
  type Deps,
  defaultDeps,
  openDataset,
  openEngine,
  openRun,
  parseIntArg,
  parseIntList,
  parseList,
  progressBar,
  type RunOptions,
  UsageError,
} from './common.js';
import { addRunOptions } from './run_options.js';

export interface EvalCliOptions extends RunOptions {
  tasks?: string[];
  folds?: number[];
  episodes?: number;
  seed?: number;
  batch?: number;
  examples?: number;
  drawPerFold?: boolean;
}

export async function evalCommand(o: EvalCliOptions, deps: Deps = defaultDeps): Promise<string> {
  const ctx = openRun(o, false);
  // Default: every task that has a searched subset of its own, else the tasks of the multi-task subset.
  const searched = (t: string) => existsSync(ctx.paths.subset(t));
  let defaults = ['segmentation', 'lowlight_enhance', 'inpaint', 'colorization'].filter(searched);
  if (defaults.length === 0 && searched(MULTITASK)) defaults = readSubsetFile(ctx.paths.subset(MULTITASK), ctx.config).file.tasks;
  const resolved = (o.tasks ?? defaults).map((t) => resolveRunTask(ctx.paths, t));
  const taskIds = resolved.map((t) => t.id);
  if (taskIds.length === 0)
    throw new UsageError(`no searched subsets under ${ctx.paths.searchDir('')}: run \`vtv search --task <task>\` first, or pass --tasks`);
  const means = readMeansFile(ctx.paths.means, ctx.config, taskIds);
  const tasks: EvalTask[] = resolved.map(({ id: t, pairs }) => {
    const path = searched(t) ? ctx.paths.subset(t) : ctx.paths.subset(MULTITASK);
    const s = readSubsetFile(path, ctx.config);
    return {
      name: t,
      means: means.get(t)!.means,
      space: s.space,
      choice: s.choice,
      logits: Float64Array.from(s.file.logits),
      ...(pairs ? { source: pairs.evalSource() } : {}),
    };
  });
  // Tasks from pairs are evaluated on their own validation pairs; the dataset is opened only for built-in tasks.
  const ds = tasks.every((t) => t.source) ? undefined : openDataset(ctx.run);
  const folds = o.folds ?? Array.from({ length: ds?.folds ?? 1 }, (_, i) => i);
  const episodes = o.episodes ?? 1000;
  const engine = await openEngine(ctx, deps, o.threads);
  try {
    const bar = progressBar(deps, 'eval', tasks.length * folds.length * episodes);
    const res = await evaluateTaskVectors(
      engine,
      ds,
      tasks,
      { folds, episodes, seed: o.seed ?? 0, batch: o.batch ?? 16, examples: o.examples ?? 4, examplesDir: ctx.paths.examples, drawPerFold: o.drawPerFold },
      (d) => bar.update(d),
    );
    bar.stop();
    writeJsonAtomic(ctx.paths.evalJson, res);
    const md = resultsMarkdown(res);
    writeFileSync(ctx.paths.evalMd, md);
    deps.log(md);
    deps.log(`  results: ${ctx.paths.evalJson}\n  table:   ${ctx.paths.evalMd}\n  images:  ${ctx.paths.examples('<task>')}`);
    return ctx.paths.evalJson;
  } finally {
    engine.close?.();
  }
}

export function evalProgram(deps: Deps = defaultDeps): Command {
  const c = new Command('eval').description('evaluate one-shot, zero-shot, task-vector and random-subset prompting per task and fold');
  addRunOptions(c)
    .option('--tasks <list>', 'task ids or names of tasks from pairs (default: every built-in task with a searched subset)', parseList)
    .option('--folds <list>', 'val folds (default: all)', parseIntList('--folds'))
    .option('--episodes <n>', 'episodes per fold', parseIntArg('--episodes'), 1000)
    .option('--seed <n>', 'episode and random-subset seed', parseIntArg('--seed'), 0)
    .option('--batch <n>', 'episodes per engine call', parseIntArg('--batch'), 16)
    .option('--examples <n>', 'episodes per task and fold saved as PNGs', parseIntArg('--examples'), 4)
    .option(
      '--draw-per-fold',
      "the reference's evaluation: a fresh Bernoulli draw of the subset from the search's probabilities for each fold (seeded), instead of subset.json's chosen set",
      false,
    )
    .action(async (opts: EvalCliOptions) => {
      await evalCommand(opts, deps);
    });
  return c;
}
