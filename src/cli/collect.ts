// `vtv collect`: score one-shot prompts, keep the best per task, record the task vectors and taskness.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { findPairs, PAIRS_LAYOUT } from '../data/pairs.js';
import { getTask } from '../data/tasks/index.js';
import { CANVAS_FLOATS } from '../engine.js';
import { type CollectOptions, collectTaskVectors, REFERENCE_COLLECT } from '../method/collect.js';
import { checkPairsTaskName, collectPairsTask, PAIRS_COLLECT, type PairsCollectOptions, writePairsTaskFile } from '../method/pairs-task.js';
import { writeJsonAtomic } from '../run/atomic-file.js';
import { readJsonFile } from '../run/json-file.js';
import { moveAside } from '../run/lock.js';
import { meansFileTasks, readMeansFile, writeMeansFile } from '../run/means-file.js';
import {
  checkMemory,
  checkThreads,
  type Deps,
  defaultDeps,
  intInRange,
  lockRun,
  openDataset,
  openEngine,
  openRun,
  parseFloatArg,
  parseIntList,
  parseList,
  progressBar,
  type RunOptions,
  resolveRunDir,
  UsageError,
} from './common.js';
import { addRunOptions } from './run-options.js';

/** Most episodes (or samples) per engine call any command accepts. */
export const MAX_BATCH = 4096;

export interface CollectCliOptions extends RunOptions, Partial<CollectOptions> {
  force?: boolean;
  /** A folder of example pairs (src/data/pairs.ts): collect a new task of the user's own instead. */
  pairs?: string;
  taskName?: string;
  metric?: string;
  valFraction?: number;
}

export async function collectCommand(o: CollectCliOptions, deps: Deps = defaultDeps): Promise<string> {
  checkThreads(o.threads);
  // The run lock comes before anything is written (openRun writes config.json for a new run); collect
  // replaces the task vectors every search reads, so no search of this run may be running.
  const lock = lockRun({ dir: resolveRunDir(o) }, 'collect', 'all');
  try {
    return await (o.pairs !== undefined ? collectPairsCommand(o, deps) : collectLocked(o, deps));
  } finally {
    lock.release();
  }
}

async function collectLocked(o: CollectCliOptions, deps: Deps): Promise<string> {
  if (o.taskName !== undefined || o.metric !== undefined) throw new UsageError('--task-name and --metric go with --pairs DIR');
  const ctx = openRun(o, true);
  // Tasks recorded from pairs (tasks/<name>/) stay in the run's task vectors and prompts; a built-in
  // collection replaces only the built-in tasks.
  const existing = existsSync(ctx.paths.means) ? meansFileTasks(ctx.paths.means) : [];
  const own = existing.filter((t) => existsSync(ctx.paths.pairsTask(t)));
  if (existing.length > own.length && !o.force) {
    throw new UsageError(`${ctx.paths.means} exists: pass --force to collect again (the old results are moved to replaced/), or use another --run`);
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
  for (const [name, v, min, max] of [
    ['--episodes-per-fold', opt.episodesPerFold, 1, 1_000_000],
    ['--keep', opt.keep, 1, 1_000_000],
    ['--batch', opt.batch, 1, MAX_BATCH],
  ] as const) {
    if (!Number.isInteger(v) || v < min || v > max) throw new UsageError(`${name} must be ${min} to ${max}, got ${v}`);
  }
  const ds = openDataset(ctx.run);
  for (const f of opt.folds)
    if (!Number.isInteger(f) || f < 0 || f >= ds.folds) throw new UsageError(`--folds: ${ds.name} has folds 0 to ${ds.folds - 1}, got ${f}`);
  checkMemory(opt.batch * CANVAS_FLOATS * 4 * 4, `--batch ${opt.batch}`, '--batch');
  const engine = await openEngine(ctx, deps, o.threads);
  const ownMeans = own.length ? readMeansFile(ctx.paths.means, ctx.config, own) : new Map();
  const ownPrompts =
    own.length && existsSync(ctx.paths.prompts) ? readJsonFile<{ tasks: Record<string, unknown> }>(ctx.paths.prompts, 'prompts file').tasks : {};
  // Everything computed from the old task vectors goes aside with them, the means file first (it marks
  // a finished collect), so nothing made from the old vectors is left looking current.
  const aside = moveAside(ctx.dir, 'collect', [ctx.paths.means, ctx.paths.prompts, ctx.paths.taskness, ctx.paths.searchDir(''), ctx.paths.evalDir]);
  if (aside) deps.log(`collect: the previous task vectors, searches and evaluation were moved to ${aside}`);
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
    await engine.close?.();
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
      ? readJsonFile<{ format: string; version: number; tasks: Record<string, unknown> }>(ctx.paths.prompts, 'prompts file')
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
    await engine.close?.();
  }
}

export function collectProgram(deps: Deps = defaultDeps): Command {
  const c = new Command('collect').description(
    'score one-shot prompts, keep the best K per task, record per-task mean head outputs (task vectors) and taskness',
  );
  addRunOptions(c)
    .option('--tasks <list>', 'comma-separated task ids', parseList, REFERENCE_COLLECT.tasks)
    .option('--folds <list>', 'trn folds to draw candidate episodes from', parseIntList('--folds', 0, 1000), REFERENCE_COLLECT.folds)
    .option('--episodes-per-fold <n>', 'candidate episodes per fold', intInRange('--episodes-per-fold', 1, 1_000_000), REFERENCE_COLLECT.episodesPerFold)
    .option('--keep <n>', 'prompts kept per task', intInRange('--keep', 1, 1_000_000), REFERENCE_COLLECT.keep)
    .option('--seed <n>', 'episode seed', intInRange('--seed', 0), REFERENCE_COLLECT.seed)
    .option('--batch <n>', 'episodes per engine call', intInRange('--batch', 1, MAX_BATCH), REFERENCE_COLLECT.batch)
    .option('--reference-quirks', "reproduce the reference's filtering bugs: worst-IoU dedupe, re-drawn supports, class from any fold", false)
    .option('--pairs <dir>', `a task of your own from example pairs: ${PAIRS_LAYOUT} (any sizes)`)
    .option('--task-name <name>', "with --pairs: the new task's name (for search --task and eval --tasks)")
    .addOption(new Option('--metric <m>', 'with --pairs: the score (default: iou when every output is a 0/255 grey mask, else mse)').choices(['iou', 'mse']))
    .option(
      '--val-fraction <x>',
      'with --pairs: share of the pairs held out for validation (seeded by --seed)',
      parseFloatArg('--val-fraction'),
      PAIRS_COLLECT.valFraction,
    )
    .option(
      '--force',
      'collect again over an existing means.safetensors (the old results, searches and evaluation are moved to replaced/; with --pairs: that task in it)',
      false,
    )
    .action(async (opts: CollectCliOptions) => {
      await collectCommand(opts, deps);
    });
  return c;
}
