// The local executor: N workers on this machine, each running one cell at a time as a child process
// (`vtv sweep cell`), with its own GPU (CUDA_VISIBLE_DEVICES=<one id>) or its own slice of the CPU
// threads. A cell whose process is killed (a signal it did not ask for: the OOM killer, kill -9) is
// started again and resumes from its checkpoint; a cell that fails (an error) is recorded as failed
// and the others go on. SIGINT/SIGTERM stop every cell after its current step, checkpoint written.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import cliProgress from 'cli-progress';
import { UsageError, VtvError } from '../errors.js';
import { runPaths } from '../run/layout.js';
import { readCellStatus, type SweepPaths, writeCellStatus } from './layout.js';
import type { Cell, Sweep } from './spec.js';
import { formatSeconds } from './status.js';
import { cellDone, checkpointStep, searchKey, sharedCollected } from './sweep.js';

export interface LocalOptions {
  workers?: number;
  /** 'auto' (CUDA_VISIBLE_DEVICES, else nvidia-smi), 'none', or a list of device ids. */
  gpus?: string;
  /** CPU threads per worker (default: the cores divided among the workers). */
  threads?: number;
  /** Restarts of a killed cell before it counts as failed. */
  retries?: number;
  /** argv that starts vtv: [node, main.js]. */
  vtv: string[];
  log: (m: string) => void;
  progress: boolean;
}

export interface LocalResult {
  done: string[];
  failed: { id: string; error: string }[];
  stopped: string[];
}

/** The GPUs workers are given, one each (empty: none, the workers split the CPU). */
export function detectGpus(spec = 'auto'): string[] {
  if (spec === 'none') return [];
  if (spec !== 'auto') {
    const ids = spec.split(',').map((s) => s.trim());
    if (ids.some((s) => !/^[A-Za-z0-9-]+$/.test(s))) throw new UsageError(`--gpus ${spec}: expected auto, none or device ids such as 0,1`);
    return ids;
  }
  const env = process.env.CUDA_VISIBLE_DEVICES;
  if (env !== undefined)
    return env
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '' && s !== '-1' && s !== 'NoDevFiles');
  const r = spawnSync('nvidia-smi', ['--query-gpu=index', '--format=csv,noheader'], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0 || !r.stdout) return [];
  return r.stdout
    .split('\n')
    .map((s) => s.trim())
    .filter(Boolean);
}

function appendLine(path: string, line: string): void {
  const fd = openSync(path, 'a');
  try {
    writeSync(fd, `${line}\n`);
  } finally {
    closeSync(fd);
  }
}

/** Runs `argv` with stdout and stderr appended to `logPath`; resolves with its exit code or signal. */
function runChild(
  argv: string[],
  env: NodeJS.ProcessEnv,
  logPath: string,
  onSpawn: (kill: (sig: NodeJS.Signals) => void) => void,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const fd = openSync(logPath, 'a');
  return new Promise((resolvePromise, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    onSpawn((sig) => child.kill(sig));
    child.on('error', reject);
    child.on('exit', (code, signal) => resolvePromise({ code, signal }));
  });
}

const logSteps = (paths: SweepPaths, cell: Cell) => {
  const p = runPaths(paths.cell(cell.id)).searchLog(searchKey(cell));
  if (!existsSync(p)) return 0;
  return readFileSync(p, 'utf8')
    .split('\n')
    .filter((l) => l.trim()).length;
};

/** The exit code `vtv sweep cell` uses when it stopped on a signal with its checkpoint written. */
export const CELL_STOPPED_EXIT = 75;

