// `vtv sweep` on a real Slurm: scripts/slurm-local.sh starts slurmctld and slurmd (with munge) on
// localhost, the sweep is submitted as a job array, one element is requeued mid-search and must resume
// from its checkpoint; the same sweep runs on the local executor, one worker's process is killed
// mid-search and must be restarted from its checkpoint; both collected tables must have every cell
// and be the same bytes. The CLI runs as separate processes from dist/ (scripts/test.sh compiles it
// before vitest). Needs root and Debian's slurm-wlm and munge; where they are missing the suite is
// skipped, unless VTV_REQUIRE_SLURM=1 or VTV_CI is set (.ci/run), where that is a failure.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preset } from '../src/config.js';
import { writeRandomWeights } from '../src/model/random-weights.js';

const repo = resolve(__dirname, '..');
const main = join(repo, 'dist/src/cli/main.js');
const slurmScript = join(repo, 'scripts/slurm-local.sh');

/** Why this machine cannot run the suite, or undefined if it can. */
function missingPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root (slurmd must start jobs)';
  for (const b of ['slurmctld', 'slurmd', 'sbatch', 'munged']) {
    if (spawnSync('bash', ['-c', `command -v ${b} || test -x /usr/sbin/${b}`]).status !== 0) return `${b} is not installed (apt-get install slurm-wlm munge)`;
  }
  if (!existsSync(main)) return `${main} is missing (npx tsc -p tsconfig.json)`;
  return undefined;
}
const missing = missingPrerequisite();
// .ci/run sets VTV_REQUIRE_SLURM=1 (a CI run, VTV_CI, counts too): there a missing prerequisite fails.
const required = process.env.VTV_REQUIRE_SLURM === '1' || Boolean(process.env.VTV_CI);
if (missing && !required) console.warn(`sweep_slurm: skipped: ${missing}`);

const root = mkdtempSync(join(tmpdir(), 'vtv-sweep-slurm-'));
const clusterDir = join(root, 'cluster');
// A port of its own, so the suite does not meet another local cluster.
const port = String(20000 + 2 * (process.pid % 5000));
const env: NodeJS.ProcessEnv = { ...process.env, SLURM_CONF: join(clusterDir, 'slurm.conf'), VTV_SLURM_PORT: port };
let started = false;

const vtv = (args: string[]) => spawnSync(process.execPath, [main, ...args], { env, encoding: 'utf8', cwd: root });
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { env, encoding: 'utf8' }).trim();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

async function waitFor<T>(what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(100);
  }
}

const cellDir = (sweep: string, id: string) => join(root, sweep, 'cells', id);
const stateStep = (sweep: string, id: string, task: string) => {
  const p = join(cellDir(sweep, id), 'search', task, 'state.json');
  try {
    return existsSync(p) ? (readJson(p).step as number) : 0;
  } catch {
    return 0;
  }
};

/** The first `n` lines of a cell's search log (each carries its step's wall time, so a re-run step differs). */
const logLines = (sweep: string, id: string, task: string, n: number) =>
  readFileSync(join(cellDir(sweep, id), 'search', task, 'log.jsonl'), 'utf8')
    .split('\n')
    .slice(0, n);

// Four tiny searches: 2 tasks x 2 seeds, 16 steps of 4 samples, checkpoints every 2 steps.
const STEPS = 16;
const sweepFile = join(root, 'sweep.yaml');
const CELLS = ['segmentation-f0-s0', 'segmentation-f0-s1', 'colorization-f0-s0', 'colorization-f0-s1'];

