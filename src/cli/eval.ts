// `vtv eval`: one-shot, zero-shot, task vector and random subset on the same validation episodes.
import { existsSync, writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { CANVAS_FLOATS } from '../engine.js';
import { type EvalTask, evaluateTaskVectors, resultsMarkdown } from '../method/evaluate.js';
import { resolveRunTask } from '../method/pairs-task.js';
import { writeJsonAtomic } from '../run/atomic-file.js';
import { MULTITASK } from '../run/layout.js';
import { moveAside } from '../run/lock.js';
import { readMeansFile } from '../run/means-file.js';
import { readSubsetFile } from '../run/subset-file.js';
import { MAX_BATCH } from './collect.js';
import {
  checkMemory,
  type Deps,
  defaultDeps,
  intInRange,
  lockRun,
  openDataset,
  openEngine,
  openRun,
  parseIntList,
  parseList,
  progressBar,
  type RunContext,
  type RunOptions,
  UsageError,
} from './common.js';
import { addRunOptions } from './run-options.js';

export interface EvalCliOptions extends RunOptions {
  tasks?: string[];
  folds?: number[];
  episodes?: number;
  seed?: number;
  batch?: number;
  examples?: number;
  drawPerFold?: boolean;
  force?: boolean;
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
  // A search of an evaluated task that is still running would replace its subset under us.
  const lock = lockRun(ctx, 'eval', [...taskIds, MULTITASK]);
  try {
    return await evalLocked(o, ctx, resolved, deps);
  } finally {
    lock.release();
  }
}

async function evalLocked(o: EvalCliOptions, ctx: RunContext, resolved: ReturnType<typeof resolveRunTask>[], deps: Deps): Promise<string> {
  const taskIds = resolved.map((t) => t.id);
  const searched = (t: string) => existsSync(ctx.paths.subset(t));
  if (existsSync(ctx.paths.evalJson) && !o.force) {
    throw new UsageError(`${ctx.paths.evalJson} exists: pass --force to evaluate again (the old results are moved to replaced/), or use another --run`);
  }
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
  if (ds)
    for (const f of folds)
      if (!Number.isInteger(f) || f < 0 || f >= ds.folds) throw new UsageError(`--folds: ${ds.name} has folds 0 to ${ds.folds - 1}, got ${f}`);
  const episodes = o.episodes ?? 1000;
  const batch = o.batch ?? 16;
  for (const [name, v, min, max] of [
    ['--episodes', episodes, 1, 1_000_000],
    ['--batch', batch, 1, MAX_BATCH],
    ['--examples', o.examples ?? 4, 0, 10_000],
  ] as const) {
    if (!Number.isInteger(v) || v < min || v > max) throw new UsageError(`${name} must be ${min} to ${max}, got ${v}`);
  }
  checkMemory(batch * CANVAS_FLOATS * 4 * 4, `--batch ${batch}`, '--batch');
  const engine = await openEngine(ctx, deps, o.threads);
  // The old evaluation (results and example images) goes aside in one rename before the first write.
  const aside = moveAside(ctx.dir, 'eval', [ctx.paths.evalDir]);
  if (aside) deps.log(`eval: the previous evaluation was moved to ${aside}`);
  try {
    const bar = progressBar(deps, 'eval', tasks.length * folds.length * episodes);
    const res = await evaluateTaskVectors(
      engine,
      ds,
      tasks,
      { folds, episodes, seed: o.seed ?? 0, batch, examples: o.examples ?? 4, examplesDir: ctx.paths.examples, drawPerFold: o.drawPerFold },
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
    await engine.close?.();
  }
}

export function evalProgram(deps: Deps = defaultDeps): Command {
  const c = new Command('eval').description('evaluate one-shot, zero-shot, task-vector and random-subset prompting per task and fold');
  addRunOptions(c)
    .option('--tasks <list>', 'task ids or names of tasks from pairs (default: every built-in task with a searched subset)', parseList)
    .option('--folds <list>', 'val folds (default: all)', parseIntList('--folds', 0, 1000))
    .option('--episodes <n>', 'episodes per fold', intInRange('--episodes', 1, 1_000_000), 1000)
    .option('--seed <n>', 'episode and random-subset seed', intInRange('--seed', 0), 0)
    .option('--batch <n>', 'episodes per engine call', intInRange('--batch', 1, MAX_BATCH), 16)
    .option('--examples <n>', 'episodes per task and fold saved as PNGs', intInRange('--examples', 0, 10_000), 4)
    .option(
      '--draw-per-fold',
      "the reference's evaluation: a fresh Bernoulli draw of the subset from the search's probabilities for each fold (seeded), instead of subset.json's chosen set",
      false,
    )
    .option('--force', 'evaluate again over an existing eval/results.json (the old eval/ is moved to replaced/)', false)
    .action(async (opts: EvalCliOptions) => {
      await evalCommand(opts, deps);
    });
  return c;
}