export async function runLocal(sweep: Sweep, paths: SweepPaths, o: LocalOptions): Promise<LocalResult> {
  const gpus = detectGpus(o.gpus);
  const workers = o.workers ?? Math.max(1, gpus.length);
  if (!Number.isInteger(workers) || workers < 1) throw new UsageError(`--workers must be a positive integer, got ${o.workers}`);
  const cores = availableParallelism();
  const threads = o.threads ?? Math.max(1, Math.floor(cores / workers));
  const retries = o.retries ?? 2;
  mkdirSync(paths.logs, { recursive: true });
  const placement = gpus.length ? `GPU ${gpus.map((g, i) => `${g} -> worker ${i % workers}`).join(', ')}` : `${threads} CPU thread(s) each`;
  o.log(`sweep ${sweep.name}: ${workers} local worker(s), ${placement}`);

  let stopping = false;
  const running = new Map<number, (sig: NodeJS.Signals) => void>();
  const onStop = () => {
    if (stopping) return;
    stopping = true;
    o.log('\nsweep: stopping; every running cell stops after its current step with its checkpoint written');
    for (const kill of running.values()) kill('SIGTERM');
  };
  process.on('SIGINT', onStop);
  process.on('SIGTERM', onStop);
  try {
    if (!sharedCollected(paths)) {
      o.log(`sweep: collecting the shared task vectors (log: ${paths.collectLog})`);
      const r = await runChild([...o.vtv, 'sweep', 'prepare', paths.root, '--threads', String(cores)], process.env, paths.collectLog, (k) =>
        running.set(-1, k),
      );
      running.delete(-1);
      if (r.code !== 0 || !sharedCollected(paths)) {
        const tail = readFileSync(paths.collectLog, 'utf8').trim().split('\n').slice(-5).join('\n  ');
        throw new VtvError(`the shared collection failed (${r.signal ?? `exit ${r.code}`}); nothing else ran. ${paths.collectLog} ends with:\n  ${tail}`);
      }
    }

    const queue = sweep.cells.filter((c) => !cellDone(paths, c));
    const result: LocalResult = { done: sweep.cells.filter((c) => cellDone(paths, c)).map((c) => c.id), failed: [], stopped: [] };
    const total = sweep.cells.length;
    o.log(`sweep: ${queue.length} of ${total} cell(s) to run`);

    // Progress: one bar for the sweep, one per worker for the cell it runs.
    const multi = o.progress
      ? new cliProgress.MultiBar(
          { format: '{label} {bar} {value}/{total} {note}', hideCursor: true, stream: process.stderr, clearOnComplete: false },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
    const overall = multi?.create(total, result.done.length, { label: 'sweep'.padEnd(28), note: '' });
    const bars = Array.from({ length: workers }, (_, w) => multi?.create(1, 0, { label: `worker ${w}`.padEnd(28), note: 'idle' }));
    const current = new Map<number, { cell: Cell; t0: number; from: number }>();
    const tick = setInterval(() => {
      for (const [w, c] of current) {
        const step = logSteps(paths, c.cell);
        const dt = (performance.now() - c.t0) / 1000;
        const rate = step > c.from ? dt / (step - c.from) : undefined;
        const eta = rate !== undefined ? formatSeconds((c.cell.search.steps - step) * rate) : '';
        bars[w]?.setTotal(c.cell.search.steps);
        bars[w]?.update(Math.min(step, c.cell.search.steps), { label: c.cell.id.slice(0, 28).padEnd(28), note: eta ? `ETA ${eta}` : '' });
      }
    }, 500);

    const killed = new Map<string, number>();
    const worker = async (w: number) => {
      while (!stopping) {
        const cell = queue.shift();
        if (!cell) return;
        const env: NodeJS.ProcessEnv = { ...process.env };
        if (gpus.length) env.CUDA_VISIBLE_DEVICES = gpus[w % gpus.length];
        const from = checkpointStep(paths, cell);
        current.set(w, { cell, t0: performance.now(), from });
        if (!multi) o.log(`cell ${cell.id}: started on worker ${w}${from ? ` (resuming from step ${from})` : ''}`);
        const logPath = paths.cellLog(cell.id);
        appendLine(
          logPath,
          `== ${new Date().toISOString()} worker ${w}${env.CUDA_VISIBLE_DEVICES !== undefined && gpus.length ? `, CUDA_VISIBLE_DEVICES=${env.CUDA_VISIBLE_DEVICES}` : ''}`,
        );
        const r = await runChild([...o.vtv, 'sweep', 'cell', paths.root, '--index', String(cell.index), '--threads', String(threads)], env, logPath, (k) =>
          running.set(w, k),
        );
        running.delete(w);
        current.delete(w);
        bars[w]?.update(0, { label: `worker ${w}`.padEnd(28), note: 'idle' });
        if (r.code === 0) {
          result.done.push(cell.id);
          overall?.increment();
          if (!multi) o.log(`cell ${cell.id}: done`);
        } else if (r.code === CELL_STOPPED_EXIT || (stopping && r.signal)) {
          result.stopped.push(cell.id);
        } else if (r.signal) {
          const n = (killed.get(cell.id) ?? 0) + 1;
          killed.set(cell.id, n);
          const at = checkpointStep(paths, cell);
          if (n <= retries) {
            o.log(`cell ${cell.id}: its process was killed (${r.signal}); restarting it from its checkpoint at step ${at} (restart ${n} of ${retries})`);
            appendLine(logPath, `== killed by ${r.signal}; restarting from the checkpoint at step ${at}`);
            queue.unshift(cell);
          } else {
            const error = `killed by ${r.signal} ${n} times; the last checkpoint is at step ${at}`;
            const st = readCellStatus(paths, cell);
            if (st) writeCellStatus(paths, { ...st, state: 'failed', error });
            result.failed.push({ id: cell.id, error });
            o.log(`cell ${cell.id}: failed: ${error}`);
          }
        } else {
          const error = readCellStatus(paths, cell)?.error ?? `exit code ${r.code} (see ${logPath})`;
          result.failed.push({ id: cell.id, error });
          o.log(`cell ${cell.id}: failed: ${error.split('\n')[0]}`);
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
    } finally {
      clearInterval(tick);
      multi?.stop();
    }
    for (const c of queue) result.stopped.push(c.id);
    return result;
  } finally {
    process.off('SIGINT', onStop);
    process.off('SIGTERM', onStop);
  }
}
