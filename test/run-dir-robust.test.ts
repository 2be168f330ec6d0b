// A run directory you can trust: each of the failures found by probing vtv as a careless or unlucky
// user would (two searches at once, an interrupted --force, a torn log line, absurd options, NaN
// weights, zip bombs, overwritten inputs, unnamed errors) now gives a clear error or a correct result,
// with nothing lost. The run commands use a fake engine here; the weights checks use the real addon.
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { convertCheckpoints } from '../src/checkpoint/convert.js';
import { unpickle } from '../src/checkpoint/pickle.js';
import { readSafetensorsHeader, writeSafetensors } from '../src/checkpoint/safetensors.js';
import { TorchCheckpoint } from '../src/checkpoint/torch-checkpoint.js';
import { collectCommand } from '../src/cli/collect.js';
import type { Deps } from '../src/cli/common.js';
import { evalCommand } from '../src/cli/eval.js';
import { program } from '../src/cli/program.js';
import { searchCommand } from '../src/cli/search.js';
import { preset } from '../src/config.js';
import { encodePng, makeImage, readLabelFile } from '../src/data/image.js';
import type { ForwardRequest } from '../src/engine.js';
import { Engine } from '../src/engine.js';
import { repairLog } from '../src/method/reinforce.js';
import { randomWeights, writeRandomWeights } from '../src/model/random-weights.js';
import { runPaths } from '../src/run/layout.js';
import { acquireLock, searchLockPath } from '../src/run/lock.js';
import { FakeEngine } from './method-fake-engine.js';
import { buildZip, emptyStateDictPickle } from './zip-builder.js';

const tiny = preset('tiny');
const logs: string[] = [];
const deps: Deps = { openEngine: async (c) => new FakeEngine(c), log: (m) => logs.push(m), progress: false };
const root = mkdtempSync(join(tmpdir(), 'vtv-robust-'));
const weights = join(root, 'tiny.safetensors');
const base = { weights: [weights], model: 'tiny', dataset: 'bundled' as const };
const small = { folds: [1], episodesPerFold: 3, keep: 2, batch: 3, tasks: ['segmentation'] };
const searchSmall = { tasks: ['segmentation'], steps: 4, samplesPerStep: 8, valImages: 3, validateEvery: 2, checkpointEvery: 2 };

/** A fake engine whose forwards can be slowed down or made to fail (a crash mid-search). */
function engineDeps(opts: { delayMs?: number; failAfter?: number }): Deps {
  return {
    ...deps,
    openEngine: async (c) => {
      const e = new FakeEngine(c);
      const forward = e.forward.bind(e);
      let calls = 0;
      e.forward = async (req: ForwardRequest) => {
        if (opts.failAfter !== undefined && ++calls > opts.failAfter) throw new Error('simulated crash');
        if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
        return forward(req);
      };
      return e;
    },
  };
}

/** Runs the vtv command line in this process; resolves to the error it ends with, or undefined. */
async function cli(...args: string[]): Promise<Error | undefined> {
  try {
    const p = program().exitOverride();
    for (const c of p.commands) c.exitOverride().configureOutput({ writeErr: () => {} });
    await p.parseAsync(['node', 'vtv', ...args]);
    return undefined;
  } catch (e) {
    return e as Error;
  }
}

async function newRun(name: string): Promise<string> {
  const run = join(root, name);
  await collectCommand({ ...base, run, ...small }, deps);
  return run;
}

beforeAll(() => {
  writeRandomWeights(weights, tiny, 1);
});

