// A sweep directory's life: storing the expanded sweep, the one shared collection, and running one cell
// (what every executor runs per cell: a local worker's child process or a Slurm array element).
import { copyFileSync, existsSync, linkSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { collectCommand } from '../cli/collect.js';
import { type Deps, defaultDeps, UsageError } from '../cli/common.js';
import { evalCommand } from '../cli/eval.js';
import { searchCommand } from '../cli/search.js';
import { writeJsonAtomic } from '../run/atomic-file.js';
import { MULTITASK, runPaths } from '../run/layout.js';
import { type CellStatus, currentRunner, readCellStatus, type SweepPaths, sweepPaths, writeCellStatus } from './layout.js';
import { acquireLock } from './lock.js';
import { type Cell, type Sweep, sweepIdentity } from './spec.js';

export function loadSweep(dir: string): { sweep: Sweep; paths: SweepPaths } {
  const paths = sweepPaths(dir);
  if (!existsSync(paths.sweep)) throw new UsageError(`${dir} is not a sweep (no sweep.json): start one with \`vtv sweep run ${dir} --file <sweep.yaml>\``);
  let sweep: Sweep;
  try {
    sweep = JSON.parse(readFileSync(paths.sweep, 'utf8')) as Sweep;
  } catch (e) {
    throw new UsageError(`${paths.sweep} cannot be read: ${(e as Error).message}`);
  }
  if (sweep.format !== 'vtv-sweep' || sweep.version !== 1) throw new UsageError(`${paths.sweep} is not a vtv sweep (version 1)`);
  return { sweep, paths };
}

/**
 * Stores the sweep in `dir`, or checks that it is the one already there: the same directory with a
 * different grid or budget would mix two studies, so it is refused. Slurm settings may change (the
 * new ones are kept).
 */
export function storeSweep(dir: string, sweep: Sweep): SweepPaths {
  const paths = sweepPaths(dir);
  if (existsSync(paths.sweep)) {
    const old = loadSweep(dir).sweep;
    if (sweepIdentity(old) !== sweepIdentity(sweep)) {
      const diff = old.cells.length !== sweep.cells.length ? ` (${old.cells.length} cells there, ${sweep.cells.length} now)` : '';
      throw new UsageError(
        `${dir} holds a different sweep${diff}: use another directory, or run \`vtv sweep run ${dir}\` with no file or grid flags to continue the one there`,
      );
    }
  }
  mkdirSync(paths.root, { recursive: true });
  writeJsonAtomic(paths.sweep, sweep);
  return paths;
}

/** The shared collection is complete once taskness.json (the last file `vtv collect` writes) is there. */
export function sharedCollected(paths: SweepPaths): boolean {
  const r = runPaths(paths.shared);
  return existsSync(r.means) && existsSync(r.taskness);
}

/** Runs the one `vtv collect` of the sweep into shared/, unless it is done. */
export async function prepareShared(dir: string, threads: number, deps: Deps = defaultDeps): Promise<void> {
  const { sweep, paths } = loadSweep(dir);
  if (sharedCollected(paths)) {
    deps.log(`sweep: the shared collection in ${paths.shared} is there`);
    return;
  }
  mkdirSync(paths.shared, { recursive: true });
  const lock = acquireLock(join(paths.shared, 'collect.lock'), `the shared collection of sweep ${dir}`);
  try {
    await collectCommand({ run: paths.shared, ...sweep.run, ...sweep.collect, threads, force: true }, deps);
  } finally {
    lock.release();
  }
}

/** A cell's run directory: the shared config, and links to the shared collection's files. */
export function ensureCellDir(paths: SweepPaths, cell: Cell): string {
  if (!sharedCollected(paths)) {
    throw new UsageError(`the shared collection of ${paths.root} is missing (${paths.shared}): \`vtv sweep run\` runs it first`);
  }
  const shared = runPaths(paths.shared);
  const own = runPaths(paths.cell(cell.id));
  mkdirSync(own.root, { recursive: true });
  if (!existsSync(own.config)) copyFileSync(shared.config, own.config);
  for (const f of ['means', 'prompts', 'taskness'] as const) {
    if (existsSync(own[f]) || !existsSync(shared[f])) continue;
    try {
      linkSync(shared[f], own[f]);
    } catch {
      copyFileSync(shared[f], own[f]);
    }
  }
  // A link made before a re-collection would point at the old file (rename replaces the name only).
  if (statSync(own.means).size !== statSync(shared.means).size) throw new UsageError(`${own.means} is not the shared collection's file: remove it`);
  return own.root;
}

/** The search directory name of a cell (a task id, or "multitask"). */
export const searchKey = (cell: Cell) => (cell.tasks.length === 1 ? cell.tasks[0]! : MULTITASK);

export function cellDone(paths: SweepPaths, cell: Cell): boolean {
  return readCellStatus(paths, cell)?.state === 'done' && existsSync(runPaths(paths.cell(cell.id)).evalJson);
}

/** The step a cell's checkpoint holds (0 when it has none). */
export function checkpointStep(paths: SweepPaths, cell: Cell): number {
  const p = runPaths(paths.cell(cell.id)).searchState(searchKey(cell));
  if (!existsSync(p)) return 0;
  try {
    return (JSON.parse(readFileSync(p, 'utf8')) as { step: number }).step;
  } catch {
    return 0;
  }
}

export type CellOutcome = 'done' | 'stopped';

/**
 * Runs cell `index`: `vtv search` (resumed from its checkpoint when there is one), then `vtv eval`, in
 * the cell's run directory, recording its state in sweep-cell.json. Safe to run again at any point
 * (after a kill, a requeue or a failure): finished parts are kept, a done cell returns at once. SIGTERM
 * or SIGINT stops the search after its current step with the checkpoint written ('stopped').
 */
export async function runCell(dir: string, index: number, threads: number, deps: Deps = defaultDeps): Promise<CellOutcome> {
  const { sweep, paths } = loadSweep(dir);
  const cell = sweep.cells[index];
  if (!Number.isInteger(index) || !cell) throw new UsageError(`--index ${index}: sweep ${dir} has cells 0..${sweep.cells.length - 1}`);
  mkdirSync(paths.cell(cell.id), { recursive: true });
  const lock = acquireLock(paths.cellLock(cell.id), `cell ${cell.id} of sweep ${dir}`);
  let stop = false;
  let phase: 'search' | 'eval' = 'search';
  // The search stops after its step with its checkpoint written; an eval has no checkpoint (it runs
  // again from the start), so it ends at once.
  const onTerm = () => {
    if (phase === 'eval') {
      deps.log(`cell ${cell.id}: SIGTERM during eval, which will run again`);
      lock.release();
      process.exit(143);
    }
    deps.log(`cell ${cell.id}: SIGTERM, stopping after this step (the checkpoint will be written)`);
    stop = true;
  };
  process.on('SIGTERM', onTerm);
  const prev = readCellStatus(paths, cell);
  const status: CellStatus = {
    format: 'vtv-sweep-cell',
    version: 1,
    id: cell.id,
    state: 'running',
    phase: 'search',
    runner: currentRunner(),
    attempts: (prev?.attempts ?? 0) + 1,
    resumedFrom: checkpointStep(paths, cell),
    started: new Date().toISOString(),
    updated: '',
  };
  try {
    if (cellDone(paths, cell)) {
      deps.log(`cell ${cell.id}: already done`);
      return 'done';
    }
    const runDir = ensureCellDir(paths, cell);
    const rp = runPaths(runDir);
    const key = searchKey(cell);
    writeCellStatus(paths, status);
    deps.log(
      `cell ${cell.id} (attempt ${status.attempts}${status.runner.slurm ? `, Slurm job ${status.runner.slurm.jobId}` : ''}): ${
        status.resumedFrom ? `resuming the search from its checkpoint at step ${status.resumedFrom}` : 'starting the search'
      }`,
    );
    if (!existsSync(rp.subset(key))) {
      const { search } = cell;
      await searchCommand(
        { run: runDir, tasks: cell.tasks, fold: cell.fold, ...search, threads, resume: existsSync(rp.searchState(key)), shouldStop: () => stop },
        deps,
      );
      if (!existsSync(rp.subset(key))) {
        writeCellStatus(paths, { ...status, state: 'stopped' });
        return 'stopped';
      }
    }
    if (!existsSync(rp.evalJson)) {
      phase = 'eval';
      writeCellStatus(paths, { ...status, phase: 'eval' });
      await evalCommand({ run: runDir, tasks: cell.tasks, folds: cell.evalFolds, ...sweep.eval, threads }, deps);
    }
    writeCellStatus(paths, { ...status, state: 'done', phase: undefined });
    deps.log(`cell ${cell.id}: done`);
    return 'done';
  } catch (e) {
    writeCellStatus(paths, { ...status, state: 'failed', error: (e as Error).message });
    throw e;
  } finally {
    process.off('SIGTERM', onTerm);
    lock.release();
  }
}
