// `vtv sweep status`: where every cell stands (pending / running / done / failed), its search step, an
// ETA from the step times in its log, and the error of a failed cell; from the files alone, plus the
// Slurm queue when the sweep was submitted there.
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { relative } from 'node:path';
import type { StepRecord } from '../method/reinforce.js';
import { runPaths } from '../run/layout.js';
import { pidAlive } from '../run/pid-alive.js';
import { readCellStatus, type SweepPaths } from './layout.js';
import { lockHolder } from './lock.js';
import { queueView } from './slurm.js';
import type { Sweep } from './spec.js';
import { cellDone, checkpointStep, loadSweep, searchKey, sharedCollected } from './sweep.js';

export type CellState = 'pending' | 'running' | 'done' | 'failed';

export interface CellView {
  index: number;
  id: string;
  state: CellState;
  phase?: 'search' | 'eval';
  step: number;
  steps: number;
  /** Seconds left for this cell's search (running cells with step times), else undefined. */
  eta?: number;
  /** Mean seconds per step over its log's last steps, if any. */
  secondsPerStep?: number;
  attempts: number;
  resumedFrom?: number;
  checkpoint: number;
  note: string;
  error?: string;
  log?: string;
}

export interface SweepStatus {
  dir: string;
  name: string;
  cells: CellView[];
  counts: Record<CellState, number>;
  /** Seconds until every cell's search is done, at the observed step rate, or undefined. */
  eta?: number;
  shared: 'done' | 'pending' | 'running';
}

function readLogTimes(path: string): { steps: number; secondsPerStep?: number } {
  if (!existsSync(path)) return { steps: 0 };
  const lines = readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim());
  const secs: number[] = [];
  for (const l of lines.slice(-20)) {
    try {
      const r = JSON.parse(l) as StepRecord;
      if (typeof r.seconds === 'number') secs.push(r.seconds);
    } catch {}
  }
  return { steps: lines.length, ...(secs.length ? { secondsPerStep: secs.reduce((a, b) => a + b, 0) / secs.length } : {}) };
}

