// What a sweep is: a sweep file (JSON or YAML) or the `vtv sweep run` flags, checked with zod, then
// expanded into cells, one per (task, fold, seed, combination of the search options given as lists).
// The expanded sweep is stored as <sweep>/sweep.json; every later command (a cell's worker, status,
// collect, a second `vtv sweep run`) reads it from there, so a sweep cannot change under its cells.

import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { BACKENDS, type Backend, PRECISIONS, type Precision } from '../config.js';
import { DATASETS, type DatasetName } from '../data/dataset.js';
import { getTask } from '../data/tasks/index.js';
import { InputError } from '../errors.js';
import { type CollectOptions, REFERENCE_COLLECT } from '../method/collect.js';
import { REFERENCE_SEARCH, type SearchOptions } from '../method/reinforce.js';

const int = z.number().int();
const nonNeg = int.min(0);
const positive = int.min(1);
const oneOrMany = <T extends z.ZodType>(s: T) => z.union([s, z.array(s).min(1)]);

/** The search options a sweep may set; each may be one value or a list of values to cross. */
const SearchGridSchema = z
  .strictObject({
    steps: oneOrMany(positive),
    samplesPerStep: oneOrMany(positive),
    trainImages: oneOrMany(positive),
    valImages: oneOrMany(nonNeg),
    lr: oneOrMany(z.number().positive()),
    init: oneOrMany(z.number()),
    sparsity: oneOrMany(z.number().min(0)),
    restrict: oneOrMany(z.enum(['none', 'encoder-only', 'decoder-only'])),
    granularity: oneOrMany(z.union([z.literal(0), z.literal(1), z.literal(2)])),
    validateEvery: oneOrMany(nonNeg),
    select: oneOrMany(z.enum(['best', 'last'])),
    finalSubset: oneOrMany(z.enum(['sample', 'threshold'])),
    episodeSeed: oneOrMany(int),
    checkpointEvery: oneOrMany(positive),
    snapshotEvery: oneOrMany(nonNeg),
    engineBatch: oneOrMany(positive),
    objective: oneOrMany(z.enum(['pixel', 'token'])),
    tokenLoss: oneOrMany(z.enum(['ce', 'accuracy'])),
  })
  .partial();

export const SEARCH_GRID_KEYS = Object.keys(SearchGridSchema.shape) as (keyof z.infer<typeof SearchGridSchema>)[];

export const SlurmSettingsSchema = z
  .strictObject({
    partition: z.string().min(1),
    account: z.string().min(1),
    time: z.string().min(1),
    gres: z.string().min(1),
    cpusPerTask: positive,
    mem: z.string().min(1),
    /** Shell lines run before vtv in every job (module load, conda activate, a container wrapper's set-up). */
    setup: z.array(z.string()),
    /** More `#SBATCH` options, verbatim (e.g. "--qos=long"). */
    sbatchArgs: z.array(z.string().regex(/^--?[A-Za-z]/, 'an sbatch option such as --qos=long')),
    /** Most array elements running at once (the %N of --array). */
    maxParallel: positive,
    /** How a job starts vtv (default: this node binary and this vtv's main.js, by absolute path). */
    vtvCommand: z.string().min(1),
  })
  .partial();
export type SlurmSettings = z.infer<typeof SlurmSettingsSchema>;

export const SweepFileSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ".", "_" and "-" only')
    .optional(),
  model: z.string().min(1).optional(),
  /** Weights files, relative to the sweep file (or to the working directory for flags). */
  weights: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  dataset: z.enum(DATASETS).default('bundled'),
  dataDir: z.string().min(1).optional(),
  backend: z.enum(BACKENDS).default('auto'),
  precision: z.enum(PRECISIONS).optional(),
  /** Task ids; a list inside the list is one multi-task search (e.g. [segmentation, colorization]). */
  tasks: z.array(z.union([z.string().min(1), z.array(z.string().min(1)).min(2)])).min(1),
  folds: z.array(nonNeg).min(1).default([0]),
  seeds: z.array(int).min(1).default([0]),
  search: SearchGridSchema.default({}),
  /** The one shared `vtv collect` (default: the reference's options, over the sweep's tasks). */
  collect: z
    .strictObject({
      tasks: z.array(z.string().min(1)).min(1),
      folds: z.array(nonNeg).min(1),
      episodesPerFold: positive,
      keep: positive,
      seed: int,
      batch: positive,
      referenceQuirks: z.boolean(),
    })
    .partial()
    .default({}),
  /** Each cell's `vtv eval`; folds "search" evaluates on the fold the cell searched. */
  eval: z
    .strictObject({
      folds: z.union([z.literal('search'), z.array(nonNeg).min(1)]),
      episodes: positive,
      seed: int,
      batch: positive,
      examples: nonNeg,
      drawPerFold: z.boolean(),
    })
    .partial()
    .default({}),
  slurm: SlurmSettingsSchema.default({}),
});

