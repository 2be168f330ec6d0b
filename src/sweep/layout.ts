// The files of one sweep directory (default sweeps/<name>):
//
// sweeps/<name>/
//   sweep.json              Sweep: the expanded sweep, every cell with its full search options (spec.ts)
//   sweep.lock              held by the `vtv sweep run` working on the directory (lock.ts)
//   shared/                 a vtv run directory holding the one collection every cell uses:
//                           config.json, means.safetensors, prompts.json, taskness.json
//   cells/<id>/             one vtv run directory per cell: config.json (the shared one), hard links
//                           to shared/'s means.safetensors, prompts.json and taskness.json (copies where
//                           a link cannot be made), then search/ and eval/ as `vtv search` and `vtv eval`
//                           write them, so `vtv search --run cells/<id> --resume`, `vtv eval` and
//                           `vtv report` work on a cell as on any run
//     sweep-cell.json       CellStatus: running / done / failed (with the error), who runs it, attempts
//     sweep-cell.lock       held by the process running the cell
//   logs/<id>.log           the local executor's log of each cell (every attempt appended)
//   logs/collect.log        the shared collection's log
//   logs/slurm-<i>.log      the Slurm executor's log of array element i (cell i; requeues appended)
//   slurm/cells.sbatch      the job array script; slurm/collect.sbatch, the collection job
//   slurm/submissions.json  the job ids submitted, newest last
//   results.json, results.md, report/index.html    `vtv sweep collect`
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { writeJsonAtomic } from '../run/atomic-file.js';
import type { Cell } from './spec.js';

export interface SweepPaths {
  root: string;
  sweep: string;
  lock: string;
  shared: string;
  cellsDir: string;
  cell: (id: string) => string;
  cellStatus: (id: string) => string;
  cellLock: (id: string) => string;
  logs: string;
  cellLog: (id: string) => string;
  collectLog: string;
  slurmDir: string;
  slurmCells: string;
  slurmCollect: string;
  submissions: string;
  resultsJson: string;
  resultsMd: string;
  report: string;
}

export function sweepPaths(root: string): SweepPaths {
  const cell = (id: string) => join(root, 'cells', id);
  return {
    root,
    sweep: join(root, 'sweep.json'),
    lock: join(root, 'sweep.lock'),
    shared: join(root, 'shared'),
    cellsDir: join(root, 'cells'),
    cell,
    cellStatus: (id) => join(cell(id), 'sweep-cell.json'),
    cellLock: (id) => join(cell(id), 'sweep-cell.lock'),
    logs: join(root, 'logs'),
    cellLog: (id) => join(root, 'logs', `${id}.log`),
    collectLog: join(root, 'logs', 'collect.log'),
    slurmDir: join(root, 'slurm'),
    slurmCells: join(root, 'slurm', 'cells.sbatch'),
    slurmCollect: join(root, 'slurm', 'collect.sbatch'),
    submissions: join(root, 'slurm', 'submissions.json'),
    resultsJson: join(root, 'results.json'),
    resultsMd: join(root, 'results.md'),
    report: join(root, 'report'),
  };
}

/** Where a cell's process runs: this host and pid, plus the Slurm job when there is one. */
export interface Runner {
  host: string;
  pid: number;
  slurm?: { jobId: string; arrayJobId?: string; arrayTaskId?: string; restartCount: number };
}

export function currentRunner(): Runner {
  const e = process.env;
  return {
    host: hostname(),
    pid: process.pid,
    ...(e.SLURM_JOB_ID
      ? {
          slurm: {
            jobId: e.SLURM_JOB_ID,
            ...(e.SLURM_ARRAY_JOB_ID ? { arrayJobId: e.SLURM_ARRAY_JOB_ID } : {}),
            ...(e.SLURM_ARRAY_TASK_ID ? { arrayTaskId: e.SLURM_ARRAY_TASK_ID } : {}),
            restartCount: Number(e.SLURM_RESTART_COUNT ?? 0),
          },
        }
      : {}),
  };
}

/** sweep-cell.json, rewritten atomically at every change of a cell's state. */
export interface CellStatus {
  format: 'vtv-sweep-cell';
  version: 1;
  id: string;
  state: 'running' | 'done' | 'failed' | 'stopped';
  phase?: 'search' | 'eval';
  runner: Runner;
  /** Processes that have started this cell (a restart after a kill or a requeue adds one). */
  attempts: number;
  /** The search step the latest attempt started from (0: from scratch; more: resumed from its checkpoint). */
  resumedFrom?: number;
  started: string;
  updated: string;
  error?: string;
}

export function readCellStatus(paths: SweepPaths, cell: Pick<Cell, 'id'>): CellStatus | undefined {
  const p = paths.cellStatus(cell.id);
  if (!existsSync(p)) return undefined;
  try {
    const s = JSON.parse(readFileSync(p, 'utf8')) as CellStatus;
    return s.format === 'vtv-sweep-cell' ? s : undefined;
  } catch {
    return undefined;
  }
}

export function writeCellStatus(paths: SweepPaths, s: CellStatus): void {
  writeJsonAtomic(paths.cellStatus(s.id), { ...s, updated: new Date().toISOString() });
}
