// `vtv search`: the REINFORCE search for one task (or several: multi-task mode) over the run's task
// vectors, checkpointed, resumable, logged; Ctrl-C stops after the current step with the state written.
// --objective token scores the training samples in VQGAN token space (docs/method.md#token-objective): the target tokens are
// computed once with the VQGAN encoder and cached in search/<task>/target_tokens.json; validation stays
// in pixel space.
import { existsSync, mkdirSync } from 'node:fs';
import { Command, Option } from 'commander';
import type { SegmentationDataset } from '../data/dataset.js';
import { buildTaskCanvas } from '../data/episode-canvas.js';
import { CANVAS_FLOATS } from '../engine.js';
import { InterruptedError } from '../errors.js';
import { resolveRunTask } from '../method/pairs-task.js';
import {
  type CanvasSet,
  checkSearchOptions,
  FINAL_SUBSETS,
  OBJECTIVES,
  REFERENCE_SEARCH,
  RESTRICTS,
  runSearch,
  SELECTS,
  type SearchOptions,
  TOKEN_LOSSES,
} from '../method/reinforce.js';
import { cachedTargetTokens, weightsIdentity } from '../method/target-tokens.js';
import { type Granularity, VariableSpace } from '../method/variables.js';
import { MULTITASK } from '../run/layout.js';
import { moveAside } from '../run/lock.js';
import { readMeansFile } from '../run/means-file.js';
import { makeSubsetFile, writeSubsetFile } from '../run/subset-file.js';
import { MAX_BATCH } from './collect.js';
import {
  checkMemory,
  type Deps,
  defaultDeps,
  floatInRange,
  intInRange,
  lockSearch,
  openDataset,
  openEngine,
  openRun,
  parseList,
  progressBar,
  type RunContext,
  type RunOptions,
  UsageError,
} from './common.js';
import { addRunOptions } from './run-options.js';

/** Bounds of the numeric options (checked before anything is allocated; memory is checked too). */
export const MAX_STEPS = 10_000_000;
export const MAX_SAMPLES = 1_000_000;
export const MAX_IMAGES = 1_000_000;

export interface SearchCliOptions extends RunOptions, Partial<SearchOptions> {
  tasks: string[];
  fold?: number;
  valImages?: number;
  episodeSeed?: number;
  granularity?: number;
  resume?: boolean;
  force?: boolean;
  /** For tests: stop after this many steps as if Ctrl-C had been pressed. */
  stopAfter?: number;
  /** Asked after every step: true stops the search as Ctrl-C does (a sweep's cell on SIGTERM). */
  shouldStop?: () => boolean;
}

/** Canvases of episodes [start, start+count) of trn fold `fold` for a task. */
export function episodeCanvases(ds: SegmentationDataset, task: string, fold: number, seed: number, start: number, count: number): CanvasSet {
  const refs = ds.episodeRefs({ split: 'trn', fold }, seed, count, start);
  const canvases = new Float32Array(refs.length * CANVAS_FLOATS);
  refs.forEach((r, i) => canvases.set(buildTaskCanvas(task as never, ds.loadEpisode(r)).canvas, i * CANVAS_FLOATS));
  return { canvases, count: refs.length };
}

export async function searchCommand(o: SearchCliOptions, deps: Deps = defaultDeps): Promise<string> {
  const ctx = openRun(o, false);
  const resolved = o.tasks.map((t) => resolveRunTask(ctx.paths, t));
  const tasks = resolved.map((t) => t.id);
  if (tasks.length === 0) throw new UsageError('--task: give a task id (or several, comma-separated, for multi-task mode)');
  if (new Set(tasks).size !== tasks.length) throw new UsageError(`--task: ${tasks.join(',')} names a task twice`);
  const key = tasks.length === 1 ? tasks[0]! : MULTITASK;
  const lock = lockSearch(ctx, key);
  try {
    return await searchLocked(o, ctx, resolved, key, deps);
  } finally {
    lock.release();
  }
}

