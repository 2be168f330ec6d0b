// The vtv commands end to end on the bundled data with a fake engine (the method's own tests cover the
// maths; these check the files, the flow and the errors a user will hit). The real-engine demo runs in
// cli-demo-engine.test.ts.
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { collectCommand } from '../src/cli/collect.js';
import type { Deps } from '../src/cli/common.js';
import { demoCommand } from '../src/cli/demo.js';
import { evalCommand } from '../src/cli/eval.js';
import { program } from '../src/cli/program.js';
import { searchCommand } from '../src/cli/search.js';
import { preset } from '../src/config.js';
import { writeRandomWeights } from '../src/model/random-weights.js';
import { runPaths } from '../src/run/layout.js';
import { FakeEngine } from './method-fake-engine.js';

const tiny = preset('tiny');
const logs: string[] = [];
const deps: Deps = { openEngine: async (c) => new FakeEngine(c), log: (m) => logs.push(m), progress: false };
const root = mkdtempSync(join(tmpdir(), 'vtv-cli-'));
const weights = join(root, 'tiny.safetensors');
const run = join(root, 'run');
const base = { run, weights: [weights], model: 'tiny', dataset: 'bundled' as const };
const small = { folds: [1], episodesPerFold: 3, keep: 2, batch: 3 };
const searchSmall = { tasks: ['segmentation'], steps: 4, samplesPerStep: 8, valImages: 3, validateEvery: 2, checkpointEvery: 2 };
const snapshot = (p: string) => (existsSync(p) ? `${statSync(p).mtimeMs}:${readFileSync(p).length}` : 'absent');

beforeAll(async () => {
  writeRandomWeights(weights, tiny, 1);
  await collectCommand({ ...base, ...small, tasks: ['segmentation', 'colorization'] }, deps);
});

