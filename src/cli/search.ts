// `vtv search`: the REINFORCE search for one task (or several: multi-task mode) over the run's task
// vectors, checkpointed, resumable, logged; Ctrl-C stops after the current step with the state written.
// --objective token scores the training samples in VQGAN token space (issue 9): the target tokens are
// computed once with the VQGAN encoder and cached in search/<task>/target_tokens.json; validation stays
// in pixel space.
import { existsSync, mkdirSync } from 'node:fs';
import { Command } from 'commander';
import type { SegmentationDataset } from '../data/dataset.js';
import { buildTaskCanvas } from '../data/episode-canvas.js';
import { getTask } from '../data/tasks/index.js';
import { CANVAS_FLOATS } from '../engine.js';
import { readMeansFile } from '../method/means_file.js';
import { type CanvasSet, REFERENCE_SEARCH, runSearch, type SearchOptions } from '../method/reinforce.js';
import { MULTITASK } from '../method/run_layout.js';
import { makeSubsetFile, writeSubsetFile } from '../method/subset_file.js';
import { cachedTargetTokens, weightsIdentity } from '../method/target_tokens.js';
import { type Granularity, VariableSpace } from '../method/variables.js';
import {
  type Deps,
  defaultDeps,
  openDataset,
  openEngine,
  openRun,
  parseFloatArg,
  parseIntArg,
  parseList,
  progressBar,
  type RunOptions,
  UsageError,
} from './common.js';
import { addRunOptions } from './run_options.js';

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
  const tasks = o.tasks.map((t) => getTask(t).id);
  if (tasks.length === 0) throw new UsageError('--task: give a task id (or several, comma-separated, for multi-task mode)');
  const key = tasks.length === 1 ? tasks[0]! : MULTITASK;
  const statePath = ctx.paths.searchState(key);
  const logPath = ctx.paths.searchLog(key);
  if (!o.resume && existsSync(statePath) && !o.force) {
    throw new UsageError(`${statePath} exists: pass --resume to continue it, or --force to start over (it will be replaced)`);
  }
  const opt: SearchOptions = { ...REFERENCE_SEARCH };
  for (const k of Object.keys(REFERENCE_SEARCH) as (keyof SearchOptions)[]) if (o[k] !== undefined) (opt as unknown as Record<string, unknown>)[k] = o[k];
  if (!['none', 'encoder-only', 'decoder-only'].includes(opt.restrict))
    throw new UsageError(`--restrict must be none, encoder-only or decoder-only, got '${opt.restrict}'`);
  if (opt.objective !== 'pixel' && opt.objective !== 'token') throw new UsageError(`--objective must be pixel or token, got '${opt.objective}'`);
  if (opt.tokenLoss !== 'ce' && opt.tokenLoss !== 'accuracy') throw new UsageError(`--token-loss must be ce or accuracy, got '${opt.tokenLoss}'`);
  const tokenObjective = opt.objective === 'token';
  const g = o.granularity ?? 1;
  if (g !== 0 && g !== 1 && g !== 2) throw new UsageError(`--granularity must be 0, 1 or 2, got ${g}`);

  const means = readMeansFile(ctx.paths.means, ctx.config, tasks);
  const ds = openDataset(ctx.run);
  const fold = o.fold ?? 0;
  const seed = o.episodeSeed ?? 42;
  const entries = ds.entries({ split: 'trn', fold }).length;
  if (entries === 0) throw new UsageError(`${ds.name} trn fold ${fold} is empty`);
  // Reference: the first train_images items train; items train_images..min(len, 500)-1 validate.
  const perTask = Math.ceil(opt.trainImages / tasks.length);
  const valCount = o.valImages ?? Math.max(0, Math.min(entries, 500) - perTask);
  const train = tasks.map((t) => episodeCanvases(ds, t, fold, seed, 0, perTask));
  const validation = valCount > 0 ? tasks.map((t) => episodeCanvases(ds, t, fold, seed, perTask, valCount)) : undefined;

  const engine = await openEngine(ctx, deps, o.threads, { vqganEncoder: tokenObjective });
  const space = new VariableSpace(ctx.config, g as Granularity, 'zero-shot');
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
      { engine, space, tasks: tasks.map((t) => ({ name: t, loss: getTask(t).metric, means: means.get(t)!.means })), train, validation },
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
      },
    );
    bar.stop();
    if (!res.completed) {
      deps.log(`search stopped at step ${res.state.step}; state in ${statePath}; continue with --resume`);
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
    engine.close?.();
  }
}