async function searchLocked(o: SearchCliOptions, ctx: RunContext, resolved: ReturnType<typeof resolveRunTask>[], key: string, deps: Deps): Promise<string> {
  const tasks = resolved.map((t) => t.id);
  const statePath = ctx.paths.searchState(key);
  const logPath = ctx.paths.searchLog(key);
  const subsetPath = ctx.paths.subset(key);
  if (o.resume && o.force) throw new UsageError('--resume and --force contradict each other: --resume continues the search, --force starts it over');
  if (!o.resume && !o.force && (existsSync(statePath) || existsSync(subsetPath))) {
    throw new UsageError(
      `${existsSync(statePath) ? statePath : subsetPath} exists: pass --resume to continue it, or --force to start over (the old search is moved to replaced/)`,
    );
  }
  if (o.resume && !existsSync(statePath)) {
    throw new UsageError(`--resume: there is no search state at ${statePath} (no search of '${key}' was checkpointed in this run): start one without --resume`);
  }
  const opt: SearchOptions = { ...REFERENCE_SEARCH };
  for (const k of Object.keys(REFERENCE_SEARCH) as (keyof SearchOptions)[]) if (o[k] !== undefined) (opt as unknown as Record<string, unknown>)[k] = o[k];
  checkSearchOptions(opt);
  const tokenObjective = opt.objective === 'token';
  const g = o.granularity ?? 1;
  if (g !== 0 && g !== 1 && g !== 2) throw new UsageError(`--granularity must be 0, 1 or 2, got ${g}`);
  const space = new VariableSpace(ctx.config, g as Granularity, 'zero-shot');

  const means = readMeansFile(ctx.paths.means, ctx.config, tasks);
  const ds = resolved.every((t) => t.pairs) ? undefined : openDataset(ctx.run);
  const fold = o.fold ?? 0;
  if (ds && (!Number.isInteger(fold) || fold < 0 || fold >= ds.folds)) throw new UsageError(`--fold: ${ds.name} has folds 0 to ${ds.folds - 1}, got ${fold}`);
  const seed = o.episodeSeed ?? 42;
  // Reference: the first train_images items train; items train_images..min(len, 500)-1 validate. A task
  // from pairs does the same over its training pairs (its validation pairs are left to eval).
  const perTask = Math.ceil(opt.trainImages / tasks.length);
  const entries = resolved.map((t) => (t.pairs ? t.pairs.file.train.length : ds!.entries({ split: 'trn', fold }).length));
  if (entries.some((n) => n === 0)) throw new UsageError(`${ds!.name} trn fold ${fold} is empty`);
  const valCounts = entries.map((n, i) =>
    resolved[i]!.pairs ? Math.max(0, Math.min(o.valImages ?? n, n - perTask)) : (o.valImages ?? Math.max(0, Math.min(n, 500) - perTask)),
  );
  const canvases = (i: number, start: number, count: number) => {
    const t = resolved[i]!;
    return t.pairs ? t.pairs.canvasSet('train', seed, start, count) : episodeCanvases(ds!, t.id, fold, seed, start, count);
  };
  for (const v of valCounts) if (!Number.isInteger(v) || v < 0 || v > MAX_IMAGES) throw new UsageError(`--val-images must be 0 to ${MAX_IMAGES}, got ${v}`);
  // What the search allocates up front: the canvases, and per step every sample's choice and mask.
  const canvasBytes = valCounts.reduce((a, v) => a + (perTask + v) * CANVAS_FLOATS * 4, 0);
  const stepBytes = opt.samplesPerStep * (space.count + space.maskBytes + 64) + Math.min(opt.samplesPerStep, opt.engineBatch) * space.maskBytes;
  checkMemory(
    canvasBytes + stepBytes,
    `this search (${perTask} training canvas(es) per task x ${tasks.length} task(s), ${opt.samplesPerStep} samples per step over ${space.count} variables)`,
    '--train-images, --val-images or --samples-per-step',
  );
  const train = resolved.map((_, i) => canvases(i, 0, perTask));
  const validation = valCounts.every((n) => n > 0) ? resolved.map((_, i) => canvases(i, perTask, valCounts[i]!)) : undefined;

  const engine = await openEngine(ctx, deps, o.threads, { vqganEncoder: tokenObjective });
  if (!o.resume) {
    // A fresh search starts in an empty folder: the old one (finished, or left by an interrupted run)
    // goes aside in one rename before the first write, so neither --resume nor eval can pick it up.
    const aside = moveAside(ctx.dir, `search-${key}`, [ctx.paths.searchDir(key)]);
    if (aside) deps.log(`search ${key}: the previous search was moved to ${aside}`);
  }
  mkdirSync(ctx.paths.searchDir(key), { recursive: true });
  if (tokenObjective) {
    if (!engine.encodeTokens) throw new UsageError('--objective token: this engine cannot encode tokens (it has no VQGAN encoder)');
    const t0 = performance.now();
    const tt = await cachedTargetTokens(
      ctx.paths.targetTokens(key),
      { encodeTokens: engine.encodeTokens.bind(engine) },
      tasks,
      train,
      weightsIdentity(ctx.run.weights),
    );
    tt.tokens.forEach((tokens, i) => (train[i]!.targetTokens = tokens));
    const how = tt.cached ? 'read from' : `computed in ${((performance.now() - t0) / 1000).toFixed(1)} s ->`;
    deps.log(`target tokens of ${train.reduce((a, s) => a + s.count, 0)} training canvas(es) ${how} ${ctx.paths.targetTokens(key)}`);
  }
  let stop = false;
  let stopAt = 0;
  let steps = 0;
  // A terminal's Ctrl-C reaches every process of the group, and wrappers (npx, tsx) relay it again, so
  // one keypress can arrive twice: only a second Ctrl-C a second later aborts without saving.
  const onSigint = () => {
    if (stop) {
      if (performance.now() - stopAt > 1000) process.exit(130);
      return;
    }
    stop = true;
    stopAt = performance.now();
    deps.log('\nstopping after this step (state will be written; Ctrl-C again to abort now)');
  };
  process.on('SIGINT', onSigint);
  const bar = progressBar(deps, `search ${key}`, opt.steps, ' | loss {loss} | val {val}');
  let lastVal = '-';
  try {
    const res = await runSearch(
      { engine, space, tasks: resolved.map((t) => ({ name: t.id, loss: t.metric, means: means.get(t.id)!.means })), train, validation },
      opt,
      {
        statePath,
        logPath,
        resume: o.resume,
        onStep: (r) => {
          steps++;
          if (r.validation) lastVal = r.validation.metric.toFixed(4);
          bar.update(r.step + 1, { loss: r.loss.toFixed(4), val: lastVal });
        },
        shouldStop: () => stop || o.shouldStop?.() === true || (o.stopAfter !== undefined && steps >= o.stopAfter),
        onRepair: (m) => deps.log(`search ${key}: ${m}`),
      },
    );
    bar.stop();
    if (!res.completed) {
      deps.log(`search stopped at step ${res.state.step}; state in ${statePath}; continue with --resume`);
      // Stopped by Ctrl-C: the state is written; exit 130 as an interrupted command does. A stop the
      // caller asked for (stopAfter, shouldStop) is a normal return.
      if (stop) throw new InterruptedError(`search of '${key}' interrupted at step ${res.state.step}`);
      return statePath;
    }
    const subset = makeSubsetFile(space, tasks, opt.finalSubset, res.selectedStep, res.selectedLogits, res.choice);
    writeSubsetFile(ctx.paths.subset(key), subset);
    deps.log(`search ${key}: ${subset.chosen.length} of ${space.count} variables chosen (step ${res.selectedStep}, rule ${opt.finalSubset})`);
    deps.log(`  subset: ${ctx.paths.subset(key)}\n  log:    ${logPath}`);
    return ctx.paths.subset(key);
  } finally {
    process.off('SIGINT', onSigint);
    bar.stop();
    await engine.close?.();
  }
}

