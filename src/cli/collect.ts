// `vtv collect`: score one-shot prompts, keep the best per task, record the task vectors and taskness.
import { existsSync } from 'node:fs';
import { Command } from 'commander';
import { getTask } from '../data/tasks/index.js';
import { writeJsonAtomic } from '../method/atomic_file.js';
import { type CollectOptions, collectTaskVectors, REFERENCE_COLLECT } from '../method/collect.js';
import { writeMeansFile } from '../method/means_file.js';
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

export interface CollectCliOptions extends RunOptions, Partial<CollectOptions> {
  force?: boolean;
}

export async function collectCommand(o: CollectCliOptions, deps: Deps = defaultDeps): Promise<string> {
  const ctx = openRun(o, true);
  if (existsSync(ctx.paths.means) && !o.force) {
    throw new UsageError(`${ctx.paths.means} exists: pass --force to collect again (it will be replaced), or use another --run`);
  }
  const opt: CollectOptions = {
    tasks: o.tasks ?? REFERENCE_COLLECT.tasks,
    folds: o.folds ?? REFERENCE_COLLECT.folds,
    episodesPerFold: o.episodesPerFold ?? REFERENCE_COLLECT.episodesPerFold,
    keep: o.keep ?? REFERENCE_COLLECT.keep,
    seed: o.seed ?? REFERENCE_COLLECT.seed,
    referenceQuirks: o.referenceQuirks ?? false,
    batch: o.batch ?? REFERENCE_COLLECT.batch,
  };
  for (const t of opt.tasks) getTask(t); // a wrong task name fails before any work
  const ds = openDataset(ctx.run);
  const engine = await openEngine(ctx, deps, o.threads);
  try {
    let bar = progressBar(deps, 'collect: scoring', opt.folds.length * opt.episodesPerFold);
    let phase = 'score';
    const res = await collectTaskVectors(engine, ds, opt, (p) => {
      if (p.phase !== phase) {
        bar.stop();
        bar = progressBar(deps, 'collect: recording', p.total);
        phase = p.phase;
      }
      bar.update(p.done);
    });
    bar.stop();
    writeMeansFile(ctx.paths.means, ctx.config, res.means);
    writeJsonAtomic(ctx.paths.prompts, {
      format: 'vtv-prompts',
      version: 1,
      options: opt,
      scored: res.scored,
      tasks: Object.fromEntries(
        [...res.kept].map(([t, ps]) => [
          t,
          ps.map((p) => ({ fold: p.fold, index: p.ref.index, query: p.queryId, support: p.supportId, classId: p.classId, metric: p.metric })),
        ]),
      ),
    });
    writeJsonAtomic(ctx.paths.taskness, {
      format: 'vtv-taskness',
      version: 1,
      formula: 'sum_e Var_all / (n * sum_j sum_e Var_task_j), population variances',
      ...res.taskness,
    });
    deps.log(`collect: scored ${res.scored} episodes x ${opt.tasks.length} tasks; kept ${[...res.kept].map(([t, p]) => `${t} ${p.length}`).join(', ')}`);
    deps.log(`  task vectors: ${ctx.paths.means}\n  taskness:     ${ctx.paths.taskness}`);
    return ctx.paths.means;
  } finally {
    engine.close?.();
  }
}

export function collectProgram(deps: Deps = defaultDeps): Command {
  const c = new Command('collect').description(
    'score one-shot prompts, keep the best K per task, record per-task mean head outputs (task vectors) and taskness',
  );
  addRunOptions(c)
    .option('--tasks <list>', 'comma-separated task ids', parseList, REFERENCE_COLLECT.tasks)
    .option('--folds <list>', 'trn folds to draw candidate episodes from', parseIntList('--folds'), REFERENCE_COLLECT.folds)
    .option('--episodes-per-fold <n>', 'candidate episodes per fold', parseIntArg('--episodes-per-fold'), REFERENCE_COLLECT.episodesPerFold)
    .option('--keep <n>', 'prompts kept per task', parseIntArg('--keep'), REFERENCE_COLLECT.keep)
    .option('--seed <n>', 'episode seed', parseIntArg('--seed'), REFERENCE_COLLECT.seed)
    .option('--batch <n>', 'episodes per engine call', parseIntArg('--batch'), REFERENCE_COLLECT.batch)
    .option('--reference-quirks', "reproduce the reference's filtering bugs (SPEC §8.7): worst-IoU dedupe, re-drawn supports, class from any fold", false)
    .option('--force', 'replace an existing means.safetensors', false)
    .action(async (opts: CollectCliOptions) => {
      await collectCommand(opts, deps);
    });
  return c;
}