describe.skipIf(missing !== undefined && !required)('vtv sweep on a real Slurm cluster', () => {
  beforeAll(() => {
    if (missing) throw new Error(`VTV_REQUIRE_SLURM=1 but this machine cannot run the Slurm test: ${missing}`);
    const r = spawnSync('bash', [slurmScript, 'start', clusterDir], { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`scripts/slurm-local.sh start failed:\n${r.stdout}\n${r.stderr}`);
    started = true;
    writeRandomWeights(join(root, 'w.safetensors'), preset('tiny'), 5);
    writeFileSync(
      sweepFile,
      [
        'name: slurm-test',
        'model: tiny',
        'weights: w.safetensors',
        'tasks: [segmentation, colorization]',
        'folds: [0]',
        'seeds: [0, 1]',
        `search: { steps: ${STEPS}, samplesPerStep: 4, trainImages: 4, valImages: 2, validateEvery: 4, checkpointEvery: 2, snapshotEvery: 0 }`,
        'collect: { folds: [1], episodesPerFold: 2, keep: 2 }',
        'eval: { episodes: 2, examples: 0 }',
        '',
      ].join('\n'),
    );
  });

  afterAll(() => {
    if (started) spawnSync('bash', [slurmScript, 'stop', clusterDir], { env });
  });

  it('runs on the local executor: a killed worker resumes from its checkpoint, a second sweep on the directory is refused', async () => {
    const child: ChildProcess = spawn(process.execPath, [main, 'sweep', 'run', 'local', '--file', sweepFile, '--workers', '2'], {
      env,
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));

    // Kill the first cell's process once its search has a checkpoint.
    const victim = CELLS[0]!;
    const pid = await waitFor(`a checkpoint of ${victim}`, 150_000, () => {
      if (stateStep('local', victim, 'segmentation') < 2) return undefined;
      return readJson(join(cellDir('local', victim), 'sweep-cell.json')).runner.pid as number;
    });
    const kept = stateStep('local', victim, 'segmentation');
    const before = logLines('local', victim, 'segmentation', kept);
    process.kill(pid, 'SIGKILL');
    // While the sweep runs, a second sweep on the same directory is refused, naming the holder.
    const second = vtv(['sweep', 'run', 'local', '--workers', '1']);
    expect(second.status).toBe(1);
    expect(second.stderr).toMatch(/another sweep is running on this directory: .*locked by pid \d+ on host/);

    expect(await exited, out).toBe(0);
    expect(out).toMatch(new RegExp(`cell ${victim}: its process was killed \\(SIGKILL\\); restarting it from its checkpoint at step [1-9]`));
    const st = readJson(join(cellDir('local', victim), 'sweep-cell.json'));
    expect(st.state).toBe('done');
    expect(st.attempts).toBe(2);
    expect(st.resumedFrom).toBeGreaterThanOrEqual(2);
    expect(st.resumedFrom).toBeLessThan(STEPS);
    // The log was cut back to the checkpoint and continued: one line per step.
    expect(
      readFileSync(join(cellDir('local', victim), 'search/segmentation/log.jsonl'), 'utf8')
        .trim()
        .split('\n'),
    ).toHaveLength(STEPS);
    // The steps up to the checkpoint were not run again: their log lines (with their wall times) are the first attempt's.
    expect(logLines('local', victim, 'segmentation', kept)).toEqual(before);
  }, 400_000);

  it('runs as a Slurm job array: a requeued element resumes from its checkpoint; the table equals the local one bit for bit', async () => {
    const dry = vtv(['sweep', 'run', 'slurm', '--file', sweepFile, '--executor', 'slurm', '--cpus-per-task', '1', '--dry-run']);
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/#SBATCH --array=0-3\n/);
    expect(dry.stdout).toMatch(/#SBATCH --requeue/);
    expect(existsSync(join(root, 'slurm'))).toBe(false); // a dry run writes nothing

    const sub = vtv(['sweep', 'run', 'slurm', '--file', sweepFile, '--executor', 'slurm', '--cpus-per-task', '1']);
    expect(sub.status, sub.stderr).toBe(0);
    const m = /as job array (\d+)/.exec(sub.stderr);
    expect(m, sub.stderr).not.toBeNull();
    const arrayJob = m![1]!;
    // The array's jobs are real: slurmctld lists them.
    expect(sh('squeue', ['-h', '-r', '-j', arrayJob, '-o', '%i']).split('\n').length).toBeGreaterThanOrEqual(1);

    // While the array is queued, another run on the directory is refused.
    const again = vtv(['sweep', 'run', 'slurm', '--executor', 'local']);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/still has \d+ job\(s\) in the Slurm queue/);

    // Requeue element 0 once its search has a checkpoint, and let it start again at once.
    const victim = CELLS[0]!;
    await waitFor(`a checkpoint of ${victim} under Slurm`, 150_000, () => stateStep('slurm', victim, 'segmentation') >= 2 || undefined);
    const kept = stateStep('slurm', victim, 'segmentation');
    const before = logLines('slurm', victim, 'segmentation', kept);
    sh('scontrol', ['requeue', `${arrayJob}_0`]);
    await waitFor(
      'the requeued element to be pending',
      30_000,
      () => sh('squeue', ['-h', '-r', '-j', arrayJob, '-o', '%K %T']).split('\n').includes('0 PENDING') || undefined,
    );
    sh('scontrol', ['update', `jobid=${arrayJob}_0`, 'StartTime=now']);

    const status = await waitFor('every element to finish', 200_000, () => {
      if (sh('squeue', ['-h', '-r', '-j', arrayJob, '-o', '%i']) !== '') return undefined;
      return readJson(join(cellDir('slurm', victim), 'sweep-cell.json'));
    });
    expect(status.state).toBe('done');
    expect(status.attempts).toBe(2);
    expect(status.runner.slurm.restartCount).toBe(1);
    expect(status.resumedFrom).toBeGreaterThanOrEqual(2);
    expect(status.resumedFrom).toBeLessThan(STEPS);
    const log0 = readFileSync(join(root, 'slurm/logs/slurm-0.log'), 'utf8');
    expect(log0).toMatch(/DUE TO JOB REQUEUE/);
    expect(log0).toMatch(/resuming the search from its checkpoint at step [1-9]/);
    for (let i = 1; i < CELLS.length; i++) expect(existsSync(join(root, `slurm/logs/slurm-${i}.log`))).toBe(true);
    expect(
      readFileSync(join(cellDir('slurm', victim), 'search/segmentation/log.jsonl'), 'utf8')
        .trim()
        .split('\n'),
    ).toHaveLength(STEPS);
    expect(logLines('slurm', victim, 'segmentation', kept)).toEqual(before);

    const st = vtv(['sweep', 'status', 'slurm', '--json']);
    expect(st.status, st.stderr).toBe(0);
    expect(JSON.parse(st.stdout).counts).toEqual({ pending: 0, running: 0, done: 4, failed: 0 });

    for (const d of ['local', 'slurm']) {
      const c = vtv(['sweep', 'collect', d]);
      expect(c.status, c.stderr).toBe(0);
      expect(existsSync(join(root, d, 'report/index.html'))).toBe(true);
    }
    const local = readFileSync(join(root, 'local/results.json'));
    const slurm = readFileSync(join(root, 'slurm/results.json'));
    const res = JSON.parse(local.toString());
    expect(res.cells.map((c: { id: string; state: string }) => `${c.id}:${c.state}`)).toEqual(CELLS.map((c) => `${c}:done`));
    expect(res.rows).toHaveLength(4);
    expect(slurm.equals(local)).toBe(true);
    expect(readFileSync(join(root, 'slurm/results.md')).equals(readFileSync(join(root, 'local/results.md')))).toBe(true);
    // The searches themselves too: the interrupted ones chose what the others did.
    for (const id of CELLS) {
      const task = id.split('-')[0]!;
      const a = readFileSync(join(cellDir('local', id), 'search', task, 'subset.json'));
      expect(readFileSync(join(cellDir('slurm', id), 'search', task, 'subset.json')).equals(a), id).toBe(true);
    }
  }, 400_000);
});
