// Advisory locks on a run directory, and moving old results aside.
//
// Locks live in <run>/.locks/: run.lock for commands that write the run's shared files (collect,
// eval) and search-<task>.lock for one search. A lock is a file created with O_EXCL that holds its
// holder's pid, host, command line and start time. A command takes its own lock first and then checks
// the locks it conflicts with (collect and eval conflict with the searches they would disturb, a
// search with collect): of two commands that start together, at least one sees the other and stops, so
// they never both write. A lock whose holder is a dead process on this host is stale and is taken over;
// one held from another host is never taken over (its pid means nothing here).
//
// Moving aside: `--force` (and a fresh start over leftovers of an interrupted one) renames the old
// results into <run>/replaced/<time>-<what>/ before the command writes anything, so an interrupted
// --force never leaves the old results looking current and nothing is deleted.

import { closeSync, existsSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, join, relative } from 'node:path';
import { ConflictError } from '../errors.js';
import { pidAlive } from './pid-alive.js';

export interface LockHolder {
  pid: number;
  host: string;
  command: string;
  started: string;
}

export class LockError extends ConflictError {}

const LOCKS = '.locks';
export const runLockPath = (root: string) => join(root, LOCKS, 'run.lock');
export const searchLockPath = (root: string, task: string) => join(root, LOCKS, `search-${task}.lock`);

function describeHolder(h: LockHolder | undefined): string {
  if (!h) return 'a process that left an unreadable lock';
  return `pid ${h.pid} on ${h.host}, started ${h.started}: ${h.command}`;
}

function readHolder(path: string): LockHolder | undefined {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as LockHolder;
    if (typeof v.pid === 'number' && typeof v.host === 'string') return v;
  } catch {
    // unreadable or gone
  }
  return undefined;
}

/** Whether a lock file's holder is a process that is gone (on this host); unknown holders count as live. */
function isStale(h: LockHolder | undefined): boolean {
  return h !== undefined && h.host === hostname() && h.pid !== process.pid && !pidAlive(h.pid);
}

const held = new Set<string>();
let exitHookInstalled = false;
function releaseAllOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of held) rmSync(p, { force: true });
  });
}

export interface RunLock {
  path: string;
  release: () => void;
}

function commandLine(): string {
  const argv = [basename(process.argv[0] ?? 'node'), ...process.execArgv, ...process.argv.slice(1)];
  const args = argv.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a));
  const s = args.join(' ');
  return s.length > 300 ? `${s.slice(0, 297)}...` : s;
}

/**
 * Creates the lock file `path` for this process, taking over a stale one; throws LockError naming the
 * holder when a live process holds it. `what` says what is locked ("run runs/x", "search segmentation").
 */
export function acquireLock(path: string, what: string): RunLock {
  mkdirSync(join(path, '..'), { recursive: true });
  const me: LockHolder = { pid: process.pid, host: hostname(), command: commandLine(), started: new Date().toISOString() };
  const body = `${JSON.stringify(me)}\n`;
  for (let attempt = 0; attempt < 5; attempt++) {
    // Write the whole record to a private file first and link it into place: the lock never exists
    // half-written, and link fails when the name is taken (O_EXCL semantics).
    const tmp = `${path}.${process.pid}.${attempt}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, body);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, path);
      rmSync(tmp, { force: true });
      held.add(path);
      releaseAllOnExit();
      return {
        path,
        release: () => {
          if (held.delete(path)) rmSync(path, { force: true });
        },
      };
    } catch (e) {
      rmSync(tmp, { force: true });
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const holder = readHolder(path);
    if (holder === undefined && !existsSync(path)) continue; // released meanwhile: try again
    if (!isStale(holder)) {
      const other = holder?.host !== undefined && holder.host !== hostname() ? ' (another host: remove the lock file by hand once it has stopped)' : '';
      throw new LockError(`${what} is in use by ${describeHolder(holder)}${other}; lock file ${path}. Wait for it to finish, or stop it first`);
    }
    // Stale: move it away under a private name, then check that what was moved is the stale record (a
    // second process may have taken the lock over between our read and the rename).
    const aside = `${path}.stale-${process.pid}`;
    try {
      renameSync(path, aside);
    } catch {
      continue;
    }
    const moved = readHolder(aside);
    if (moved && holder && (moved.pid !== holder.pid || moved.started !== holder.started)) {
      // A live lock was moved: put it back (link fails only if yet another process holds the name).
      try {
        linkSync(aside, path);
      } catch {
        // the name is taken again: that process holds it
      }
      rmSync(aside, { force: true });
      throw new LockError(`${what} is in use by ${describeHolder(moved)}; lock file ${path}`);
    }
    rmSync(aside, { force: true });
  }
  throw new LockError(`${what}: could not take the lock ${path} (it keeps changing hands)`);
}

/** Throws LockError when a live process holds the lock `path` (a stale lock is ignored). */
export function checkNotLocked(path: string, what: string, mine: string): void {
  if (!existsSync(path)) return;
  const h = readHolder(path);
  if (isStale(h)) return;
  if (h === undefined && !existsSync(path)) return;
  throw new LockError(`${mine}: ${what} is in use by ${describeHolder(h)}; lock file ${path}. Wait for it to finish, or stop it first`);
}

/** The tasks with a search lock file in this run. */
export function searchLocks(root: string): string[] {
  const dir = join(root, LOCKS);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((n) => /^search-(.+)\.lock$/.exec(n)?.[1])
    .filter((t): t is string => t !== undefined);
}

/**
 * Moves the existing paths among `paths` (files or folders of run `root`) into
 * <root>/replaced/<time>-<label>/, keeping their place relative to the run, in the order given (put
 * the file that marks a result finished first). Returns the folder, or undefined when nothing existed.
 */
export function moveAside(root: string, label: string, paths: string[]): string | undefined {
  const present = paths.filter((p) => existsSync(p));
  if (present.length === 0) return undefined;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  let dest = join(root, 'replaced', `${stamp}-${label}`);
  for (let i = 2; existsSync(dest); i++) dest = join(root, 'replaced', `${stamp}-${label}-${i}`);
  for (const p of present) {
    const rel = relative(root, p);
    const target = rel.startsWith('..') ? join(dest, basename(p)) : join(dest, rel);
    mkdirSync(join(target, '..'), { recursive: true });
    renameSync(p, target);
  }
  return dest;
}
