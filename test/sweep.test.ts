// `vtv sweep` without Slurm: the sweep file and its errors, the cells it expands into, the job array
// script, the advisory locks, and a local sweep where one cell fails and the others finish (the CLI
// runs as separate processes from dist/, which scripts/test.sh compiles before vitest). The Slurm
// executor against real daemons is sweep-slurm.test.ts.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { preset } from '../src/config.js';
import { writeRandomWeights } from '../src/model/random-weights.js';
import { runPaths } from '../src/run/layout.js';
import { sweepPaths } from '../src/sweep/layout.js';
import { acquireLock, LockHeldError } from '../src/sweep/lock.js';
import { arraySpec, cellsScript } from '../src/sweep/slurm.js';
import { expandSweep, readSweepFile, SweepSpecError, sweepFromFlags } from '../src/sweep/spec.js';
import { statusText, sweepStatus } from '../src/sweep/status.js';
import { loadSweep, storeSweep } from '../src/sweep/sweep.js';

const root = mkdtempSync(join(tmpdir(), 'vtv-sweep-'));
const main = resolve(__dirname, '../dist/src/cli/main.js');
const write = (name: string, text: string) => {
  const p = join(root, name);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, text);
  return p;
};

const STUDY = `
name: study
model: tiny
weights: w.safetensors
tasks: [segmentation, colorization, [segmentation, colorization]]
folds: [0, 1]
seeds: [3, 4]
search:
  steps: 20
  granularity: [0, 1]
slurm: { partition: gpu, gres: "gpu:1" }
`;