describe('1. one writer per run directory', () => {
  it('refuses a second search of the same task while one runs, naming the holder; the first completes intact', async () => {
    const run = await newRun('lock');
    const p = runPaths(run);
    const first = searchCommand({ ...base, run, ...searchSmall, steps: 6 }, engineDeps({ delayMs: 30 }));
    for (let i = 0; i < 200 && !existsSync(p.searchLog('segmentation')); i++) await new Promise((r) => setTimeout(r, 10));
    const err = await searchCommand({ ...base, run, ...searchSmall, seed: 7, force: true }, deps).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(
      new RegExp(
        `search 'segmentation' of run .* is in use by pid ${process.pid} on ${hostname()}, started \\d{4}-\\d\\d-\\d\\dT.*; lock file .*search-segmentation\\.lock`,
      ),
    );
    // collect would replace the task vectors under the search: refused too.
    await expect(collectCommand({ ...base, run, ...small, force: true }, deps)).rejects.toThrow(/search 'segmentation' of run .* is in use by pid/);
    await first;
    const steps = readFileSync(p.searchLog('segmentation'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).step);
    expect(steps).toEqual([0, 1, 2, 3, 4, 5]); // one search's log, no duplicates
    expect(JSON.parse(readFileSync(p.subset('segmentation'), 'utf8')).selectedStep).toBeLessThan(6);
    expect(existsSync(searchLockPath(run, 'segmentation'))).toBe(false); // released
  });

  it('takes over a lock left by a dead process on this host, but not a live one', async () => {
    const run = await newRun('stale');
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    mkdirSync(join(run, '.locks'), { recursive: true });
    const lockFile = searchLockPath(run, 'segmentation');
    writeFileSync(lockFile, JSON.stringify({ pid: Number(dead), host: hostname(), command: 'vtv search (killed)', started: '2026-01-01T00:00:00Z' }));
    await searchCommand({ ...base, run, ...searchSmall }, deps);
    expect(existsSync(runPaths(run).subset('segmentation'))).toBe(true);
    // A live holder (this process) is never taken over.
    const held = acquireLock(lockFile, 'search');
    try {
      await expect(searchCommand({ ...base, run, ...searchSmall, force: true }, deps)).rejects.toThrow(/is in use by pid/);
    } finally {
      held.release();
    }
  });
});

