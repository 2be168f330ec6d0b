// `vtv search --objective token` (docs/method.md#token-objective) end to end with the real engine on the tiny model and the
// bundled data: training steps never decode, validation stays in pixel space, the target tokens are
// computed once and cached, a resume refuses another objective, and weights without the VQGAN encoder
// are refused with a message that says what to do. (The means come from a fake-engine collect: the
// search only needs their shapes, and it keeps this file fast.)
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSafetensors } from '../src/checkpoint/safetensors.js';
import { collectCommand } from '../src/cli/collect.js';
import { type Deps, defaultDeps } from '../src/cli/common.js';
import { searchCommand, searchProgram } from '../src/cli/search.js';
import { meansDecFloats, meansEncFloats, preset } from '../src/config.js';
import { gtQuadrant } from '../src/data/canvas.js';
import { Rng } from '../src/data/rng.js';
import { CANVAS_FLOATS, QUADRANT_TOKENS, TARGET_BYTES } from '../src/engine.js';
import { REFERENCE_SEARCH, runSearch } from '../src/method/reinforce.js';
import { groundTruthCanvases } from '../src/method/target-tokens.js';
import { VariableSpace } from '../src/method/variables.js';
import { randomWeights, writeRandomWeights } from '../src/model/random-weights.js';
import { runPaths } from '../src/run/layout.js';
import { FakeEngine } from './method-fake-engine.js';