describe('sweep files', () => {
  it('crosses tasks x folds x seeds x listed options into cells with stable ids', () => {
    const { file, base } = readSweepFile(write('study.yaml', STUDY));
    const s = expandSweep(file, base, 'study.yaml');
    expect(s.cells).toHaveLength(3 * 2 * 2 * 2);
    expect(s.varied).toEqual(['granularity']);
    expect(s.cells.slice(0, 3).map((c) => c.id)).toEqual([
      'segmentation-f0-s3-granularity0',
      'segmentation-f0-s3-granularity1',
      'segmentation-f0-s4-granularity0',
    ]);
    const multi = s.cells.find((c) => c.tasks.length === 2)!;
    expect(multi.id).toBe('segmentation+colorization-f0-s3-granularity0');
    expect(s.cells[5]!.search).toMatchObject({ steps: 20, seed: 3, granularity: 1, samplesPerStep: 320 });
    expect(s.cells[5]!.evalFolds).toEqual([1]);
    expect(s.run.weights).toEqual([join(root, 'w.safetensors')]);
    expect(s.collect.tasks).toEqual(['segmentation', 'colorization']);
    // The same sweep from flags.
    const f = expandSweep(
      sweepFromFlags({
        model: 'tiny',
        weights: [join(root, 'w.safetensors')],
        tasks: ['segmentation', 'colorization', 'segmentation+colorization'],
        folds: [0, 1],
        seeds: [3, 4],
        set: ['steps=20', 'granularity=0,1'],
      }),
      root,
      'flags',
    );
    expect(f.cells).toEqual(s.cells.map((c) => ({ ...c })));
  });

  it('names the file and the field of every mistake', () => {
    const bad = (name: string, text: string) => {
      try {
        const { file, base } = readSweepFile(write(name, text));
        expandSweep(file, base, name);
      } catch (e) {
        expect(e).toBeInstanceOf(SweepSpecError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(bad('a.yaml', 'tasks: [segmentation\n')).toMatch(/sweep file .*a\.yaml is not valid YAML/);
    expect(bad('b.json', '{"tasks": ["segmentation"], "weights": "w", "serach": {}}')).toMatch(
      /b\.json is not a valid sweep:\n {2}\(top level\): Unrecognized key: "serach"/,
    );
    expect(bad('c.yaml', 'weights: w\ntasks: [segmentation]\nsearch: { steps: -1 }\n')).toMatch(/c\.yaml is not a valid sweep:\n {2}search\.steps/);
    expect(bad('d.yaml', 'weights: w\ntasks: [segmentaton]\n')).toMatch(/d\.yaml: tasks: unknown task 'segmentaton'/);
    expect(bad('e.yaml', 'weights: w\ntasks: [segmentation]\nseeds: [1, 1]\n')).toMatch(/two cells would share the directory cells\/segmentation-f0-s1/);
    expect(() => readSweepFile(join(root, 'none.yaml'))).toThrow(/cannot read sweep file .*none\.yaml/);
    expect(() => sweepFromFlags({ weights: ['w'], tasks: ['segmentation'], set: ['steps'] })).toThrow(/--set steps: expected option=value/);
  });
});

describe('the Slurm job array script', () => {
  it('lists the cells left as an array and carries every setting', () => {
    expect(arraySpec([8, 0, 1, 2, 5, 7])).toBe('0-2,5,7-8');
    const { file, base } = readSweepFile(write('study2.yaml', STUDY));
    const s = expandSweep(file, base, 'study2.yaml');
    const paths = sweepPaths(join(root, 'sw'));
    const script = cellsScript(s, paths, [0, 1, 2, 5], {
      ...s.slurm,
      account: 'proj1',
      time: '04:00:00',
      cpusPerTask: 8,
      mem: '32G',
      setup: ['module load nodejs/20'],
      sbatchArgs: ['--qos=long'],
      maxParallel: 2,
    });
    for (const line of [
      '#SBATCH --array=0-2,5%2',
      '#SBATCH --partition=gpu',
      '#SBATCH --gres=gpu:1',
      '#SBATCH --account=proj1',
      '#SBATCH --time=04:00:00',
      '#SBATCH --cpus-per-task=8',
      '#SBATCH --mem=32G',
      '#SBATCH --qos=long',
      '#SBATCH --requeue',
      '#SBATCH --open-mode=append',
      `#SBATCH --output=${paths.logs}/slurm-%a.log`,
      'module load nodejs/20',
    ])
      expect(script.split('\n'), line).toContain(line);
    expect(script).toMatch(/\nexec .*main\.js sweep cell .*\/sw --index "\$SLURM_ARRAY_TASK_ID"\n$/);
  });
});

describe('sweep locks', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const k of ['SLURM_JOB_ID', 'SLURM_ARRAY_JOB_ID', 'SLURM_ARRAY_TASK_ID', 'SLURM_RESTART_COUNT']) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });

  it('refuses a second holder and names the first', () => {
    const p = join(root, 'a.lock');
    const lock = acquireLock(p, 'sweep A');
    expect(() => acquireLock(p, 'sweep A')).toThrow(new RegExp(`sweep A is locked by pid ${process.pid} on host ${hostname()}`));
    lock.release();
    expect(existsSync(p)).toBe(false);
    acquireLock(p, 'sweep A').release();
  });

  it('takes over from a process that has exited, or from an earlier run of the same Slurm element', () => {
    const p = join(root, 'b.lock');
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const holder = (pid: number, host: string, slurm?: object) =>
      writeFileSync(p, JSON.stringify({ pid, host, started: 'x', command: 'vtv', nonce: 'n', ...(slurm ? { slurm } : {}) }));
    holder(Number(dead.stdout), hostname());
    const l1 = acquireLock(p, 'cell');
    expect(JSON.parse(readFileSync(p, 'utf8')).pid).toBe(process.pid);
    l1.release();

    // A lock from another host is refused, unless it is this Slurm array element's earlier run.
    Object.assign(process.env, { SLURM_JOB_ID: '12', SLURM_ARRAY_JOB_ID: '7', SLURM_ARRAY_TASK_ID: '0', SLURM_RESTART_COUNT: '1' });
    holder(1, 'node-a', { jobId: '9', arrayJobId: '7', arrayTaskId: '0', restartCount: 0 });
    const l2 = acquireLock(p, 'cell');
    l2.release();
    holder(1, 'node-a', { jobId: '10', arrayJobId: '7', arrayTaskId: '1', restartCount: 0 });
    let err: unknown;
    try {
      acquireLock(p, 'cell');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LockHeldError);
    expect((err as Error).message).toMatch(/cell is locked by pid 1 on host node-a .*Slurm job 10.*remove the file/);
  });
});