describe('1b. locks across processes', () => {
  it('another process holding a search is named; once it is killed (-9) its lock is taken over', async () => {
    const run = await newRun('cross');
    const lockFile = searchLockPath(run, 'segmentation');
    const script = `import { acquireLock } from ${JSON.stringify(join(process.cwd(), 'src/run/lock.ts'))};
      acquireLock(${JSON.stringify(lockFile)}, 'search'); console.log('held'); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((res, rej) => {
        child.stdout.on('data', (d) => String(d).includes('held') && res());
        child.on('exit', (code) => rej(new Error(`lock holder exited with ${code}`)));
      });
      await expect(searchCommand({ ...base, run, ...searchSmall }, deps)).rejects.toThrow(
        new RegExp(`is in use by pid ${child.pid} on ${hostname()}, started .*--input-type=module`),
      );
    } finally {
      child.kill('SIGKILL');
    }
    if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
    expect(existsSync(lockFile)).toBe(true); // a kill -9 leaves it behind
    await searchCommand({ ...base, run, ...searchSmall }, deps);
    expect(existsSync(runPaths(run).subset('segmentation'))).toBe(true);
    expect(existsSync(lockFile)).toBe(false);
  });
});

describe('2. --force moves the old results aside before writing', () => {
  it('an interrupted --force leaves no old subset looking current, and the old one is kept under replaced/', async () => {
    const run = await newRun('force');
    const p = runPaths(run);
    await searchCommand({ ...base, run, ...searchSmall }, deps);
    const old = readFileSync(p.subset('segmentation'), 'utf8');
    await searchCommand({ ...base, run, ...searchSmall, force: true, stopAfter: 1 }, deps); // Ctrl-C after a step
    expect(existsSync(p.subset('segmentation'))).toBe(false);
    await expect(evalCommand({ ...base, run, tasks: ['segmentation'], episodes: 1 }, deps)).rejects.toThrow(/subset .*subset\.json does not exist/);
    const kept = readdirSync(join(run, 'replaced')).filter((d) => d.endsWith('search-segmentation'));
    expect(kept).toHaveLength(1);
    expect(readFileSync(join(run, 'replaced', kept[0]!, 'search', 'segmentation', 'subset.json'), 'utf8')).toBe(old);
  });

  it('--resume after a --force that died before its first checkpoint does not resume the old finished state', async () => {
    const run = await newRun('force-crash');
    const p = runPaths(run);
    await searchCommand({ ...base, run, ...searchSmall }, deps);
    expect(JSON.parse(readFileSync(p.searchState('segmentation'), 'utf8')).step).toBe(4);
    await expect(searchCommand({ ...base, run, ...searchSmall, steps: 8, force: true }, engineDeps({ failAfter: 1 }))).rejects.toThrow(/simulated crash/);
    await expect(searchCommand({ ...base, run, ...searchSmall, steps: 8, resume: true }, deps)).rejects.toThrow(/--resume: there is no search state/);
    expect(existsSync(p.subset('segmentation'))).toBe(false);
  });

  it('eval and convert refuse to replace their outputs without --force', async () => {
    const run = await newRun('no-overwrite');
    await searchCommand({ ...base, run, ...searchSmall }, deps);
    await evalCommand({ ...base, run, tasks: ['segmentation'], folds: [0], episodes: 1, examples: 0 }, deps);
    const before = readFileSync(runPaths(run).evalJson, 'utf8');
    await expect(evalCommand({ ...base, run, tasks: ['segmentation'], folds: [0], episodes: 1 }, deps)).rejects.toThrow(/results\.json exists: pass --force/);
    expect(readFileSync(runPaths(run).evalJson, 'utf8')).toBe(before);
    await evalCommand({ ...base, run, tasks: ['segmentation'], folds: [0], episodes: 1, examples: 0, force: true }, deps);
    expect(readdirSync(join(run, 'replaced')).some((d) => d.endsWith('-eval'))).toBe(true);
  });
});

describe('3. resume repairs a torn last log line', () => {
  it('drops the torn line, says so, and continues to the same steps', async () => {
    const run = await newRun('torn');
    const p = runPaths(run);
    await searchCommand({ ...base, run, ...searchSmall, stopAfter: 2 }, deps);
    appendFileSync(p.searchLog('segmentation'), '{"step":2,"loss":0.51,"perTask":{"segmen'); // a full disk cut this write
    logs.length = 0;
    await searchCommand({ ...base, run, ...searchSmall, resume: true }, deps);
    expect(logs.join('\n')).toMatch(/log\.jsonl: dropped a torn last line/);
    const steps = readFileSync(p.searchLog('segmentation'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).step);
    expect(steps).toEqual([0, 1, 2, 3]);
  });

  it('names the file and line of damage before the end, and a log that does not match the state', () => {
    const dir = mkdtempSync(join(root, 'log-'));
    const log = join(dir, 'log.jsonl');
    writeFileSync(log, '{"step":0}\n{"step":1,"lo\n{"step":2}\n');
    expect(() => repairLog(log, 3)).toThrow(/log\.jsonl: line 2: is cut off.*damaged before its last line/);
    writeFileSync(log, '{"step":0}\n');
    expect(() => repairLog(log, 3)).toThrow(/log\.jsonl has 1 step\(s\) but the state is at step 3/);
  });
});

describe('4 and 8. every option is range-checked before anything is allocated', () => {
  it('refuses absurd numbers and unknown choices with the flag named', async () => {
    const cases: [string[], RegExp][] = [
      [['search', '--task', 'segmentation', '--threads', '100000'], /--threads must be 0 to \d+, got 100000/],
      [['search', '--task', 'segmentation', '--steps', '0'], /--steps must be 1 to 10000000, got 0/],
      [['search', '--task', 'segmentation', '--steps', '-5'], /--steps must be 1 to/],
      [['search', '--task', 'segmentation', '--samples-per-step', '20000000'], /--samples-per-step must be 2 to 1000000, got 20000000/],
      [['search', '--task', 'segmentation', '--select', 'worst'], /option '--select <which>' argument 'worst' is invalid.*best, last/],
      [['search', '--task', 'segmentation', '--final-subset', 'bogus'], /argument 'bogus' is invalid.*sample, threshold/],
      [['search', '--task', 'segmentation', '--granularity', '3'], /--granularity must be 0 to 2, got 3/],
      [['collect', '--backend', 'gpu'], /argument 'gpu' is invalid/],
      [['eval', '--episodes', '0'], /--episodes must be 1 to/],
      [['convert', '--mae', 'a.pth', '--out', 'b.safetensors', '--dtype', 'fp8'], /argument 'fp8' is invalid/],
      [['collect', '--name', '../../x', '--weights', weights], /--name '\.\.\/\.\.\/x' is not a run name/],
    ];
    for (const [args, want] of cases) {
      const err = await cli(...args);
      expect(err?.message, args.join(' ')).toMatch(want);
    }
    expect(existsSync(join(root, '..', '..', 'x'))).toBe(false);
  });

  it('refuses a search whose canvases would not fit in memory, printing the estimate', async () => {
    const run = await newRun('memory');
    await expect(searchCommand({ ...base, run, ...searchSmall, trainImages: 100000 }, deps)).rejects.toThrow(
      /needs about [\d.]+ GiB of memory, more than the [\d.]+ GiB vtv allows itself on this machine.*lower --train-images/,
    );
    // The library refuses what the CLI would: a search with no steps writes nothing.
    await expect(searchCommand({ ...base, run, ...searchSmall, steps: 0 }, deps)).rejects.toThrow(/--steps \(steps\) must be an integer from 1/);
    await expect(searchCommand({ ...base, run, ...searchSmall, select: 'worst' as 'best' }, deps)).rejects.toThrow(/--select must be best or last/);
    expect(existsSync(runPaths(run).searchDir('segmentation'))).toBe(false);
  });
});

describe('5. weights with NaN or Inf are refused at load, naming the tensor', () => {
  it('Engine.open and vtv collect name the file and tensor', async () => {
    const w = randomWeights(tiny, 3);
    const key = 'blocks.1.attn.qkv.weight';
    (w.get(key)!.data as Float32Array)[5] = Number.NaN;
    const bad = join(root, 'nan.safetensors');
    writeSafetensors(bad, w, { vtv_config: JSON.stringify(tiny) });
    await expect(Engine.open({ config: tiny, weights: bad, threads: 1 })).rejects.toThrow(
      new RegExp(`nan\\.safetensors: tensor '${key.replace(/\./g, '\\.')}' has 1 non-finite value\\(s\\) \\(NaN or Inf\\).*element 5`),
    );
    const real: Deps = { ...deps, openEngine: (c, ws, b, t) => Engine.open({ config: c, weights: ws, backend: b, threads: t }) };
    await expect(collectCommand({ ...base, weights: [bad], run: join(root, 'nan-run'), ...small }, real)).rejects.toThrow(/non-finite value/);
    expect(existsSync(runPaths(join(root, 'nan-run')).means)).toBe(false);
  });

  it('a weights file replaced in place after opening does not crash the engine', async () => {
    const copy = join(root, 'replaced.safetensors');
    writeRandomWeights(copy, tiny, 4);
    const engine = await Engine.open({ config: tiny, weights: copy, threads: 1 });
    try {
      writeFileSync(copy, ''); // truncated in place, as `cp other copy` does first
      const canvases = new Float32Array(3 * 224 * 224);
      const r = await engine.forward({ mode: 'one-shot', canvases, outputs: { tokens: true } });
      expect(r.tokens?.length).toBeGreaterThan(0);
    } finally {
      engine.close();
    }
  });
});

describe('6. zip bombs and lying sizes in a checkpoint', () => {
  it('refuses a data.pkl that would inflate far beyond its compressed size, leaving no output', async () => {
    const bomb = join(root, 'bomb.pth');
    writeFileSync(bomb, buildZip([{ name: 'archive/data.pkl', data: new Uint8Array(64 * 2 ** 20), method: 8 }]));
    const out = join(root, 'bomb.safetensors');
    await expect(convertCheckpoints({ mae: bomb, out })).rejects.toThrow(
      /bomb\.pth: deflated entry 'archive\/data\.pkl' declares 67108864 bytes from \d+ compressed, a ratio over 200:1/,
    );
    expect(readdirSync(root).filter((f) => f.startsWith('bomb.safetensors'))).toEqual([]);
  });

  it('stops inflating at the declared size, and refuses declared sizes over the cap', () => {
    const liar = join(root, 'liar.pth');
    const big = new Uint8Array(8 * 2 ** 20);
    writeFileSync(liar, buildZip([{ name: 'archive/data.pkl', data: big, method: 8, declaredSize: 1000, crc: 0 }]));
    expect(() => TorchCheckpoint.open(liar)).toThrow(/liar\.pth: entry 'archive\/data\.pkl' inflates past its declared 1000 bytes/);
    const huge = join(root, 'huge.pth');
    const raw = deflateRawSync(new Uint8Array(1024));
    writeFileSync(
      huge,
      buildZip([
        { name: 'archive/data.pkl', data: emptyStateDictPickle() },
        { name: 'archive/data/0', data: new Uint8Array(1024), method: 8, raw, declaredSize: 2 ** 31 },
      ]),
    );
    expect(() => TorchCheckpoint.open(huge)).toThrow(/huge\.pth: deflated entry 'archive\/data\/0' declares 2147483648 bytes, more than the 268435456/);
    const stored = join(root, 'stored-liar.pth');
    writeFileSync(stored, buildZip([{ name: 'archive/data.pkl', data: emptyStateDictPickle(), declaredSize: 5 }]));
    expect(() => TorchCheckpoint.open(stored)).toThrow(/stored entry 'archive\/data\.pkl' declares 5 bytes but occupies \d+/);
  });
});

describe('7. convert never replaces its own input', () => {
  it('refuses --out equal to --mae, even with --force, and an existing --out without --force', async () => {
    const pth = join(root, 'a.pth');
    writeFileSync(pth, buildZip([{ name: 'archive/data.pkl', data: emptyStateDictPickle() }]));
    const before = readFileSync(pth);
    for (const force of [[], ['--force']]) {
      const err = await cli('convert', '--mae', pth, '--out', pth, ...force);
      expect(err?.message).toMatch(/--out .*a\.pth is the --mae input: converting would replace the checkpoint it reads/);
    }
    expect(readFileSync(pth).equals(before)).toBe(true);
    const out = join(root, 'exists.safetensors');
    writeFileSync(out, 'x');
    expect((await cli('convert', '--mae', pth, '--out', out))?.message).toMatch(/exists\.safetensors exists: pass --force to replace it/);
    expect(readFileSync(out, 'utf8')).toBe('x');
  });
});

describe('9. errors name the file and the problem', () => {
  it('a corrupt config.json, subset.json or state.json', async () => {
    const run = await newRun('corrupt');
    const p = runPaths(run);
    await searchCommand({ ...base, run, ...searchSmall, stopAfter: 2 }, deps);
    const state = readFileSync(p.searchState('segmentation'), 'utf8');
    writeFileSync(p.searchState('segmentation'), state.slice(0, 100));
    await expect(searchCommand({ ...base, run, ...searchSmall, resume: true }, deps)).rejects.toThrow(/state\.json: is cut off at line \d+, column \d+/);
    writeFileSync(p.searchState('segmentation'), state);
    await searchCommand({ ...base, run, ...searchSmall, resume: true }, deps);
    writeFileSync(p.subset('segmentation'), '{"format": "vtv-subset", "version": 1, "chosen": [1, 2');
    await expect(evalCommand({ ...base, run, tasks: ['segmentation'], episodes: 1 }, deps)).rejects.toThrow(/subset\.json: is cut off/);
    const config = readFileSync(p.config, 'utf8');
    writeFileSync(p.config, '');
    await expect(searchCommand({ ...base, run, ...searchSmall, force: true }, deps)).rejects.toThrow(/config\.json: is empty/);
    writeFileSync(p.config, config.replace('"bundled"', '"imagenet"'));
    await expect(searchCommand({ ...base, run, ...searchSmall, force: true }, deps)).rejects.toThrow(/config\.json: is not a valid vtv run config: dataset:/);
  });

  it('a corrupt label PNG', () => {
    const png = Buffer.from(encodePng(makeImage(16, 16, 1, new Uint8Array(256).fill(3))));
    png.fill(0x55, 41, 60); // inside the IDAT stream
    const path = join(root, 'label.png');
    writeFileSync(path, png);
    expect(() => readLabelFile(path)).toThrow(/label\.png: corrupt or unsupported PNG/);
  });

  it('a pickle with a bad \\U escape or 300k APPENDS, and a safetensors header of null', () => {
    const opts = { source: 'x.pth:archive/data.pkl', resolveGlobal: () => null };
    const badEscape = Buffer.concat([Buffer.from([0x80, 0x02, 0x56]), Buffer.from('\\UFFFFFFFF\n'), Buffer.from([0x2e])]);
    expect(() => unpickle(badEscape, opts)).toThrow(/x\.pth:archive\/data\.pkl: bad \\U escape \\UFFFFFFFF/);
    const n = 300_000;
    const appends = Buffer.concat([Buffer.from([0x80, 0x02, 0x5d, 0x28]), Buffer.alloc(n * 2, 0), Buffer.from([0x65, 0x2e])]);
    for (let i = 0; i < n; i++) appends[4 + 2 * i] = 0x4b; // BININT1 0
    const list = unpickle(appends, opts) as number[];
    expect(list).toHaveLength(n);
    const nullHeader = join(root, 'null.safetensors');
    const h = Buffer.alloc(16, 0x20);
    h.writeBigUInt64LE(8n, 0);
    h.write('null', 8);
    writeFileSync(nullHeader, h);
    expect(() => readSafetensorsHeader(nullHeader)).toThrow(/null\.safetensors: the safetensors header is null, expected a JSON object of tensors/);
  });
});
