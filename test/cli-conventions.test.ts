// The CLI's conventions, through the real `vtv` process: --version prints the package version, usage
// errors look like commander's own, a bad input file is one line naming it, the error classes form one
// hierarchy, and a search stopped by Ctrl-C (SIGINT) writes its state and exits 130. The search runs the tiny random model on the real engine. The CLI runs from dist/, which
// scripts/test.sh compiles before vitest (npx tsc -p tsconfig.json).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PickleError } from '../src/checkpoint/pickle.js';
import { SafetensorsError } from '../src/checkpoint/safetensors.js';
import { CheckpointError } from '../src/checkpoint/torch-checkpoint.js';
import { ZipError } from '../src/checkpoint/zip.js';
import { preset } from '../src/config.js';
import { ConflictError, EngineError, InputError, InterruptedError, UsageError, VtvError } from '../src/errors.js';
import { writeRandomWeights } from '../src/model/random-weights.js';
import { JsonFileError } from '../src/run/json-file.js';
import { runPaths } from '../src/run/layout.js';
import { LockError } from '../src/run/lock.js';
import { LockHeldError } from '../src/sweep/lock.js';
import { SweepSpecError } from '../src/sweep/spec.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const main = join(repo, 'dist', 'src', 'cli', 'main.js');
const args = (a: string[]) => [main, ...a];
const vtv = (a: string[]) => spawnSync(process.execPath, args(a), { cwd: repo, encoding: 'utf8' });

describe('vtv CLI conventions', () => {
  it('runs the compiled CLI', () => {
    expect(existsSync(main), `${main} is missing: compile dist/ first (npx tsc -p tsconfig.json)`).toBe(true);
  });

  it('--version prints the version in package.json', () => {
    const { version } = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'));
    const r = vtv(['--version']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(version);
  });

  it('prints usage errors as commander does, with exit code 1', () => {
    const bad = vtv(['search', '--task', 'segmentation', '--select', 'worst']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/^error: option '--select <which>' argument 'worst' is invalid\. Allowed choices are best, last\./m);
    const noRun = vtv(['search', '--run', join(tmpdir(), 'vtv-no-such-run'), '--task', 'segmentation']);
    expect(noRun.status).toBe(1);
    expect(noRun.stderr).toMatch(/^error: .*vtv-no-such-run is not a vtv run \(no config\.json\)/m);
  });

  it('prints a bad input file as one line naming the file and the problem, with exit code 1', () => {
    const bad = join(mkdtempSync(join(tmpdir(), 'vtv-bad-')), 'bad.safetensors');
    writeFileSync(bad, 'abc');
    const r = vtv(['info', '--weights', bad]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`vtv: ${bad}: too short for a safetensors file (3 bytes)\n`);
  });

  it('every error a user can act on is a VtvError of one kind, with its exit code', () => {
    for (const E of [SafetensorsError, ZipError, PickleError, CheckpointError, JsonFileError, SweepSpecError]) {
      expect(Object.prototype.isPrototypeOf.call(InputError.prototype, E.prototype), E.name).toBe(true);
    }
    for (const E of [LockError, LockHeldError]) expect(Object.prototype.isPrototypeOf.call(ConflictError.prototype, E.prototype)).toBe(true);
    for (const E of [UsageError, InputError, EngineError, ConflictError, InterruptedError]) expect(new E('x')).toBeInstanceOf(VtvError);
    expect(new InterruptedError('x').exitCode).toBe(130);
    expect(new InputError('x').exitCode).toBe(1);
    expect(new InputError('x').name).toBe('InputError');
  });

  it('exits 130 when a search is interrupted, after writing its state', async () => {
    const root = mkdtempSync(join(tmpdir(), 'vtv-sigint-'));
    const weights = join(root, 'tiny.safetensors');
    writeRandomWeights(weights, preset('tiny'), 1);
    const run = join(root, 'run');
    const model = ['--weights', weights, '--model', 'tiny', '--dataset', 'bundled', '--threads', '1'];
    const c = vtv(['collect', '--run', run, ...model, '--tasks', 'segmentation', '--folds', '1', '--episodes-per-fold', '3', '--keep', '2']);
    expect(c.status, c.stderr).toBe(0);

    const p = runPaths(run);
    const child = spawn(
      process.execPath,
      args([
        'search',
        '--run',
        run,
        '--task',
        'segmentation',
        '--steps',
        '100000',
        '--samples-per-step',
        '4',
        '--val-images',
        '0',
        '--checkpoint-every',
        '1000',
      ]),
      { cwd: repo, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
    // Interrupt once the first step is in the log.
    const log = p.searchLog('segmentation');
    const started = Date.now();
    while (!(existsSync(log) && readFileSync(log, 'utf8').includes('\n'))) {
      if (child.exitCode !== null || Date.now() - started > 60_000) throw new Error(`search did not start a step: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGINT');
    expect(await exited, stderr).toBe(130);
    expect(stderr).toMatch(/search stopped at step \d+; state in/);
    const state = JSON.parse(readFileSync(p.searchState('segmentation'), 'utf8'));
    expect(state.step).toBeGreaterThanOrEqual(1);
    expect(state.step).toBeLessThan(100000);
    expect(existsSync(p.subset('segmentation'))).toBe(false);
  }, 120_000);
});