export function searchProgram(deps: Deps = defaultDeps): Command {
  const c = new Command('search').description('REINFORCE search for the task-vector subset (SPEC §5)');
  addRunOptions(c)
    .requiredOption('--task <list>', 'task id, or several comma-separated for multi-task mode', parseList)
    .option('--fold <k>', 'Pascal-5i trn fold to train on (the reference --split)', parseIntArg('--fold'), 0)
    .option('--steps <n>', 'iterations', parseIntArg('--steps'), REFERENCE_SEARCH.steps)
    .option('--samples-per-step <n>', 'masks sampled per iteration', parseIntArg('--samples-per-step'), REFERENCE_SEARCH.samplesPerStep)
    .option('--train-images <n>', 'training canvases', parseIntArg('--train-images'), REFERENCE_SEARCH.trainImages)
    .option('--val-images <n>', 'validation canvases (default: up to index 500 of the fold)', parseIntArg('--val-images'))
    .option('--lr <x>', 'Adam learning rate', parseFloatArg('--lr'), REFERENCE_SEARCH.lr)
    .option('--init <x>', 'initial logit', parseFloatArg('--init'), REFERENCE_SEARCH.init)
    .option('--sparsity <x>', 'weight of mean(p) in the objective (regularization_strength)', parseFloatArg('--sparsity'), REFERENCE_SEARCH.sparsity)
    .option('--restrict <area>', 'none | encoder-only | decoder-only', REFERENCE_SEARCH.restrict)
    .option('--granularity <g>', '0 (layer, head), 1 (reference default), 2 (per token)', parseIntArg('--granularity'), 1)
    .option('--validate-every <n>', 'steps between validations (0: never)', parseIntArg('--validate-every'), REFERENCE_SEARCH.validateEvery)
    .option('--select <which>', 'best (validation) | last', REFERENCE_SEARCH.select)
    .option('--final-subset <rule>', 'sample (the reference: one Bernoulli draw) | threshold (p > 0.5)', REFERENCE_SEARCH.finalSubset)
    .option('--seed <n>', 'search seed', parseIntArg('--seed'), REFERENCE_SEARCH.seed)
    .option('--episode-seed <n>', 'seed of the training/validation episodes', parseIntArg('--episode-seed'), 42)
    .option('--checkpoint-every <n>', 'steps between state writes', parseIntArg('--checkpoint-every'), REFERENCE_SEARCH.checkpointEvery)
    .option('--snapshot-every <n>', 'steps between probability snapshots in the log', parseIntArg('--snapshot-every'), REFERENCE_SEARCH.snapshotEvery)
    .option('--engine-batch <n>', 'most samples per engine call', parseIntArg('--engine-batch'), REFERENCE_SEARCH.engineBatch)
    .option(
      '--objective <space>',
      'how training samples are scored: pixel (the reference: decode, then -IoU or MSE) | token (VQGAN token space: the MAE logits of the output quadrant against the VQGAN encoder tokens of the ground truth; no decode, needs encoder weights). Validation is pixel-space for both',
      REFERENCE_SEARCH.objective,
    )
    .option(
      '--token-loss <loss>',
      'for --objective token: ce (mean cross-entropy of the 49 output tokens) | accuracy (minus the token accuracy)',
      REFERENCE_SEARCH.tokenLoss,
    )
    .option('--resume', 'continue from search/<task>/state.json', false)
    .option('--force', 'start over, replacing an existing state', false)
    .action(async (opts: SearchCliOptions & { task: string[] }) => {
      await searchCommand({ ...opts, tasks: opts.task }, deps);
    });
  return c;
}