const tiny = preset('tiny');
const root = mkdtempSync(join(tmpdir(), 'vtv-token-'));
const logs: string[] = [];
const fake: Deps = { openEngine: async (c) => new FakeEngine(c), log: (m) => logs.push(m), progress: false };
const real: Deps = { ...defaultDeps, log: (m) => logs.push(m), progress: false };
const withEncoder = join(root, 'tiny.safetensors');
const noEncoder = join(root, 'tiny-no-encoder.safetensors');
const run = join(root, 'run');
const base = { run, weights: [withEncoder], model: 'tiny', dataset: 'bundled' as const, threads: 2 };
const small = { tasks: ['segmentation'], steps: 4, samplesPerStep: 8, valImages: 3, validateEvery: 2, checkpointEvery: 2 };
const p = runPaths(run);
const randomMeans = (rng: Rng) => ({
  enc: Float32Array.from({ length: meansEncFloats(tiny) }, () => rng.float() * 4 - 2),
  dec: Float32Array.from({ length: meansDecFloats(tiny) }, () => rng.float() * 4 - 2),
});
const randomCanvases = (rng: Rng, n: number) => Float32Array.from({ length: n * CANVAS_FLOATS }, () => rng.float() * 2 - 1);
const readLog = () =>
  readFileSync(p.searchLog('segmentation'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

beforeAll(async () => {
  writeRandomWeights(withEncoder, tiny, 1);
  const w = randomWeights(tiny, 1);
  for (const k of [...w.keys()]) if (k.startsWith('vae.encoder.') || k.startsWith('vae.quant_conv.')) w.delete(k);
  writeSafetensors(noEncoder, w, { vtv_config: JSON.stringify(tiny) });
  await collectCommand({ ...base, folds: [1], episodesPerFold: 3, keep: 2, batch: 3, tasks: ['segmentation'] }, fake);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('vtv search --objective token (real engine, tiny model)', () => {
  it('trains without decoding, validates in pixel space, caches the target tokens', async () => {
    await searchCommand({ ...base, ...small, objective: 'token' }, real);
    const log = readLog();
    expect(log).toHaveLength(4);
    for (const r of log) {
      expect(r.uniqueDecodes).toBe(0); // the training forwards ran the MAE only
      expect(r.uniqueForwards).toBeGreaterThan(0);
      expect(r.loss).toBeGreaterThan(0); // mean token cross-entropy
      expect(r.perTask.segmentation).toBeGreaterThanOrEqual(0); // token accuracy
      expect(r.perTask.segmentation).toBeLessThanOrEqual(1);
    }
    // Validation: the pixel-space mIoU of a drawn subset, as with the pixel objective.
    for (const v of [log[0].validation, log[2].validation, log[3].validation]) {
      expect(v.metric).toBeGreaterThanOrEqual(0);
      expect(v.metric).toBeLessThanOrEqual(1);
    }
    const cache = JSON.parse(readFileSync(p.targetTokens('segmentation'), 'utf8'));
    expect(cache.format).toBe('vtv-target-tokens');
    expect(cache.sets[0].count).toBe(10);
    expect(cache.sets[0].tokens).toHaveLength(10 * QUADRANT_TOKENS);
    expect(cache.sets[0].tokens.every((t: number) => Number.isInteger(t) && t >= 0 && t < tiny.vq.nEmbed)).toBe(true);
    expect(JSON.parse(readFileSync(p.searchState('segmentation'), 'utf8')).fingerprint.objective).toBe('token-ce');
    expect(JSON.parse(readFileSync(p.subset('segmentation'), 'utf8')).chosen).toBeDefined();
    expect(logs.join('\n')).toMatch(/target tokens of 10 training canvas\(es\) computed in/);
  });

  it('resumes with the same objective (reusing the cached tokens) and refuses another one', async () => {
    await searchCommand({ ...base, ...small, objective: 'token', force: true, stopAfter: 2 }, real);
    const state = readFileSync(p.searchState('segmentation'), 'utf8');
    await expect(searchCommand({ ...base, ...small, resume: true }, real)).rejects.toThrow(
      /different search configuration[\s\S]*objective: "token-ce" vs "pixel"/,
    );
    await expect(searchCommand({ ...base, ...small, objective: 'token', tokenLoss: 'accuracy', resume: true }, real)).rejects.toThrow(
      /objective: "token-ce" vs "token-accuracy"/,
    );
    expect(readFileSync(p.searchState('segmentation'), 'utf8')).toBe(state);
    logs.length = 0;
    await searchCommand({ ...base, ...small, objective: 'token', resume: true }, real);
    expect(logs.join('\n')).toMatch(/target tokens of 10 training canvas\(es\) read from/);
    expect(JSON.parse(readFileSync(p.searchState('segmentation'), 'utf8')).step).toBe(4);
    expect(readLog().every((r) => r.uniqueDecodes === 0)).toBe(true);
  });

  it('recomputes cached tokens whose key does not match', async () => {
    const cache = JSON.parse(readFileSync(p.targetTokens('segmentation'), 'utf8'));
    const good = cache.sets[0].tokens;
    writeFileSync(p.targetTokens('segmentation'), JSON.stringify({ ...cache, key: 'stale', sets: [{ ...cache.sets[0], tokens: good.map(() => 0) }] }));
    logs.length = 0;
    await searchCommand({ ...base, ...small, objective: 'token', force: true }, real);
    expect(logs.join('\n')).toMatch(/computed in/);
    expect(JSON.parse(readFileSync(p.targetTokens('segmentation'), 'utf8')).sets[0].tokens).toEqual(good);
  });

  it('refuses weights without the VQGAN encoder, naming what is missing and how to get it', async () => {
    const other = { ...base, run: join(root, 'no-encoder'), weights: [noEncoder] };
    await collectCommand({ ...other, folds: [1], episodesPerFold: 2, keep: 1, batch: 2, tasks: ['segmentation'] }, fake);
    await expect(searchCommand({ ...other, ...small, objective: 'token' }, real)).rejects.toThrow(
      /--objective token\) needs the VQGAN encoder weights \(vae\.encoder\.\*, vae\.quant_conv\.\*\).*vae\.encoder\.conv_in\.weight[\s\S]*--vqgan <VQGAN last\.ckpt>/,
    );
    await expect(searchCommand({ ...other, ...small, objective: 'tokens' as never }, real)).rejects.toThrow(/--objective must be pixel or token, got 'tokens'/);
    await expect(searchCommand({ ...other, ...small, objective: 'token', tokenLoss: 'mse' as never }, real)).rejects.toThrow(
      /--token-loss must be ce or accuracy/,
    );
  });

  it('documents the flags and keeps pixel as the default', () => {
    const help = searchProgram().helpInformation();
    expect(help).toMatch(/--objective <space>[\s\S]*pixel \(the reference[\s\S]*\(choices: "pixel", "token", default: "pixel"\)/);
    expect(help).toMatch(/--token-loss <loss>[\s\S]*\(choices: "ce", "accuracy", default: "ce"\)/);
    expect(REFERENCE_SEARCH.objective).toBe('pixel');
  });
});

describe('token objective: search state and targets (no addon needed)', () => {
  it('a state written before the objective existed resumes as pixel and refuses token', async () => {
    const rng = Rng.fromSeed(3);
    const engine = new FakeEngine(tiny);
    const space = new VariableSpace(tiny, 1, 'zero-shot');
    const means = randomMeans(rng);
    const train = { canvases: randomCanvases(rng, 2), count: 2 };
    const inp = { engine, space, tasks: [{ name: 't', loss: 'mse' as const, means }], train: [train] };
    const dir = mkdtempSync(join(root, 'state-'));
    const statePath = join(dir, 's.json');
    const opt = { ...REFERENCE_SEARCH, steps: 2, samplesPerStep: 4, trainImages: 2, validateEvery: 0 };
    await runSearch(inp, opt, { statePath });
    const s = JSON.parse(readFileSync(statePath, 'utf8'));
    delete s.fingerprint.objective;
    writeFileSync(statePath, JSON.stringify(s));
    const tokens = { ...inp, train: [{ ...train, targetTokens: new Int32Array(2 * QUADRANT_TOKENS) }] };
    await expect(runSearch(tokens, { ...opt, steps: 3, objective: 'token' }, { statePath, resume: true })).rejects.toThrow(/objective: "pixel" vs "token-ce"/);
    const resumed = await runSearch(inp, { ...opt, steps: 3 }, { statePath, resume: true });
    expect(resumed.state.step).toBe(3);
    await expect(runSearch(inp, { ...opt, objective: 'token' })).rejects.toThrow(/token objective needs \[2\]\[49\] target tokens/);
  });

  it('puts override targets into the bottom-right cell of the ground-truth canvases', () => {
    const rng = Rng.fromSeed(8);
    const canvases = randomCanvases(rng, 2);
    const targets = Uint8Array.from({ length: 2 * TARGET_BYTES }, () => Math.floor(rng.float() * 256));
    const gt = groundTruthCanvases({ canvases, count: 2, targets });
    for (let b = 0; b < 2; b++)
      expect(gtQuadrant(gt.subarray(b * CANVAS_FLOATS, (b + 1) * CANVAS_FLOATS))).toEqual(targets.subarray(b * TARGET_BYTES, (b + 1) * TARGET_BYTES));
    // Outside that cell the canvas is unchanged; without targets the canvases are their own ground truth.
    expect(gt[0]).toBe(canvases[0]);
    expect(groundTruthCanvases({ canvases, count: 2 })).toBe(canvases);
  });
});
