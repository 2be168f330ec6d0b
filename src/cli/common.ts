// What every vtv command shares: the run directory and its config.json, opening the engine (after
// checking that the weights fit the model), opening the dataset, and progress bars.

import { existsSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import { z } from 'zod';
import { maeKeys, vqDecodeKeys, vqEncodeKeys } from '../checkpoint/keys.js';
import { configInWeights, readSafetensorsHeader } from '../checkpoint/safetensors.js';
import { BACKENDS, type Backend, type ModelConfig, PRECISIONS, PRESETS, type Precision, preset } from '../config.js';
import { openBundled } from '../data/bundled.js';
import type { SegmentationDataset } from '../data/dataset.js';
import { DATASETS, type DatasetName } from '../data/dataset.js';
import { openPascal5i } from '../data/pascal5i.js';
import { Engine } from '../engine.js';
import { UsageError } from '../errors.js';
import type { ForwardEngine } from '../method/forward-engine.js';
import { writeJsonAtomic } from '../run/atomic-file.js';
import { readJsonFile } from '../run/json-file.js';
import { RUN_FORMAT_VERSION, type RunConfig, type RunPaths, runPaths } from '../run/layout.js';
import { acquireLock, checkNotLocked, type RunLock, runLockPath, searchLockPath, searchLocks } from '../run/lock.js';

/** Options every run-based command accepts. */
export interface RunOptions {
  run?: string;
  name?: string;
  model?: string;
  weights?: string[];
  backend?: Backend;
  precision?: Precision;
  threads?: number;
  dataset?: DatasetName;
  dataDir?: string;
}

export type OpenedEngine = ForwardEngine & {
  close?: () => Promise<void> | void;
  backend?: { name: string; precision?: string; reason: string; threads: number };
  /** Present on engines opened with needs.vqganEncoder (the token search objective's targets). */
  encodeTokens?: (canvases: Float32Array) => Promise<Int32Array>;
};

/** Optional parts of the model a command needs beyond the MAE and the VQGAN decoder. */
export interface EngineNeeds {
  /** The VQGAN encoder (vae.encoder.*, vae.quant_conv.*), for target tokens of `vtv search --objective token`. */
  vqganEncoder?: boolean;
}

/** Seams for tests: the engine factory and where messages go. */
export interface Deps {
  openEngine: (
    config: ModelConfig,
    weights: string[],
    backend: RunConfig['backend'],
    threads: number,
    needs?: EngineNeeds,
    precision?: Precision,
  ) => Promise<OpenedEngine>;
  log: (msg: string) => void;
  progress: boolean;
}

export const defaultDeps: Deps = {
  openEngine: (config, weights, backend, threads, needs = {}, precision = 'fp32') =>
    Engine.open({ config, weights, backend, threads, precision, needVqganEncoder: needs.vqganEncoder ?? false }),
  log: (m) => console.error(m),
  progress: process.stderr.isTTY === true,
};

export { UsageError };

/** A run name (--name) is one path component under runs/; --run takes any directory. */
const RUN_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export function resolveRunDir(o: RunOptions): string {
  if (o.run !== undefined) {
    if (o.run.trim() === '') throw new UsageError('--run: give a directory');
    return resolve(o.run);
  }
  const name = o.name ?? 'default';
  if (!RUN_NAME.test(name) || name.includes('..')) {
    throw new UsageError(
      `--name '${name}' is not a run name: use letters, digits, '_', '-' and '.' (it names a folder under runs/); to put a run elsewhere, use --run <dir>`,
    );
  }
  return resolve(join('runs', name));
}

/** The model config stored in the first weights file that has one (`vtv convert`, the random-weights maker). */
export function configFromWeights(paths: string[]): ModelConfig | undefined {
  for (const p of paths) {
    const c = configInWeights(p);
    if (c) return c;
  }
  return undefined;
}

const RunConfigSchema = z.object({
  format: z.literal('vtv-run'),
  version: z.number().int(),
  model: z.string().refine((m) => Object.hasOwn(PRESETS, m), { message: `not a model preset (known: ${Object.keys(PRESETS).join(', ')})` }),
  weights: z.array(z.string()),
  dataset: z.enum(DATASETS),
  dataDir: z.string().optional(),
  backend: z.enum(BACKENDS),
  precision: z.enum(PRECISIONS).optional(),
  created: z.string(),
});

/**
 * Checks that the weights hold every tensor the engine needs for this model, with the right shapes,
 * before the engine maps them, so a mismatch names the file, key and both shapes.
 */
export function checkWeights(config: ModelConfig, paths: string[], needs: EngineNeeds = {}): void {
  if (paths.length === 0) throw new UsageError('no weights given: pass --weights <file.safetensors> (convert a checkpoint with `vtv convert`)');
  const have = new Map<string, { shape: number[]; file: string }>();
  for (const p of paths) {
    if (!existsSync(p)) throw new UsageError(`weights file ${p} does not exist`);
    for (const [k, t] of readSafetensorsHeader(p).tensors) have.set(k, { shape: t.shape, file: p });
  }
  const want = new Map([...maeKeys(config), ...[...vqDecodeKeys(config)].map(([k, s]) => [`vae.${k}`, s] as const)]);
  const missing: string[] = [];
  for (const [k, shape] of want) {
    const h = have.get(k);
    if (!h) missing.push(k);
    else if (h.shape.join(',') !== shape.join(',')) {
      throw new UsageError(
        `weights do not match model '${config.name}': ${h.file} has ${k} of shape [${h.shape}], the model needs [${shape}] (wrong --model or wrong file?)`,
      );
    }
  }
  if (missing.length) {
    throw new UsageError(
      `weights do not match model '${config.name}': ${missing.length} tensor(s) missing from ${paths.join(', ')}, e.g. ${missing.slice(0, 3).join(', ')}`,
    );
  }
  if (needs.vqganEncoder) {
    const enc = [...vqEncodeKeys(config)].map(([k, s]) => [`vae.${k}`, s] as const);
    const lacking = enc.filter(([k]) => !have.has(k)).map(([k]) => k);
    if (lacking.length) {
      throw new UsageError(
        `the token objective (--objective token) needs the VQGAN encoder weights (vae.encoder.*, vae.quant_conv.*), and ${paths.join(', ')} ` +
          `lack ${lacking.length} of them, e.g. ${lacking.slice(0, 2).join(', ')}: convert the checkpoints again with the VQGAN ` +
          '(`vtv convert --mae <.pth> --vqgan <VQGAN last.ckpt> --out <file>`) and start a run with that file, or use --objective pixel',
      );
    }
    for (const [k, shape] of enc) {
      const h = have.get(k)!;
      if (h.shape.join(',') !== shape.join(',')) {
        throw new UsageError(`weights do not match model '${config.name}': ${h.file} has ${k} of shape [${h.shape}], the model needs [${shape}]`);
      }
    }
  }
}

export interface RunContext {
  dir: string;
  paths: RunPaths;
  run: RunConfig;
  config: ModelConfig;
}

/**
 * Opens (or, with create, starts) a run: its config.json fixes the model, weights and dataset; flags that
 * contradict it are refused rather than silently mixing two setups in one directory.
 */
export function openRun(o: RunOptions, create: boolean): RunContext {
  if (o.backend !== undefined && !BACKENDS.includes(o.backend)) {
    throw new UsageError(`--backend must be ${BACKENDS.join(', ')}, got '${o.backend}'`);
  }
  if (o.precision !== undefined && !PRECISIONS.includes(o.precision)) {
    throw new UsageError(`--precision must be ${PRECISIONS.join(' or ')}, got '${o.precision}' (bf16 runs on the cuda backend only)`);
  }
  checkThreads(o.threads);
  const dir = resolveRunDir(o);
  const paths = runPaths(dir);
  let run: RunConfig;
  if (existsSync(paths.config)) {
    run = readJsonFile(paths.config, 'vtv run config', RunConfigSchema) as RunConfig;
    const clash = (flag: string, given: unknown, stored: unknown) => {
      if (given !== undefined && JSON.stringify(given) !== JSON.stringify(stored)) {
        throw new UsageError(
          `run ${dir} was made with ${flag} ${JSON.stringify(stored)}, not ${JSON.stringify(given)}: use another --run (nothing was changed)`,
        );
      }
    };
    clash('--model', o.model, run.model);
    clash(
      '--weights',
      o.weights?.map((w) => resolve(w)),
      run.weights,
    );
    clash('--dataset', o.dataset, run.dataset);
    if (o.backend) run.backend = o.backend;
    if (o.precision) run.precision = o.precision;
  } else {
    if (!create) throw new UsageError(`${dir} is not a vtv run (no config.json): run \`vtv collect --run ${o.run ?? dir}\` first`);
    const weights = (o.weights ?? []).map((w) => resolve(w));
    const fromWeights = configFromWeights(weights);
    run = {
      format: 'vtv-run',
      version: RUN_FORMAT_VERSION,
      model: o.model ?? fromWeights?.name ?? 'mae-vqgan-vit-large',
      weights,
      dataset: o.dataset ?? 'bundled',
      dataDir: o.dataDir ? resolve(o.dataDir) : undefined,
      backend: o.backend ?? 'auto',
      ...(o.precision ? { precision: o.precision } : {}),
      created: new Date().toISOString(),
    };
  }
  const config = preset(run.model);
  if (create && !existsSync(paths.config)) {
    checkWeights(config, run.weights);
    writeJsonAtomic(paths.config, run);
  }
  return { dir, paths, run, config };
}

export async function openEngine(ctx: RunContext, deps: Deps, threads = 0, needs: EngineNeeds = {}): Promise<OpenedEngine> {
  checkWeights(ctx.config, ctx.run.weights, needs);
  const engine = await deps.openEngine(ctx.config, ctx.run.weights, ctx.run.backend, threads, needs, ctx.run.precision ?? 'fp32');
  if (engine.backend) deps.log(`engine: ${engine.backend.name} (${engine.backend.reason}), ${engine.backend.threads} thread(s)`);
  return engine;
}

export function openDataset(run: RunConfig): SegmentationDataset {
  if (run.dataset === 'bundled') return openBundled();
  if (!run.dataDir) throw new UsageError('--dataset pascal5i needs --data-dir <folder holding VOCdevkit/>');
  return openPascal5i({ base: run.dataDir });
}

/** A progress bar with rate and ETA on a TTY, or nothing (the log files have everything). */
export function progressBar(
  deps: Deps,
  label: string,
  total: number,
  extra = '',
): { update: (v: number, payload?: Record<string, string>) => void; stop: () => void } {
  if (!deps.progress) return { update: () => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} {bar} {value}/{total} | {rate}/s | ETA {eta_formatted}${extra}`,
      hideCursor: true,
      etaBuffer: 20,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  const t0 = performance.now();
  bar.start(total, 0, { rate: '0.0' });
  return {
    update: (v, payload = {}) => bar.update(v, { ...payload, rate: (v / ((performance.now() - t0) / 1000)).toFixed(1) }),
    stop: () => bar.stop(),
  };
}

export const parseIntArg =
  (name: string) =>
  (v: string): number => {
    const n = v.trim() === '' ? Number.NaN : Number(v);
    if (!Number.isSafeInteger(n)) throw new UsageError(`${name} must be an integer, got '${v}'`);
    return n;
  };
export const parseFloatArg =
  (name: string) =>
  (v: string): number => {
    const n = v.trim() === '' ? Number.NaN : Number(v);
    if (!Number.isFinite(n)) throw new UsageError(`${name} must be a number, got '${v}'`);
    return n;
  };
export const parseList = (v: string): string[] =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
export const parseIntList =
  (name: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER) =>
  (v: string): number[] => {
    const xs = parseList(v).map(min === Number.MIN_SAFE_INTEGER ? parseIntArg(name) : intInRange(name, min, max));
    if (xs.length === 0) throw new UsageError(`${name}: give at least one value`);
    if (xs.length > 10000) throw new UsageError(`${name}: at most 10000 values`);
    return xs;
  };

/** Most --threads: a few per core is plenty; beyond that threads only cost memory (and a typo can exhaust the system's). */
export const maxThreads = () => 4 * Math.max(1, availableParallelism());

export function checkThreads(threads: number | undefined): void {
  if (threads === undefined) return;
  const max = maxThreads();
  if (!Number.isInteger(threads) || threads < 0 || threads > max) {
    throw new UsageError(`--threads must be 0 (every core) to ${max} (4 per core on this machine), got ${threads}`);
  }
}

const GiB = 2 ** 30;
/** The share of the machine's memory one command may plan to allocate up front. */
export const memoryBudget = () => Math.min(totalmem() / 2, 16 * GiB);

/**
 * Refuses a plan whose up-front allocations exceed the memory budget, before allocating anything,
 * printing the estimate and what to lower.
 */
export function checkMemory(bytes: number, what: string, lower: string): void {
  const budget = memoryBudget();
  if (bytes > budget) {
    throw new UsageError(
      `${what} needs about ${(bytes / GiB).toFixed(1)} GiB of memory, more than the ${(budget / GiB).toFixed(1)} GiB vtv allows itself on this machine (half its ${(totalmem() / GiB).toFixed(1)} GiB, at most 16): lower ${lower}`,
    );
  }
}

/** Locks a run for a command that writes its shared files; refuses while a search of `tasks` (or any, with 'all') runs. */
export function lockRun(ctx: { dir: string }, command: string, tasks: string[] | 'all'): RunLock {
  const lock = acquireLock(runLockPath(ctx.dir), `run ${ctx.dir}`);
  try {
    for (const t of tasks === 'all' ? searchLocks(ctx.dir) : tasks) {
      checkNotLocked(searchLockPath(ctx.dir, t), `search '${t}' of run ${ctx.dir}`, `vtv ${command}`);
    }
  } catch (e) {
    lock.release();
    throw e;
  }
  return lock;
}

/** Locks one search of a run; refuses while a command holds the whole run (collect, eval). */
export function lockSearch(ctx: { dir: string }, task: string): RunLock {
  const lock = acquireLock(searchLockPath(ctx.dir, task), `search '${task}' of run ${ctx.dir}`);
  try {
    checkNotLocked(runLockPath(ctx.dir), `run ${ctx.dir}`, 'vtv search');
  } catch (e) {
    lock.release();
    throw e;
  }
  return lock;
}

/** A parser that also checks [min, max] (when parsed, before anything is allocated). */
const inRange =
  (parse: (name: string) => (v: string) => number, unbounded: number) =>
  (name: string, min: number, max: number = unbounded) =>
  (v: string): number => {
    const n = parse(name)(v);
    if (n < min || n > max) throw new UsageError(`${name} must be ${max === unbounded ? `at least ${min}` : `${min} to ${max}`}, got ${n}`);
    return n;
  };

/** Integer option in [min, max]. */
export const intInRange = inRange(parseIntArg, Number.MAX_SAFE_INTEGER);

/** Number option in [min, max]. */
export const floatInRange = inRange(parseFloatArg, Number.POSITIVE_INFINITY);