describe('vtv sweep status', () => {
  it('shows a running cell with its step and an ETA from its step times, and a stopped one as pending with its checkpoint', () => {
    const dir = join(root, 'st');
    const { file, base } = readSweepFile(write('st.yaml', 'weights: w.safetensors\ntasks: [segmentation]\nseeds: [0, 1]\nsearch: { steps: 10 }\n'));
    storeSweep(dir, expandSweep(file, base, 'st.yaml'));
    const paths = sweepPaths(dir);
    const shared = runPaths(paths.shared);
    for (const f of [shared.config, shared.means, shared.taskness]) write(relative(root, f), '{}');
    const cell = (i: number) => runPaths(paths.cell(`segmentation-f0-s${i}`));
    for (const i of [0, 1]) {
      write(relative(root, cell(i).searchLog('segmentation')), `${[0, 1, 2].map((step) => JSON.stringify({ step, loss: 0, seconds: 2 })).join('\n')}\n`);
      write(relative(root, cell(i).searchState('segmentation')), JSON.stringify({ step: 2 }));
    }
    const status = (i: number, state: string) =>
      write(
        relative(root, paths.cellStatus(`segmentation-f0-s${i}`)),
        JSON.stringify({
          format: 'vtv-sweep-cell',
          version: 1,
          id: `segmentation-f0-s${i}`,
          state,
          phase: 'search',
          runner: { host: hostname(), pid: process.pid },
          attempts: 1,
          started: '',
          updated: '',
        }),
      );
    status(0, 'running');
    status(1, 'stopped');
    const s = sweepStatus(dir);
    expect(s.cells[0]).toMatchObject({ state: 'running', step: 3, steps: 10, eta: 14, secondsPerStep: 2 });
    expect(s.cells[1]).toMatchObject({ state: 'pending', step: 3, checkpoint: 2 });
    expect(s.cells[1]!.note).toMatch(/stopped; resumes from its checkpoint at step 2/);
    expect(s.eta).toBe(28); // 14 steps left over both cells at 2 s, one cell running
    const text = statusText(s, paths, loadSweep(dir).sweep);
    expect(text).toMatch(/segmentation-f0-s0 +running +3\/10 +0m14s +search, pid \d+, attempt 1/);
    expect(text).toMatch(/0 done, 1 running, 1 pending, 0 failed; searches done in about 0m28s/);
  });
});