describe('vtv collect / search / eval (fake engine)', () => {
  it('writes the run layout', async () => {
    const p = runPaths(run);
    for (const f of [p.config, p.means, p.prompts, p.taskness]) expect(existsSync(f), f).toBe(true);
    const t = JSON.parse(readFileSync(p.taskness, 'utf8'));
    expect(t.perHead.length).toBe(tiny.encDepth * tiny.encHeads + tiny.decDepth * tiny.decHeads);
    await searchCommand({ ...base, ...searchSmall }, deps);
    for (const f of [p.searchState('segmentation'), p.searchLog('segmentation'), p.subset('segmentation')]) expect(existsSync(f), f).toBe(true);
    expect(readFileSync(p.searchLog('segmentation'), 'utf8').trim().split('\n')).toHaveLength(4);
    await evalCommand({ ...base, tasks: ['segmentation'], folds: [0, 1], episodes: 3, examples: 1 }, deps);
    const res = JSON.parse(readFileSync(p.evalJson, 'utf8'));
    expect(res.rows).toHaveLength(2);
    for (const k of ['oneShot', 'zeroShot', 'taskVector', 'random']) expect(Number.isFinite(res.rows[0][k])).toBe(true);
    expect(readFileSync(p.evalMd, 'utf8')).toMatch(/\| segmentation \| mean \| mIoU \|/);
    expect(readdirSync(p.examples('segmentation')).filter((f) => f.endsWith('_task-vector.png'))).toHaveLength(2);
  });

  it('runs a multi-task search and evaluates each of its tasks with the shared subset', async () => {
    const p = runPaths(join(root, 'multi'));
    await collectCommand({ ...base, run: p.root, ...small, tasks: ['segmentation', 'colorization'] }, deps);
    await searchCommand({ ...base, run: p.root, ...searchSmall, tasks: ['segmentation', 'colorization'] }, deps);
    const subset = JSON.parse(readFileSync(p.subset('multitask'), 'utf8'));
    expect(subset.tasks).toEqual(['segmentation', 'colorization']);
    const log = JSON.parse(readFileSync(p.searchLog('multitask'), 'utf8').split('\n')[0]!);
    expect(Object.keys(log.perTask)).toEqual(['segmentation', 'colorization']);
    await evalCommand({ ...base, run: p.root, folds: [0], episodes: 2, examples: 0 }, deps);
    const res = JSON.parse(readFileSync(p.evalJson, 'utf8'));
    expect(res.rows.map((r: { task: string }) => r.task)).toEqual(['segmentation', 'colorization']);
    expect(res.rows[1].metric).toBe('mse');
    // Image tasks also carry PSNR and SSIM per condition; segmentation does not.
    expect(res.rows[0].psnr).toBeUndefined();
    for (const k of ['oneShot', 'zeroShot', 'taskVector', 'random']) {
      expect(res.rows[1].psnr[k]).toBeGreaterThan(0);
      expect(res.rows[1].ssim[k]).toBeGreaterThan(-1);
      expect(res.rows[1].ssim[k]).toBeLessThanOrEqual(1);
    }
    expect(readFileSync(p.evalMd, 'utf8')).toMatch(/PSNR \(dB/);
    // The reference's per-fold draw from the search probabilities runs too.
    await evalCommand({ ...base, run: p.root, tasks: ['colorization'], folds: [0, 1], episodes: 1, examples: 0, drawPerFold: true, force: true }, deps);
    expect(JSON.parse(readFileSync(p.evalJson, 'utf8')).rows).toHaveLength(2);
  });

  it('names a wrong task and changes nothing', async () => {
    const p = runPaths(run);
    const before = snapshot(p.means);
    await expect(collectCommand({ ...base, ...small, tasks: ['segmentaton'], force: true }, deps)).rejects.toThrow(/unknown task 'segmentaton'/);
    await expect(searchCommand({ ...base, ...searchSmall, tasks: ['colourisation'] }, deps)).rejects.toThrow(/unknown task 'colourisation'/);
    expect(snapshot(p.means)).toBe(before);
  });

  it('refuses to overwrite collected task vectors or a search state without --force / --resume', async () => {
    const p = runPaths(run);
    const before = snapshot(p.means);
    await expect(collectCommand({ ...base, ...small }, deps)).rejects.toThrow(/exists: pass --force/);
    expect(snapshot(p.means)).toBe(before);
    await searchCommand({ ...base, ...searchSmall, tasks: ['colorization'] }, deps);
    const state = snapshot(p.searchState('colorization'));
    await expect(searchCommand({ ...base, ...searchSmall, tasks: ['colorization'] }, deps)).rejects.toThrow(/--resume to continue it, or --force/);
    expect(snapshot(p.searchState('colorization'))).toBe(state);
  });

  it('refuses to resume a search with a different configuration', async () => {
    const p = runPaths(run);
    await searchCommand({ ...base, ...searchSmall, tasks: ['colorization'], force: true, stopAfter: 2 }, deps);
    const state = snapshot(p.searchState('colorization'));
    const log = snapshot(p.searchLog('colorization'));
    await expect(searchCommand({ ...base, ...searchSmall, tasks: ['colorization'], resume: true, lr: 0.2 }, deps)).rejects.toThrow(
      /different search configuration[\s\S]*options\.lr: 0\.1 vs 0\.2/,
    );
    expect(snapshot(p.searchState('colorization'))).toBe(state);
    expect(snapshot(p.searchLog('colorization'))).toBe(log);
    await searchCommand({ ...base, ...searchSmall, tasks: ['colorization'], resume: true }, deps);
    expect(JSON.parse(readFileSync(p.searchState('colorization'), 'utf8')).step).toBe(4);
  });

  it('says what is missing: task vectors, a task in them, a searched subset', async () => {
    const bare = join(root, 'bare');
    await expect(searchCommand({ ...base, run: bare, ...searchSmall }, deps)).rejects.toThrow(/not a vtv run \(no config.json\)/);
    // A run whose collect never happened.
    await expect(collectCommand({ ...base, run: bare, ...small, tasks: ['segmentation'], episodesPerFold: 0 }, deps)).rejects.toThrow(
      /--episodes-per-fold must be 1 to/,
    );
    await expect(searchCommand({ ...base, run: bare, ...searchSmall }, deps)).rejects.toThrow(
      /task-vector file .*means\.safetensors does not exist: run `vtv collect`/,
    );
    await expect(searchCommand({ ...base, ...searchSmall, tasks: ['inpaint'] }, deps)).rejects.toThrow(
      /has no task vector for 'inpaint' \(it has: segmentation, colorization\)/,
    );
    await expect(evalCommand({ ...base, tasks: ['segmentation', 'lowlight_enhance'], episodes: 1, force: true }, deps)).rejects.toThrow(
      /no task vector for 'lowlight_enhance'/,
    );
  });

  it('rejects weights that do not fit the model, before writing anything', async () => {
    const other = join(root, 'mismatch');
    await expect(collectCommand({ ...base, run: other, model: 'mae-vqgan-vit-large', ...small }, deps)).rejects.toThrow(
      /weights do not match model 'mae-vqgan-vit-large': .*cls_token of shape \[1,1,64\], the model needs \[1,1,1024\]/,
    );
    expect(existsSync(join(other, 'config.json'))).toBe(false);
    await expect(collectCommand({ ...base, run: other, weights: [join(root, 'nope.safetensors')], ...small }, deps)).rejects.toThrow(
      /weights file .*nope\.safetensors does not exist/,
    );
    await expect(collectCommand({ ...base, model: 'mae-vqgan-vit-large', ...small }, deps)).rejects.toThrow(/was made with --model "tiny"/);
  });

  it('takes --precision into the run and the engine, and refuses an unknown one before writing anything', async () => {
    const seen: string[] = [];
    const spy: Deps = { ...deps, openEngine: async (c, _w, backend, _t, _n, precision) => (seen.push(`${backend}/${precision}`), new FakeEngine(c)) };
    const bf = join(root, 'bf16');
    await collectCommand({ ...base, run: bf, backend: 'cuda', precision: 'bf16', ...small, tasks: ['segmentation'] }, spy);
    expect(JSON.parse(readFileSync(runPaths(bf).config, 'utf8')).precision).toBe('bf16');
    await searchCommand({ run: bf, ...searchSmall, steps: 2 }, spy); // later commands default to the run's
    expect(seen).toEqual(['cuda/bf16', 'cuda/bf16']);
    const bad = join(root, 'fp16');
    await expect(collectCommand({ ...base, run: bad, precision: 'fp16' as 'bf16', ...small }, spy)).rejects.toThrow(
      /--precision must be fp32 or bf16, got 'fp16'/,
    );
    expect(existsSync(join(bad, 'config.json'))).toBe(false);
  });

  it('reports a dataset with missing files clearly', async () => {
    const voc = join(root, 'novoc');
    await expect(collectCommand({ ...base, run: join(root, 'voc'), dataset: 'pascal5i', dataDir: voc, ...small }, deps)).rejects.toThrow(/novoc/);
  });

  it('runs the demo flow and the CLI parses every command', async () => {
    const demoRun = join(root, 'demo');
    const md = await demoCommand({ run: demoRun, scale: 0.25, random: true }, deps);
    expect(readFileSync(md, 'utf8')).toMatch(/task vector/);
    await expect(demoCommand({ run: demoRun, random: true }, deps)).rejects.toThrow(/already holds a run: pass --force/);
    const names = program()
      .commands.map((c) => c.name())
      .filter((n) => n !== 'help');
    expect(names).toEqual(expect.arrayContaining(['demo', 'collect', 'search', 'eval', 'convert', 'info', 'bench']));
  });
});