export function sweepStatus(dir: string): SweepStatus {
  const { sweep, paths } = loadSweep(dir);
  const queue = queueView(paths);
  const cells = sweep.cells.map((cell): CellView => {
    const rp = runPaths(paths.cell(cell.id));
    const st = readCellStatus(paths, cell);
    const log = readLogTimes(rp.searchLog(searchKey(cell)));
    const q = queue.cells.get(cell.index);
    const checkpoint = checkpointStep(paths, cell);
    const base = {
      index: cell.index,
      id: cell.id,
      step: existsSync(rp.subset(searchKey(cell))) ? cell.search.steps : Math.min(log.steps, cell.search.steps),
      steps: cell.search.steps,
      ...(log.secondsPerStep !== undefined ? { secondsPerStep: log.secondsPerStep } : {}),
      attempts: st?.attempts ?? 0,
      ...(st?.resumedFrom !== undefined ? { resumedFrom: st.resumedFrom } : {}),
      checkpoint,
      ...(existsSync(paths.cellLog(cell.id)) ? { log: paths.cellLog(cell.id) } : {}),
    };
    const resumeNote = checkpoint > 0 ? `resumes from its checkpoint at step ${checkpoint}` : '';
    if (cellDone(paths, cell)) return { ...base, state: 'done', note: st && st.attempts > 1 ? `${st.attempts} attempts` : '' };
    if (st?.state === 'running') {
      // A local process that no longer exists was killed; one on another host is trusted (or the queue's word taken).
      const here = st.runner.host === hostname();
      const alive = here ? pidAlive(st.runner.pid) : q ? q.state === 'RUNNING' : true;
      if (alive) {
        const eta = st.phase === 'search' && base.secondsPerStep !== undefined ? (cell.search.steps - base.step) * base.secondsPerStep : undefined;
        const who = st.runner.slurm ? `Slurm job ${st.runner.slurm.jobId}` : `pid ${st.runner.pid}${here ? '' : ` on ${st.runner.host}`}`;
        const resumed = st.resumedFrom ? `, resumed from step ${st.resumedFrom}` : '';
        return {
          ...base,
          state: 'running',
          phase: st.phase,
          ...(eta !== undefined ? { eta } : {}),
          note: `${st.phase}, ${who}, attempt ${st.attempts}${resumed}`,
        };
      }
      const queued = q ? `; queued again as Slurm job ${q.jobId} (${q.state.toLowerCase()})` : '';
      return { ...base, state: 'pending', note: `interrupted (its process is gone)${resumeNote ? `; ${resumeNote}` : ''}${queued}` };
    }
    if (st?.state === 'failed' && !(q && q.state === 'RUNNING')) {
      return { ...base, state: 'failed', error: st.error ?? 'unknown error', note: (st.error ?? '').split('\n')[0]!.slice(0, 120) };
    }
    const queued = q ? `Slurm job ${q.jobId} ${q.state.toLowerCase()}${q.reason && q.reason !== 'None' ? ` (${q.reason})` : ''}` : '';
    return {
      ...base,
      state: q?.state === 'RUNNING' ? 'running' : 'pending',
      note: [st?.state === 'stopped' ? 'stopped' : '', resumeNote, queued].filter(Boolean).join('; '),
    };
  });
  const counts: Record<CellState, number> = { pending: 0, running: 0, done: 0, failed: 0 };
  for (const c of cells) counts[c.state]++;
  // Sweep ETA: the remaining steps of the unfinished cells at the mean observed step time, spread over
  // the cells running now.
  const rates = cells.map((c) => c.secondsPerStep).filter((s): s is number => s !== undefined);
  let eta: number | undefined;
  if (rates.length && counts.pending + counts.running > 0) {
    const perStep = rates.reduce((a, b) => a + b, 0) / rates.length;
    const left = cells.filter((c) => c.state === 'pending' || c.state === 'running').reduce((a, c) => a + (c.steps - c.step), 0);
    eta = (left * perStep) / Math.max(1, counts.running);
  }
  const collecting = queue.collect?.state === 'RUNNING' || lockHolder(`${paths.shared}/collect.lock`)?.alive === true;
  return {
    dir,
    name: sweep.name,
    cells,
    counts,
    ...(eta !== undefined ? { eta } : {}),
    shared: sharedCollected(paths) ? 'done' : collecting ? 'running' : 'pending',
  };
}

export function formatSeconds(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s)) return '';
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  return h ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(sec).padStart(2, '0')}s`;
}

/** The status as a text table, failed cells' errors and logs after it. */
export function statusText(s: SweepStatus, paths: SweepPaths, sweep: Sweep): string {
  const rows = s.cells.map((c) => [c.id, c.state, `${c.step}/${c.steps}`, formatSeconds(c.eta), c.note]);
  const head = ['cell', 'state', 'step', 'ETA', 'note'];
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((v, i) => (i === r.length - 1 ? v : v.padEnd(width[i]!)))
      .join('  ')
      .trimEnd();
  const out = [
    `sweep ${s.name} (${s.dir}): ${sweep.cells.length} cell(s); shared collection ${s.shared}`,
    '',
    line(head),
    ...rows.map(line),
    '',
    `${s.counts.done} done, ${s.counts.running} running, ${s.counts.pending} pending, ${s.counts.failed} failed${s.eta !== undefined ? `; searches done in about ${formatSeconds(s.eta)}` : ''}`,
  ];
  const failed = s.cells.filter((c) => c.state === 'failed');
  if (failed.length) {
    out.push('', 'failed:');
    for (const c of failed) {
      out.push(`  ${c.id}: ${c.error}`);
      const log = c.log ?? (existsSync(`${paths.logs}/slurm-${c.index}.log`) ? `${paths.logs}/slurm-${c.index}.log` : undefined);
      if (log) out.push(`    log: ${relative(process.cwd(), log) || log}`);
    }
  }
  return out.join('\n');
}
