// `vtv sweep`: many searches as one study. A sweep file (JSON or YAML) or flags cross tasks x folds x
// seeds x search options into cells, one run directory each, all sharing one collection of task
// vectors; `run` executes them on local workers (one per GPU or CPU slice) or as a Slurm job array,
// `status` shows each cell, `collect` gathers one evaluation table and report. src/sweep/ holds the
// machinery; this file is the command line.

import { existsSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { DATASETS } from '../data/dataset.js';
import { InterruptedError, VtvError } from '../errors.js';
import { collectSweep } from '../sweep/collect.js';
import { sweepPaths } from '../sweep/layout.js';
import { CELL_STOPPED_EXIT, runLocal } from '../sweep/local.js';
import { acquireLock, LockHeldError } from '../sweep/lock.js';
import { cellsScript, collectScript, defaultVtvCommand, queueView, submitSweep } from '../sweep/slurm.js';
import {
  expandSweep,
  readSweepFile,
  type SlurmSettings,
  SlurmSettingsSchema,
  type Sweep,
  type SweepFlags,
  SweepSpecError,
  sweepFromFlags,
} from '../sweep/spec.js';
import { statusText, sweepStatus } from '../sweep/status.js';
import { cellDone, loadSweep, prepareShared, runCell, sharedCollected, storeSweep } from '../sweep/sweep.js';
import { type Deps, defaultDeps, parseIntArg, parseIntList, parseList, UsageError } from './common.js';

export interface SweepRunOptions extends Omit<SweepFlags, 'name'> {
  file?: string;
  executor?: string;
  workers?: number;
  gpus?: string;
  threads?: number;
  retries?: number;
  partition?: string;
  account?: string;
  time?: string;
  gres?: string;
  cpusPerTask?: number;
  mem?: string;
  setup?: string[];
  sbatchArg?: string[];
  maxParallel?: number;
  vtvCommand?: string;
  dryRun?: boolean;
}

/** argv that starts this vtv in a child process. */
function vtvArgv(): string[] {
  return [process.execPath, fileURLToPath(new URL('./main.js', import.meta.url))];
}

/** The sweep to run: from --file, from the grid flags, or the one stored in the directory. */
function sweepToRun(dir: string, o: SweepRunOptions): Sweep | undefined {
  const gridFlags = o.tasks || o.folds || o.seeds || o.set?.length || o.weights || o.model || o.dataset || o.dataDir;
  try {
    if (o.file) {
      if (gridFlags) throw new UsageError('give either --file or the grid flags (--tasks, --folds, --seeds, --set, --weights, ...), not both');
      const { file, base } = readSweepFile(o.file);
      return expandSweep(file, base, `sweep file ${o.file}`);
    }
    if (gridFlags) return expandSweep(sweepFromFlags({ ...o, name: undefined }), process.cwd(), 'the sweep flags');
  } catch (e) {
    if (e instanceof SweepSpecError) throw new UsageError(e.message);
    throw e;
  }
  if (!existsSync(sweepPaths(dir).sweep)) {
    throw new UsageError(`${dir} holds no sweep yet: give a sweep file (--file sweep.yaml) or the grid (--tasks ... --weights ...)`);
  }
  return undefined;
}

function slurmSettings(stored: SlurmSettings, o: SweepRunOptions): SlurmSettings {
  const st: SlurmSettings = {
    ...stored,
    ...(o.partition ? { partition: o.partition } : {}),
    ...(o.account ? { account: o.account } : {}),
    ...(o.time ? { time: o.time } : {}),
    ...(o.gres ? { gres: o.gres } : {}),
    ...(o.cpusPerTask ? { cpusPerTask: o.cpusPerTask } : {}),
    ...(o.mem ? { mem: o.mem } : {}),
    ...(o.setup?.length ? { setup: o.setup } : {}),
    ...(o.sbatchArg?.length ? { sbatchArgs: o.sbatchArg } : {}),
    ...(o.maxParallel ? { maxParallel: o.maxParallel } : {}),
    ...(o.vtvCommand ? { vtvCommand: o.vtvCommand } : {}),
  };
  const r = SlurmSettingsSchema.safeParse(st);
  if (!r.success) throw new UsageError(`Slurm settings: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

export async function sweepRunCommand(dirArg: string, o: SweepRunOptions, deps: Deps = defaultDeps): Promise<void> {
  const dir = resolve(dirArg);
  const executor = o.executor ?? 'local';
  if (executor !== 'local' && executor !== 'slurm') throw new UsageError(`--executor must be local or slurm, got '${executor}'`);
  const fresh = sweepToRun(dir, o);
  const paths = sweepPaths(dir);

  if (o.dryRun) {
    if (executor !== 'slurm') throw new UsageError('--dry-run prints the Slurm scripts: use it with --executor slurm');
    const sweep = fresh ?? loadSweep(dir).sweep;
    const st = slurmSettings(sweep.slurm, o);
    const todo = sweep.cells.filter((c) => !cellDone(paths, c)).map((c) => c.index);
    if (!sharedCollected(paths)) console.log(`# ${paths.slurmCollect} (submitted first; the array waits for it)\n${collectScript(sweep, paths, st)}`);
    console.log(`# ${paths.slurmCells}\n${cellsScript(sweep, paths, todo.length ? todo : [0], st)}`);
    return;
  }

  mkdirSync(dir, { recursive: true });
  let lock: ReturnType<typeof acquireLock>;
  try {
    lock = acquireLock(paths.lock, `sweep ${dir}`);
  } catch (e) {
    if (e instanceof LockHeldError) throw new UsageError(`another sweep is running on this directory: ${e.message}`);
    throw e;
  }
  try {
    if (fresh) storeSweep(dir, fresh);
    const { sweep } = loadSweep(dir);
    // Jobs of an earlier Slurm submission still queued or running would run the same cells twice.
    const q = queueView(paths);
    if (q.cells.size || q.collect) {
      const jobs = [...new Set([...q.cells.values()].map((c) => c.jobId.split('_')[0]!)), ...(q.collect ? [q.collect.jobId] : [])];
      throw new UsageError(
        `sweep ${dir} still has ${q.cells.size + (q.collect ? 1 : 0)} job(s) in the Slurm queue (job ${jobs.join(', ')}): wait for them (\`vtv sweep status ${dirArg}\`) or cancel them (scancel ${jobs.join(' ')})`,
      );
    }
    const todo = sweep.cells.filter((c) => !cellDone(paths, c));
    if (todo.length === 0) {
      deps.log(`sweep ${sweep.name}: every cell is done; \`vtv sweep collect ${dirArg}\` gathers the results`);
      return;
    }
    if (executor === 'slurm') {
      const st = slurmSettings(sweep.slurm, o);
      storeSweep(dir, { ...sweep, slurm: st });
      const sub = submitSweep(
        sweep,
        paths,
        todo.map((c) => c.index),
        !sharedCollected(paths),
        st,
      );
      deps.log(
        `sweep ${sweep.name}: submitted ${sub.collectJob ? `the shared collection as job ${sub.collectJob} and ` : ''}${todo.length} cell(s) as job array ${sub.arrayJob}\n` +
          `  script: ${paths.slurmCells}\n  logs:   ${paths.logs}/slurm-<cell index>.log\n  watch:  vtv sweep status ${dirArg}`,
      );
      return;
    }
    const res = await runLocal(sweep, paths, {
      workers: o.workers,
      gpus: o.gpus,
      threads: o.threads,
      retries: o.retries,
      vtv: vtvArgv(),
      log: deps.log,
      progress: deps.progress,
    });
    deps.log(`\n${statusText(sweepStatus(dir), paths, sweep)}`);
    if (res.failed.length) throw new VtvError(`${res.failed.length} cell(s) failed (shown above); the others are done or resumable`);
    // Stopped by a signal (Ctrl-C): every cell wrote its checkpoint; exit 130 as a shell expects.
    if (res.stopped.length) throw new InterruptedError(`sweep stopped; \`vtv sweep run ${dirArg}\` continues it from the checkpoints`);
    deps.log(`sweep ${sweep.name}: every cell done; \`vtv sweep collect ${dirArg}\` gathers the results`);
  } finally {
    lock.release();
  }
}

const collectRepeat = (v: string, prev: string[] = []) => [...prev, v];

export function sweepProgram(deps: Deps = defaultDeps): Command {
  const sweep = new Command('sweep').description(
    'many searches as one study: run a grid of tasks x folds x seeds x options, show its status, collect one table',
  );

  sweep
    .command('run')
    .description('start or continue a sweep on local workers or as a Slurm job array')
    .argument('<dir>', 'the sweep directory (e.g. sweeps/study)')
    .option('--file <sweep>', 'sweep file, .json or .yaml (README: Sweeps)')
    .option('--tasks <list>', 'without a file: task ids, comma-separated; a+b is one multi-task search', parseList)
    .option('--folds <list>', 'without a file: trn folds to search', parseIntList('--folds'))
    .option('--seeds <list>', 'without a file: search seeds', parseIntList('--seeds'))
    .option('--set <option=values>', 'without a file: a search option and its values, e.g. --set granularity=0,1 (repeatable)', collectRepeat)
    .option('--model <preset>', 'without a file: model preset')
    .option('--weights <files...>', 'without a file: safetensors weights')
    .addOption(new Option('--dataset <name>', 'without a file: data set').choices(DATASETS))
    .option('--data-dir <dir>', 'without a file: for pascal5i, the folder holding VOCdevkit/')
    .addOption(new Option('--executor <name>', 'where the cells run').choices(['local', 'slurm']).default('local'))
    .option('--workers <n>', 'local: cells at once (default: one per GPU, else 1)', parseIntArg('--workers'))
    .option('--gpus <ids>', 'local: auto (CUDA_VISIBLE_DEVICES or nvidia-smi) | none | a list such as 0,1; worker i gets GPU i', 'auto')
    .option('--threads <n>', 'local: CPU threads per worker (default: the cores divided among the workers)', parseIntArg('--threads'))
    .option('--retries <n>', 'local: restarts of a killed cell (from its checkpoint)', parseIntArg('--retries'), 2)
    .option('--partition <p>', 'slurm: partition')
    .option('--account <a>', 'slurm: account')
    .option('--time <t>', 'slurm: time limit per element, e.g. 04:00:00')
    .option('--gres <g>', 'slurm: generic resources per element, e.g. gpu:1')
    .option('--cpus-per-task <n>', 'slurm: CPUs per element (vtv uses as many threads)', parseIntArg('--cpus-per-task'))
    .option('--mem <m>', 'slurm: memory per element, e.g. 32G')
    .option('--setup <line>', "slurm: a shell line run before vtv in every job, e.g. 'module load nodejs/20' (repeatable)", collectRepeat)
    .option('--sbatch-arg <opt>', 'slurm: another #SBATCH option, e.g. --qos=long (repeatable)', collectRepeat)
    .option('--max-parallel <n>', 'slurm: most elements running at once', parseIntArg('--max-parallel'))
    .option('--vtv-command <cmd>', `slurm: how a job starts vtv (default: ${defaultVtvCommand()})`)
    .option('--dry-run', 'slurm: print the sbatch scripts, submit nothing', false)
    .action(async (dir: string, opts: SweepRunOptions) => {
      await sweepRunCommand(dir, opts, deps);
    });

  sweep
    .command('status')
    .description('each cell: pending / running / done / failed, its search step and ETA; failed cells with their error')
    .argument('<dir>', 'the sweep directory')
    .option('--json', 'print the status as JSON', false)
    .action((dir: string, opts: { json?: boolean }) => {
      const s = sweepStatus(resolve(dir));
      if (opts.json) console.log(JSON.stringify(s, null, 1));
      else console.log(statusText(s, sweepPaths(resolve(dir)), loadSweep(resolve(dir)).sweep));
    });

  sweep
    .command('collect')
    .description('one evaluation table (results.md, results.json) and one HTML report over the sweep')
    .argument('<dir>', 'the sweep directory')
    .action((dir: string) => {
      const r = collectSweep(resolve(dir));
      const missing = r.results.cells.filter((c) => c.state === 'missing').length;
      deps.log(`sweep collect: ${r.results.cells.length - missing} of ${r.results.cells.length} cell(s) evaluated${missing ? ` (${missing} not yet)` : ''}`);
      deps.log(`  table:  ${r.md}\n  json:   ${r.json}\n  report: ${r.html}`);
      console.log(r.md);
    });

  const threadsDefault = Number(process.env.VTV_THREADS ?? 0) || 0;
  sweep
    .command('cell')
    .description('run one cell (what each local worker and Slurm array element runs): its search, resumed from the checkpoint, then its eval')
    .argument('<dir>', 'the sweep directory')
    .requiredOption('--index <i>', 'cell index in sweep.json', parseIntArg('--index'))
    .option('--threads <n>', 'CPU threads (default: $VTV_THREADS, else all cores)', parseIntArg('--threads'), threadsDefault)
    .action(async (dir: string, opts: { index: number; threads: number }) => {
      const outcome = await runCell(resolve(dir), opts.index, opts.threads, deps);
      if (outcome === 'stopped') process.exit(CELL_STOPPED_EXIT);
    });

  sweep
    .command('prepare')
    .description('run the shared collection of task vectors (vtv collect into <dir>/shared) unless it is done')
    .argument('<dir>', 'the sweep directory')
    .option('--threads <n>', 'CPU threads (default: $VTV_THREADS, else all cores)', parseIntArg('--threads'), threadsDefault)
    .action(async (dir: string, opts: { threads: number }) => {
      await prepareShared(resolve(dir), opts.threads, deps);
    });
  return sweep;
}
