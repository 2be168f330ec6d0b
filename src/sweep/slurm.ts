// The Slurm executor: one job for the shared collection (when it is not done yet) and one job array
// over the cells that are not done, array index = cell index in sweep.json, the array depending on the
// collection job. Every element runs `vtv sweep cell <dir> --index $SLURM_ARRAY_TASK_ID`: the cell's
// `vtv search` resumed from its checkpoint, then its `vtv eval`. Elements are submitted with --requeue
// and are idempotent, so a preempted or requeued element continues where its checkpoint left it.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { VtvError } from '../errors.js';
import { writeJsonAtomic } from '../run/atomic-file.js';
import type { SweepPaths } from './layout.js';
import type { SlurmSettings, Sweep } from './spec.js';

/** How a job starts vtv by default: this node binary and this vtv's entry point, by absolute path. */
export function defaultVtvCommand(): string {
  const main = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  return `${shq(process.execPath)} ${shq(main)}`;
}

/** Quotes a word for bash when it needs it. */
export const shq = (s: string) => (/^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** Compresses sorted indices into Slurm's array syntax: 0-3,5,7-8. */
export function arraySpec(indices: number[]): string {
  const out: string[] = [];
  const s = [...indices].sort((a, b) => a - b);
  for (let i = 0; i < s.length; ) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j]! + 1) j++;
    out.push(i === j ? `${s[i]}` : `${s[i]}-${s[j]}`);
    i = j + 1;
  }
  return out.join(',');
}

function header(name: string, out: string, st: SlurmSettings): string[] {
  const lines = [`#SBATCH --job-name=${name}`, `#SBATCH --output=${out}`, '#SBATCH --open-mode=append', '#SBATCH --requeue'];
  if (st.partition) lines.push(`#SBATCH --partition=${st.partition}`);
  if (st.account) lines.push(`#SBATCH --account=${st.account}`);
  if (st.time) lines.push(`#SBATCH --time=${st.time}`);
  if (st.gres) lines.push(`#SBATCH --gres=${st.gres}`);
  if (st.cpusPerTask) lines.push(`#SBATCH --cpus-per-task=${st.cpusPerTask}`);
  if (st.mem) lines.push(`#SBATCH --mem=${st.mem}`);
  for (const a of st.sbatchArgs ?? []) lines.push(`#SBATCH ${a}`);
  return lines;
}

function body(paths: SweepPaths, st: SlurmSettings, run: string): string[] {
  return [
    'set -eo pipefail',
    ...(st.setup?.length ? ['# set-up', ...st.setup] : []),
    `cd ${shq(paths.root)}`,
    // vtv's threads follow the CPUs Slurm gave the job; CUDA_VISIBLE_DEVICES comes from --gres.
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash expansion in the job script
    'export VTV_THREADS="${SLURM_CPUS_PER_TASK:-0}"',
    `exec ${st.vtvCommand ?? defaultVtvCommand()} ${run}`,
  ];
}