export type CellSearch = SearchOptions & { granularity: 0 | 1 | 2; episodeSeed: number; valImages?: number };

export interface Cell {
  index: number;
  /** Directory name under cells/: tasks, fold, seed and the options that vary across the sweep. */
  id: string;
  tasks: string[];
  fold: number;
  search: CellSearch;
  evalFolds: number[];
}

export interface EvalSettings {
  episodes: number;
  seed: number;
  batch: number;
  examples: number;
  drawPerFold: boolean;
}

/** sweep.json: the expanded sweep. */
export interface Sweep {
  format: 'vtv-sweep';
  version: 1;
  name: string;
  run: {
    model?: string;
    weights: string[];
    dataset: DatasetName;
    dataDir?: string;
    backend: Backend;
    precision?: Precision;
  };
  collect: CollectOptions;
  eval: EvalSettings;
  /** The options that vary across cells (their names appear in the cell ids). */
  varied: string[];
  cells: Cell[];
  slurm: SlurmSettings;
}

export class SweepSpecError extends InputError {}

function zodMessage(where: string, e: z.ZodError): string {
  const lines = e.issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`);
  return `${where} is not a valid sweep:\n${lines.join('\n')}`;
}

/** Reads a sweep file (.json, .yaml or .yml) and checks it; errors name the file and the field. */
export function readSweepFile(path: string): { file: z.infer<typeof SweepFileSchema>; base: string } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SweepSpecError(`cannot read sweep file ${path}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = /\.ya?ml$/i.test(path) ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw new SweepSpecError(`sweep file ${path} is not valid ${/\.ya?ml$/i.test(path) ? 'YAML' : 'JSON'}: ${(e as Error).message}`);
  }
  return { file: parseSweepObject(raw, `sweep file ${path}`), base: dirname(resolve(path)) };
}

export function parseSweepObject(raw: unknown, where: string): z.infer<typeof SweepFileSchema> {
  const r = SweepFileSchema.safeParse(raw);
  if (!r.success) throw new SweepSpecError(zodMessage(where, r.error));
  return r.data;
}

const idValue = (v: unknown) => String(v).replace(/[^A-Za-z0-9.]/g, '');

