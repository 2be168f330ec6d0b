// `vtv collect`: score one-shot prompts, keep the best per task, record the task vectors and taskness.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Command } from 'commander';
import { findPairs, PAIRS_LAYOUT } from '../data/pairs.js';
import { getTask } from '../data/tasks/index.js';
import { writeJsonAtomic } from '../method/atomic_file.js';
import { type CollectOptions, collectTaskVectors, REFERENCE_COLLECT } from '../method/collect.js';
import { meansFileTasks, readMeansFile, writeMeansFile } from '../method/means_file.js';
import { checkPairsTaskName, collectPairsTask, PAIRS_COLLECT, type PairsCollectOptions, writePairsTaskFile } from '../method/pairs_task.js';
import {
  type Deps,
  defaultDeps,
  openDataset,
  openEngine,
  openRun,
  parseFloatArg,
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
  /** A folder of example pairs (src/data/pairs.ts): collect a new task of the user's own instead. */
  pairs?: string;
  taskName?: string;
  metric?: string;
  valFraction?: number;
}

export async function collectCommand(o: CollectCliOptions, deps: Deps = defaultDeps): Promise<string> {
  if (o.pairs !== undefined) return collectPairsCommand(o, deps);
  if (o.taskName !== undefined || o.metric !== undefined) throw new UsageError('--task-name and --metric go with --pairs DIR');
  const ctx = openRun(o, true);
  // Tasks recorded from pairs (tasks/<name>/) stay in the run's task vectors and prompts; a built-in
  // collection replaces only the built-in tasks.
  const existing = existsSync(ctx.paths.means) ? meansFileTasks(ctx.paths.means) : [];
  const own = existing.filter((t) => existsSync(ctx.paths.pairsTask(t)));
  if (existing.length > own.length && !o.force) {
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
    const ownMeans = own.length ? readMeansFile(ctx.paths.means, ctx.config, own) : new Map();
    const ownPrompts =
      own.length && existsSync(ctx.paths.prompts) ? (JSON.parse(readFileSync(ctx.paths.prompts, 'utf8')) as { tasks: Record<string, unknown> }).tasks : {};
    writeMeansFile(ctx.paths.means, ctx.config, new Map([...res.means, ...[...ownMeans].filter(([t]) => !res.means.has(t))]));
    writeJsonAtomic(ctx.paths.prompts, {
      format: 'vtv-prompts',
      version: 1,
      options: opt,
      scored: res.scored,
      tasks: {
        ...Object.fromEntries(own.filter((t) => t in ownPrompts && !res.kept.has(t)).map((t) => [t, ownPrompts[t]])),
        ...Object.fromEntries(
          [...res.kept].map(([t, ps]) => [
            t,
            ps.map((p) => ({ fold: p.fold, index: p.ref.index, query: p.queryId, support: p.supportId, classId: p.classId, metric: p.metric })),
          ]),
        ),
      },
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

/** `vtv collect --pairs DIR --task-name NAME`: a task of the user's own, added to the run's task vectors. */
async function collectPairsCommand(o: CollectCliOptions, deps: Deps): Promise<string> {
  let name: string;
  try {
    name = checkPairsTaskName(o.taskName);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (o.metric !== undefined && o.metric !== 'iou' && o.metric !== 'mse') throw new UsageError(`--metric must be iou or mse, got '${o.metric}'`);
  const pairsDir = resolve(o.pairs!);
  findPairs(pairsDir); // a broken layout fails before a run is created
  const ctx = openRun(o, true);
  const existing = existsSync(ctx.paths.means) ? meansFileTasks(ctx.paths.means) : [];
  if (existing.includes(name) && !o.force) {
    throw new UsageError(
      `${ctx.paths.means} already holds task '${name}': pass --force to collect it again (it will be replaced), or choose another --task-name`,
    );
  }
  const opt: PairsCollectOptions = {
    episodes: o.episodesPerFold ?? PAIRS_COLLECT.episodes,
    keep: o.keep ?? PAIRS_COLLECT.keep,
    seed: o.seed ?? PAIRS_COLLECT.seed,
    valFraction: o.valFraction ?? PAIRS_COLLECT.valFraction,
    batch: o.batch ?? PAIRS_COLLECT.batch,
    ...(o.metric ? { metric: o.metric as 'iou' | 'mse' } : {}),
  };
  const engine = await openEngine(ctx, deps, o.threads);
  try {
    let bar = progressBar(deps, 'collect: scoring', 1);
    let phase = '';
    const res = await collectPairsTask(engine, name, pairsDir, opt, (p) => {
      if (p.phase !== phase) {
        bar.stop();
        bar = progressBar(deps, `collect: ${p.phase === 'score' ? 'scoring' : 'recording'}`, p.total);
        phase = p.phase;
      }
      bar.update(p.done);
    });
    bar.stop();
    // The run's other tasks stay as they are; this one is added or replaced.
    const means = existing.length ? readMeansFile(ctx.paths.means, ctx.config, existing) : new Map();
    means.set(name, res.means);
    mkdirSync(dirname(ctx.paths.pairsTask(name)), { recursive: true });
    writePairsTaskFile(ctx.paths.pairsTask(name), res.file);
    writeMeansFile(ctx.paths.means, ctx.config, means);
    const prompts = existsSync(ctx.paths.prompts)
      ? (JSON.parse(readFileSync(ctx.paths.prompts, 'utf8')) as { tasks: Record<string, unknown> })
      : { format: 'vtv-prompts', version: 1, tasks: {} as Record<string, unknown> };
    prompts.tasks[name] = res.file.prompts;
    writeJsonAtomic(ctx.paths.prompts, prompts);
    writeJsonAtomic(ctx.paths.pairsTaskness(name), {
      format: 'vtv-taskness',
      version: 1,
      formula: 'sum_e Var_all / (n * sum_j sum_e Var_task_j), population variances; tasks: this one and the identity copy of its inputs',
      ...res.taskness,
    });
    const f = res.file;
    deps.log(
      `collect: task '${name}' from ${f.pairs.length} pairs (${f.layout}): ${f.train.length} train, ${f.val.length} validation; ` +
        `metric ${f.metric} (${f.metricFrom}); scored ${f.scored} one-shot prompts, kept ${f.prompts.length}`,
    );
    deps.log(`  task:         ${ctx.paths.pairsTask(name)}\n  task vectors: ${ctx.paths.means}\n  taskness:     ${ctx.paths.pairsTaskness(name)}`);
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
    .option('--pairs <dir>', `a task of your own from example pairs: ${PAIRS_LAYOUT} (any sizes)`)
    .option('--task-name <name>', "with --pairs: the new task's name (for search --task and eval --tasks)")
    .option('--metric <m>', 'with --pairs: iou | mse (default: iou when every output is a 0/255 grey mask, else mse)')
    .option(
      '--val-fraction <x>',
      'with --pairs: share of the pairs held out for validation (seeded by --seed)',
      parseFloatArg('--val-fraction'),
      PAIRS_COLLECT.valFraction,
    )
    .option('--force', 'replace an existing means.safetensors (with --pairs: that task in it)', false)
    .action(async (opts: CollectCliOptions) => {
      await collectCommand(opts, deps);
    });
  return c;
}