export function searchProgram(deps: Deps = defaultDeps): Command {
  const c = new Command('search').description('REINFORCE search for the task-vector subset (Ctrl-C stops after the step, writes the state and exits 130)');
  addRunOptions(c)
    .requiredOption('--task <list>', 'task id, or several comma-separated for multi-task mode', parseList)
    .option('--fold <k>', 'Pascal-5i trn fold to train on (the reference --split)', intInRange('--fold', 0, 1000), 0)
    .option('--steps <n>', 'iterations', intInRange('--steps', 1, MAX_STEPS), REFERENCE_SEARCH.steps)
    .option('--samples-per-step <n>', 'masks sampled per iteration', intInRange('--samples-per-step', 2, MAX_SAMPLES), REFERENCE_SEARCH.samplesPerStep)
    .option('--train-images <n>', 'training canvases', intInRange('--train-images', 1, MAX_IMAGES), REFERENCE_SEARCH.trainImages)
    .option('--val-images <n>', 'validation canvases (default: up to index 500 of the fold)', intInRange('--val-images', 0, MAX_IMAGES))
    .option('--lr <x>', 'Adam learning rate', floatInRange('--lr', Number.MIN_VALUE, 1e6), REFERENCE_SEARCH.lr)
    .option('--init <x>', 'initial logit', floatInRange('--init', -100, 100), REFERENCE_SEARCH.init)
    .option('--sparsity <x>', 'weight of mean(p) in the objective (regularization_strength)', floatInRange('--sparsity', 0, 1e6), REFERENCE_SEARCH.sparsity)
    .addOption(new Option('--restrict <area>', 'heads searched').choices(RESTRICTS).default(REFERENCE_SEARCH.restrict))
    .option('--granularity <g>', '0 (layer, head), 1 (reference default), 2 (per token)', intInRange('--granularity', 0, 2), 1)
    .option('--validate-every <n>', 'steps between validations (0: never)', intInRange('--validate-every', 0, MAX_STEPS), REFERENCE_SEARCH.validateEvery)
    .addOption(new Option('--select <which>', 'best (validation) | last').choices(SELECTS).default(REFERENCE_SEARCH.select))
    .addOption(
      new Option('--final-subset <rule>', 'sample (the reference: one Bernoulli draw) | threshold (p > 0.5)')
        .choices(FINAL_SUBSETS)
        .default(REFERENCE_SEARCH.finalSubset),
    )
    .option('--seed <n>', 'search seed', intInRange('--seed', 0), REFERENCE_SEARCH.seed)
    .option('--episode-seed <n>', 'seed of the training/validation episodes', intInRange('--episode-seed', 0), 42)
    .option('--checkpoint-every <n>', 'steps between state writes', intInRange('--checkpoint-every', 1, MAX_STEPS), REFERENCE_SEARCH.checkpointEvery)
    .option(
      '--snapshot-every <n>',
      'steps between probability snapshots in the log',
      intInRange('--snapshot-every', 0, MAX_STEPS),
      REFERENCE_SEARCH.snapshotEvery,
    )
    .option('--engine-batch <n>', 'most samples per engine call', intInRange('--engine-batch', 1, MAX_BATCH), REFERENCE_SEARCH.engineBatch)
    .addOption(
      new Option(
        '--objective <space>',
        'how training samples are scored: pixel (the reference: decode, then -IoU or MSE) | token (VQGAN token space: the MAE logits of the output quadrant against the VQGAN encoder tokens of the ground truth; no decode, needs encoder weights). Validation is pixel-space for both',
      )
        .choices(OBJECTIVES)
        .default(REFERENCE_SEARCH.objective),
    )
    .addOption(
      new Option('--token-loss <loss>', 'for --objective token: ce (mean cross-entropy of the 49 output tokens) | accuracy (minus the token accuracy)')
        .choices(TOKEN_LOSSES)
        .default(REFERENCE_SEARCH.tokenLoss),
    )
    .option('--resume', 'continue from search/<task>/state.json', false)
    .option('--force', 'start over (the old search is moved to replaced/ first)', false)
    .action(async (opts: SearchCliOptions & { task: string[] }) => {
      await searchCommand({ ...opts, tasks: opts.task }, deps);
    });
  return c;
}