/** Expands a checked sweep file into cells; `base` is where relative paths start. */
export function expandSweep(f: z.infer<typeof SweepFileSchema>, base: string, where: string): Sweep {
  const taskLists = f.tasks.map((t) => (Array.isArray(t) ? t : [t]));
  for (const ts of taskLists) {
    for (const t of ts) {
      try {
        getTask(t);
      } catch (e) {
        throw new SweepSpecError(`${where}: tasks: ${(e as Error).message}`);
      }
    }
    if (new Set(ts).size !== ts.length) throw new SweepSpecError(`${where}: tasks: [${ts.join(', ')}] names a task twice`);
  }
  const canonical = taskLists.map((ts) => ts.map((t) => getTask(t).id));
  const grid: [string, unknown[]][] = SEARCH_GRID_KEYS.filter((k) => f.search[k] !== undefined).map((k) => {
    const v = f.search[k];
    return [k, Array.isArray(v) ? v : [v]];
  });
  for (const [k, vs] of grid) {
    if (new Set(vs.map((v) => JSON.stringify(v))).size !== vs.length) throw new SweepSpecError(`${where}: search.${k} lists a value twice`);
  }
  const varied = grid.filter(([, vs]) => vs.length > 1).map(([k]) => k);
  // Every combination of the listed option values, in file order (the last option varies fastest).
  let combos: Record<string, unknown>[] = [{}];
  for (const [k, vs] of grid) combos = combos.flatMap((c) => vs.map((v) => ({ ...c, [k]: v })));

  const collectTasks = f.collect.tasks ?? [...new Set(canonical.flat())];
  for (const t of collectTasks) {
    try {
      getTask(t);
    } catch (e) {
      throw new SweepSpecError(`${where}: collect.tasks: ${(e as Error).message}`);
    }
  }
  const cells: Cell[] = [];
  const ids = new Set<string>();
  for (const tasks of canonical)
    for (const fold of f.folds)
      for (const seed of f.seeds)
        for (const combo of combos) {
          const { granularity, episodeSeed, valImages, ...rest } = combo as Partial<CellSearch>;
          const search: CellSearch = {
            ...REFERENCE_SEARCH,
            ...rest,
            seed,
            granularity: granularity ?? 1,
            episodeSeed: episodeSeed ?? 42,
            ...(valImages !== undefined ? { valImages } : {}),
          };
          const id = [tasks.join('+'), `f${fold}`, `s${seed}`, ...varied.map((k) => `${k}${idValue(combo[k])}`)].join('-');
          if (ids.has(id)) throw new SweepSpecError(`${where}: two cells would share the directory cells/${id} (a task, fold or seed listed twice?)`);
          ids.add(id);
          cells.push({ index: cells.length, id, tasks, fold, search, evalFolds: f.eval.folds === 'search' || !f.eval.folds ? [fold] : f.eval.folds });
        }
  return {
    format: 'vtv-sweep',
    version: 1,
    name: f.name ?? 'sweep',
    run: {
      ...(f.model ? { model: f.model } : {}),
      weights: (Array.isArray(f.weights) ? f.weights : [f.weights]).map((w) => resolve(base, w)),
      dataset: f.dataset,
      ...(f.dataDir ? { dataDir: resolve(base, f.dataDir) } : {}),
      backend: f.backend,
      ...(f.precision ? { precision: f.precision } : {}),
    },
    collect: { ...REFERENCE_COLLECT, ...f.collect, tasks: collectTasks },
    eval: {
      episodes: f.eval.episodes ?? 1000,
      seed: f.eval.seed ?? 0,
      batch: f.eval.batch ?? 16,
      examples: f.eval.examples ?? 4,
      drawPerFold: f.eval.drawPerFold ?? false,
    },
    varied,
    cells,
    slurm: f.slurm,
  };
}

/** What must not change between two `vtv sweep run`s on one directory (the Slurm settings may). */
export function sweepIdentity(s: Sweep): string {
  const { slurm: _slurm, ...rest } = s;
  return JSON.stringify(rest);
}

/** Options on `vtv sweep run` that build a sweep without a file (the same checks apply). */
export interface SweepFlags {
  tasks?: string[];
  folds?: number[];
  seeds?: number[];
  set?: string[];
  model?: string;
  weights?: string[];
  dataset?: string;
  dataDir?: string;
  backend?: string;
  precision?: string;
  name?: string;
}

/** `--set key=v1,v2`: a search option and its values (numbers where they parse as numbers). */
export function sweepFromFlags(o: SweepFlags): z.infer<typeof SweepFileSchema> {
  const search: Record<string, unknown> = {};
  for (const kv of o.set ?? []) {
    const m = /^([A-Za-z]+)=(.+)$/.exec(kv);
    if (!m) throw new SweepSpecError(`--set ${kv}: expected option=value[,value...], e.g. --set granularity=0,1`);
    const key = m[1]!.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const values = m[2]!.split(',').map((v) => (v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : v.trim()));
    search[key] = values.length === 1 ? values[0] : values;
  }
  const raw: Record<string, unknown> = {
    ...(o.name ? { name: o.name } : {}),
    ...(o.model ? { model: o.model } : {}),
    weights: o.weights,
    ...(o.dataset ? { dataset: o.dataset } : {}),
    ...(o.dataDir ? { dataDir: o.dataDir } : {}),
    ...(o.backend ? { backend: o.backend } : {}),
    ...(o.precision ? { precision: o.precision } : {}),
    tasks: o.tasks?.map((t) => (t.includes('+') ? t.split('+') : t)),
    ...(o.folds ? { folds: o.folds } : {}),
    ...(o.seeds ? { seeds: o.seeds } : {}),
    search,
  };
  return parseSweepObject(raw, 'the sweep flags (--tasks, --folds, --seeds, --set, --weights)');
}