/** The job array script over `indices` (cells of the sweep). */
export function cellsScript(sweep: Sweep, paths: SweepPaths, indices: number[], st: SlurmSettings): string {
  const array = `${arraySpec(indices)}${st.maxParallel ? `%${st.maxParallel}` : ''}`;
  return `${[
    '#!/bin/bash',
    `# vtv sweep '${sweep.name}': ${indices.length} of ${sweep.cells.length} cell(s) as one job array; element i runs cell i of`,
    `# ${paths.sweep}: its vtv search (resumed from the checkpoint if there is one), then its vtv eval.`,
    '# Requeue- and preemption-safe: a restarted element continues from the checkpoint; a done cell exits at once.',
    ...header(`vtv-${sweep.name}`, `${paths.logs}/slurm-%a.log`, st),
    `#SBATCH --array=${array}`,
    '',
    ...body(paths, st, `sweep cell ${shq(paths.root)} --index "$SLURM_ARRAY_TASK_ID"`),
  ].join('\n')}\n`;
}

/** The shared collection's job (vtv collect into shared/). */
export function collectScript(sweep: Sweep, paths: SweepPaths, st: SlurmSettings): string {
  return `${[
    '#!/bin/bash',
    `# vtv sweep '${sweep.name}': the one shared collection of task vectors every cell uses (vtv collect into shared/).`,
    ...header(`vtv-${sweep.name}-collect`, paths.collectLog, st),
    '',
    ...body(paths, st, `sweep prepare ${shq(paths.root)}`),
  ].join('\n')}\n`;
}

export interface Submission {
  submitted: string;
  collectJob?: string;
  arrayJob: string;
  cells: number[];
}

export function readSubmissions(paths: SweepPaths): Submission[] {
  if (!existsSync(paths.submissions)) return [];
  try {
    const f = JSON.parse(readFileSync(paths.submissions, 'utf8')) as { submissions: Submission[] };
    return f.submissions ?? [];
  } catch {
    return [];
  }
}

function sbatch(script: string, extra: string[] = []): string {
  const r = spawnSync('sbatch', ['--parsable', ...extra, script], { encoding: 'utf8' });
  if (r.error) throw new VtvError(`sbatch could not be run (${r.error.message}): is Slurm installed and on PATH on this node?`);
  if (r.status !== 0) throw new VtvError(`sbatch ${script} failed (exit ${r.status}): ${(r.stderr || r.stdout).trim()}`);
  // --parsable prints "jobid" or "jobid;cluster".
  return r.stdout.trim().split(';')[0]!;
}

/** Writes the scripts and submits them; returns what was submitted. */
export function submitSweep(sweep: Sweep, paths: SweepPaths, indices: number[], needCollect: boolean, st: SlurmSettings): Submission {
  mkdirSync(paths.slurmDir, { recursive: true });
  mkdirSync(paths.logs, { recursive: true });
  let collectJob: string | undefined;
  if (needCollect) {
    writeFileSync(paths.slurmCollect, collectScript(sweep, paths, st), { mode: 0o755 });
    collectJob = sbatch(paths.slurmCollect);
  }
  writeFileSync(paths.slurmCells, cellsScript(sweep, paths, indices, st), { mode: 0o755 });
  const arrayJob = sbatch(paths.slurmCells, collectJob ? [`--dependency=afterok:${collectJob}`, '--kill-on-invalid-dep=yes'] : []);
  const sub: Submission = { submitted: new Date().toISOString(), ...(collectJob ? { collectJob } : {}), arrayJob, cells: indices };
  writeJsonAtomic(paths.submissions, { format: 'vtv-sweep-submissions', version: 1, submissions: [...readSubmissions(paths), sub] });
  return sub;
}

/** The queue state of this sweep's jobs still known to Slurm: cell index -> state ("PENDING", "RUNNING", ...), and the collection job. */
export interface QueueView {
  available: boolean;
  cells: Map<number, { state: string; jobId: string; reason: string }>;
  collect?: { state: string; jobId: string };
}

export function queueView(paths: SweepPaths): QueueView {
  const subs = readSubmissions(paths);
  const view: QueueView = { available: false, cells: new Map() };
  if (subs.length === 0) return view;
  const ids = subs.flatMap((s) => [s.arrayJob, ...(s.collectJob ? [s.collectJob] : [])]);
  let out: string;
  try {
    out = execFileSync('squeue', ['-h', '-r', '-j', ids.join(','), '-o', '%i|%F|%K|%T|%r'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    // squeue exits non-zero when every listed job has left the queue (invalid job id).
    const err = e as { status?: number; stderr?: string; code?: string };
    if (err.code === 'ENOENT') return view;
    view.available = true;
    return view;
  }
  view.available = true;
  const collectIds = new Set(subs.map((s) => s.collectJob).filter(Boolean));
  for (const line of out.split('\n')) {
    const [id, arrayJob, task, state, reason] = line.trim().split('|');
    if (!id || !state) continue;
    if (collectIds.has(id)) view.collect = { state, jobId: id };
    else if (task && /^\d+$/.test(task) && ids.includes(arrayJob!)) view.cells.set(Number(task), { state, jobId: `${arrayJob}_${task}`, reason: reason ?? '' });
  }
  return view;
}