describe('vtv sweep run (local executor, real tiny engine)', () => {
  it('Ctrl-C stops the running cell after its checkpoint and exits 130', async () => {
    expect(existsSync(main), `${main} is missing: scripts/test.sh compiles dist/ first (npx tsc -p tsconfig.json)`).toBe(true);
    writeRandomWeights(join(root, 'w.safetensors'), preset('tiny'), 2);
    write(
      'stop.json',
      JSON.stringify({
        model: 'tiny',
        weights: 'w.safetensors',
        tasks: ['segmentation'],
        search: { steps: 100000, samplesPerStep: 4, trainImages: 2, valImages: 0, validateEvery: 0, checkpointEvery: 100000 },
        collect: { tasks: ['segmentation'], folds: [0], episodesPerFold: 2, keep: 1 },
        eval: { episodes: 1, examples: 0 },
      }),
    );
    const child = spawn(process.execPath, [main, 'sweep', 'run', 'stop', '--file', 'stop.json', '--workers', '1', '--threads', '1'], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
    // Interrupt once the cell's search has logged a step.
    const log = runPaths(join(root, 'stop', 'cells', 'segmentation-f0-s0')).searchLog('segmentation');
    const started = Date.now();
    while (!(existsSync(log) && readFileSync(log, 'utf8').includes('\n'))) {
      if (child.exitCode !== null || Date.now() - started > 90_000) throw new Error(`the cell did not start a step: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGINT');
    expect(await exited, stderr).toBe(130);
    expect(stderr).toMatch(/vtv: sweep stopped; `vtv sweep run stop` continues it from the checkpoints/);
    const state = JSON.parse(readFileSync(runPaths(join(root, 'stop', 'cells', 'segmentation-f0-s0')).searchState('segmentation'), 'utf8'));
    expect(state.step).toBeGreaterThanOrEqual(1);
  }, 180_000);

  it('fails one cell alone, records its error, and status shows it', () => {
    expect(existsSync(main), `${main} is missing: scripts/test.sh compiles dist/ first (npx tsc -p tsconfig.json)`).toBe(true);
    writeRandomWeights(join(root, 'w.safetensors'), preset('tiny'), 2);
    // colorization is left out of the collection, so its cell cannot find its task vector.
    write(
      'fail.json',
      JSON.stringify({
        model: 'tiny',
        weights: 'w.safetensors',
        tasks: ['colorization', 'segmentation'],
        search: { steps: 2, samplesPerStep: 4, trainImages: 2, valImages: 2, validateEvery: 0 },
        collect: { tasks: ['segmentation'], folds: [1], episodesPerFold: 2, keep: 1 },
        eval: { episodes: 1, examples: 0 },
      }),
    );
    const vtv = (args: string[]) => spawnSync(process.execPath, [main, ...args], { cwd: root, encoding: 'utf8' });
    const r = vtv(['sweep', 'run', 'fail', '--file', 'fail.json', '--workers', '1']);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/cell colorization-f0-s0: failed: .*means\.safetensors has no task vector for 'colorization'/);
    expect(r.stderr).toMatch(/1 cell\(s\) failed/);
    const status = JSON.parse(vtv(['sweep', 'status', 'fail', '--json']).stdout);
    expect(status.counts).toEqual({ pending: 0, running: 0, done: 1, failed: 1 });
    expect(status.cells[0].error).toMatch(/no task vector for 'colorization'/);
    const text = vtv(['sweep', 'status', 'fail']).stdout;
    expect(text).toMatch(/colorization-f0-s0 +failed/);
    expect(text).toMatch(/failed:\n {2}colorization-f0-s0: .*no task vector/);
    // The sweep table lists both cells; the report links the finished cell's own report.
    const c = vtv(['sweep', 'collect', 'fail']);
    expect(c.status, c.stderr).toBe(0);
    const res = JSON.parse(readFileSync(join(root, 'fail/results.json'), 'utf8'));
    expect(res.cells).toEqual([
      { id: 'colorization-f0-s0', state: 'missing' },
      { id: 'segmentation-f0-s0', state: 'done' },
    ]);
    expect(res.rows.map((r: { cell: string }) => r.cell)).toEqual(['segmentation-f0-s0']);
    const page = readFileSync(join(root, 'fail/report/index.html'), 'utf8');
    expect(page).toContain('<a href="../cells/segmentation-f0-s0/report/index.html">');
    expect(existsSync(join(root, 'fail/cells/segmentation-f0-s0/report/index.html'))).toBe(true);
    // A finished cell is an ordinary run: vtv search --resume continues it (one step more), vtv eval runs on it.
    const cellRun = 'fail/cells/segmentation-f0-s0';
    const more = vtv([
      'search',
      '--run',
      cellRun,
      '--task',
      'segmentation',
      '--resume',
      '--steps',
      '3',
      '--samples-per-step',
      '4',
      '--train-images',
      '2',
      '--val-images',
      '2',
      '--validate-every',
      '0',
    ]);
    expect(more.status, more.stderr).toBe(0);
    expect(
      readFileSync(join(root, cellRun, 'search/segmentation/log.jsonl'), 'utf8')
        .trim()
        .split('\n'),
    ).toHaveLength(3);
    rmSync(join(root, cellRun, 'eval'), { recursive: true });
    const ev = vtv(['eval', '--run', cellRun, '--episodes', '1', '--folds', '0', '--examples', '0']);
    expect(ev.status, ev.stderr).toBe(0);
    expect(existsSync(join(root, cellRun, 'eval/results.json'))).toBe(true);
    // A different grid on the same directory is refused.
    const other = vtv(['sweep', 'run', 'fail', '--weights', 'w.safetensors', '--model', 'tiny', '--tasks', 'segmentation', '--seeds', '9']);
    expect(other.status).toBe(1);
    expect(other.stderr).toMatch(/holds a different sweep \(2 cells there, 1 now\)/);
  });
});
