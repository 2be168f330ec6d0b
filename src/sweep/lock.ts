// Advisory lock files for sweeps: the directory lock held by `vtv sweep run`, and a cell's lock held by
// the process running it. A lock is a small JSON file created with O_EXCL that names its holder (pid,
// host, start time, command, Slurm job). It is taken over only when its holder is provably gone: a pid
// on this host that no longer exists, or an earlier run of the same Slurm array element (Slurm runs one
// instance of a job at a time, so a requeued element's new process replaces the killed one, whichever
// node either ran on). Otherwise the second process is refused, with the holder named. Apart from the
// run directory's locks (src/run/lock.ts) because of that Slurm takeover and the holder's nonce.

import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { ConflictError, InputError } from '../errors.js';
import { pidAlive } from '../run/pid-alive.js';

export interface LockHolder {
  pid: number;
  host: string;
  started: string;
  command: string;
  nonce: string;
  slurm?: { jobId: string; arrayJobId?: string; arrayTaskId?: string; restartCount: number };
}

export class LockHeldError extends ConflictError {
  constructor(
    message: string,
    readonly holder: LockHolder | undefined,
  ) {
    super(message);
  }
}

export interface Lock {
  path: string;
  holder: LockHolder;
  release: () => void;
}

function readHolder(path: string): LockHolder | undefined {
  try {
    const h = JSON.parse(readFileSync(path, 'utf8')) as LockHolder;
    return typeof h.pid === 'number' && typeof h.host === 'string' ? h : undefined;
  } catch {
    return undefined;
  }
}

function slurmOfEnv(): LockHolder['slurm'] {
  const e = process.env;
  if (!e.SLURM_JOB_ID) return undefined;
  return {
    jobId: e.SLURM_JOB_ID,
    ...(e.SLURM_ARRAY_JOB_ID ? { arrayJobId: e.SLURM_ARRAY_JOB_ID } : {}),
    ...(e.SLURM_ARRAY_TASK_ID ? { arrayTaskId: e.SLURM_ARRAY_TASK_ID } : {}),
    restartCount: Number(e.SLURM_RESTART_COUNT ?? 0),
  };
}

/** Why `holder` is known to be gone (a reason to take its lock over), or undefined if it may be alive. */
function goneBecause(holder: LockHolder, me: LockHolder): string | undefined {
  if (holder.host === me.host && holder.pid !== me.pid && !pidAlive(holder.pid)) return `pid ${holder.pid} on ${holder.host} has exited`;
  const a = holder.slurm;
  const b = me.slurm;
  if (a && b) {
    const sameElement = a.arrayJobId !== undefined ? a.arrayJobId === b.arrayJobId && a.arrayTaskId === b.arrayTaskId : a.jobId === b.jobId;
    if (sameElement && a.restartCount < b.restartCount) return `Slurm job ${a.jobId} was requeued (restart ${b.restartCount})`;
  }
  return undefined;
}

const describe = (h: LockHolder | undefined) =>
  h
    ? `pid ${h.pid} on host ${h.host} (since ${h.started}${h.slurm ? `, Slurm job ${h.slurm.jobId}` : ''}: ${h.command})`
    : 'a process whose lock file cannot be read';

/**
 * Takes the lock at `path` for `what` (named in the error), or throws LockHeldError naming the holder.
 * The lock is released by release() or when this process exits.
 */
export function acquireLock(path: string, what: string, command = process.argv.slice(1).join(' ')): Lock {
  const me: LockHolder = {
    pid: process.pid,
    host: hostname(),
    started: new Date().toISOString(),
    command,
    nonce: randomBytes(8).toString('hex'),
    ...(slurmOfEnv() ? { slurm: slurmOfEnv() } : {}),
  };
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new InputError(`cannot create lock file ${path}: ${(e as Error).message}`);
      const holder = readHolder(path);
      const gone = holder ? goneBecause(holder, me) : undefined;
      if (!gone) {
        throw new LockHeldError(
          `${what} is locked by ${describe(holder)}; lock file ${path}. If that process is gone (e.g. its machine went down), remove the file and try again.`,
          holder,
        );
      }
      // The holder is gone: remove its file, but only if it is still the same file (another process
      // may have taken it over in the meantime).
      if (readHolder(path)?.nonce === holder!.nonce) {
        try {
          unlinkSync(path);
        } catch {}
      }
      continue;
    }
    try {
      writeSync(fd, `${JSON.stringify(me)}\n`);
    } finally {
      closeSync(fd);
    }
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      process.off('exit', release);
      if (readHolder(path)?.nonce === me.nonce) {
        try {
          unlinkSync(path);
        } catch {}
      }
    };
    process.on('exit', release);
    return { path, holder: me, release };
  }
  throw new LockHeldError(`${what}: could not take lock file ${path} (other processes keep taking it)`, readHolder(path));
}

/** The holder of the lock at `path` if one is there and may be alive (for status displays). */
export function lockHolder(path: string): { holder?: LockHolder; alive: boolean } | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  let holder: LockHolder | undefined;
  try {
    holder = JSON.parse(text) as LockHolder;
  } catch {
    return { alive: true };
  }
  const alive = holder.host !== hostname() || pidAlive(holder.pid);
  return { holder, alive };
}
