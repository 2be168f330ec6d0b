// Patched zero-shot inference through the real engine (tiny model): a batch in which every sample has
// its own variable subset gives the same losses as running the samples one by one, an empty subset is
// the unpatched forward, and granularities 0 and 2 with every variable on set the same bits.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preset } from '../src/config.js';
import { Rng } from '../src/data/rng.js';
import { CANVAS_FLOATS, Engine, type TaskMeans } from '../src/engine.js';
import { sampleChoices } from '../src/method/policy.js';
import { VariableSpace } from '../src/method/variables.js';
import { writeRandomWeights } from '../src/model/random-weights.js';

const config = preset('tiny');
const dir = mkdtempSync(join(tmpdir(), 'vtv-patch-'));
let engine: Engine;
let means: TaskMeans;
const rng = Rng.fromSeed(99);
const canvases = Float32Array.from({ length: 3 * CANVAS_FLOATS }, () => rng.float() * 4 - 2);

beforeAll(async () => {
  writeRandomWeights(join(dir, 'w.safetensors'), config, 7);
  engine = await Engine.open({ config, weights: join(dir, 'w.safetensors'), backend: 'cpu', threads: 2 });
  const cap = await engine.forward({ mode: 'one-shot', canvases, capture: true });
  means = { enc: cap.captureEnc!.map((x) => x / 3), dec: cap.captureDec!.map((x) => x / 3) };
});
afterAll(() => {
  engine?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('patched zero-shot batches (tiny model)', () => {
  it('gives every sample its own subset', async () => {
    const space = new VariableSpace(config, 1, 'zero-shot');
    const B = 6;
    const choices = sampleChoices(new Float64Array(space.count).fill(0.3), B, rng);
    const masks = space.masks(choices, B);
    const canvasIndex = Int32Array.from({ length: B }, (_, i) => i % 3);
    const batch = await engine.forward({ mode: 'zero-shot', canvases, canvasIndex, loss: 'mse', patch: { means, masks } });
    expect(new Set(batch.losses).size).toBeGreaterThan(1);
    for (let b = 0; b < B; b++) {
      const one = await engine.forward({
        mode: 'zero-shot',
        canvases,
        canvasIndex: Int32Array.of(b % 3),
        loss: 'mse',
        patch: { means, masks: masks.subarray(b * space.maskBytes, (b + 1) * space.maskBytes) },
      });
      expect(one.losses![0]).toBe(batch.losses![b]);
    }
  });

  it('computes repeated (canvas, subset) samples once, with equal results', async () => {
    const space = new VariableSpace(config, 1, 'zero-shot');
    const one = space.masks(sampleChoices(new Float64Array(space.count).fill(0.3), 1, rng), 1);
    const masks = new Uint8Array(4 * one.length);
    for (let i = 0; i < 4; i++) masks.set(one, i * one.length);
    const r = await engine.forward({ mode: 'zero-shot', canvases, canvasIndex: Int32Array.of(0, 1, 0, 1), loss: 'mse', patch: { means, masks } });
    expect(r.uniqueForwards).toBe(2);
    expect(r.losses![2]).toBe(r.losses![0]);
    expect(r.losses![3]).toBe(r.losses![1]);
  });

  it('an empty subset is the unpatched forward', async () => {
    const space = new VariableSpace(config, 1, 'zero-shot');
    const plain = await engine.forward({ mode: 'zero-shot', canvases, loss: 'mse', outputs: { tokens: true } });
    const patched = await engine.forward({
      mode: 'zero-shot',
      canvases,
      loss: 'mse',
      outputs: { tokens: true },
      patch: { means, masks: space.masks(new Uint8Array(3 * space.count), 3) },
    });
    expect(patched.tokens).toEqual(plain.tokens);
    expect(patched.losses).toEqual(plain.losses);
  });

  it('granularities 0 and 2 with every variable on patch the same tokens', async () => {
    const g0 = new VariableSpace(config, 0, 'zero-shot');
    const g2 = new VariableSpace(config, 2, 'zero-shot');
    const m0 = g0.masks(new Uint8Array(g0.count).fill(1), 1);
    const m2 = g2.masks(new Uint8Array(g2.count).fill(1), 1);
    expect(m2).toEqual(m0);
    const r = await engine.forward({
      mode: 'zero-shot',
      canvases: canvases.subarray(0, CANVAS_FLOATS),
      outputs: { tokens: true },
      patch: { means, masks: m0 },
    });
    const plain = await engine.forward({ mode: 'zero-shot', canvases: canvases.subarray(0, CANVAS_FLOATS), outputs: { tokens: true } });
    expect(r.tokens).not.toEqual(plain.tokens);
  });
});
