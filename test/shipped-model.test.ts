// The small model shipped in models/ (trained by train/, docs/model-card-mini.md):
//  - the file is the documented one (its record: checksum, size, every tensor's shape), with the mini
//    preset's shapes;
//  - on fixed held-out episodes (the bundled data's validation folds, never seen in training) it shows
//    the method working for low-light enhancement: one-shot clearly better than zero-shot, and the
//    shipped task vector (models/lowlight_enhance.vtv.safetensors, searched on this model) recovering
//    most of that gap, far more than a random subset of the same size.
// Segmentation does not show the method on this model yet (docs/model-card-mini.md says why), so it is
// not asserted here.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModelRecord, modelRecord } from '../scripts/model-card.js';
import { maeKeys, vqDecodeKeys, vqEncodeKeys } from '../src/checkpoint/keys.js';
import { preset } from '../src/config.js';
import { openBundled } from '../src/data/bundled.js';
import { Engine } from '../src/engine.js';
import { evaluateTaskVectors } from '../src/method/evaluate.js';
import { TaskVector, weightsChecksum } from '../src/method/task-vector.js';
import { VariableSpace } from '../src/method/variables.js';
import { SHIPPED_MODEL, shippedModelPath, shippedTaskVectorPath } from '../src/model/shipped.js';

const model = shippedModelPath();
let engine: Engine;

beforeAll(async () => {
  engine = await Engine.open({ config: preset(SHIPPED_MODEL), weights: model, backend: 'cpu', threads: 2 });
});
afterAll(() => engine?.close());

describe('the shipped small model', () => {
  it('is the file its record describes, with the mini preset shapes', () => {
    const want = JSON.parse(readFileSync(model.replace(/\.safetensors$/, '.json'), 'utf8')) as ModelRecord;
    const got = modelRecord(model);
    expect(got.bytes).toBe(want.bytes);
    expect(got.sha256).toBe(want.sha256);
    expect(got.tensors).toEqual(want.tensors);
    const c = preset(SHIPPED_MODEL);
    for (const keys of [maeKeys(c), vqDecodeKeys(c), vqEncodeKeys(c)])
      for (const [key, shape] of keys) {
        // The trainer keeps the VQGAN's keys under 'vae.', as the released checkpoint does.
        const t = got.tensors[key] ?? got.tensors[`vae.${key}`];
        expect(t?.shape, key).toEqual([...shape]);
      }
    expect(JSON.parse(got.metadata.vtv_config as string).name).toBe(SHIPPED_MODEL);
  });

  it('shows the method on held-out low-light episodes: one-shot >> zero-shot, the task vector closes the gap, a random subset far less', async () => {
    const tv = TaskVector.load(shippedTaskVectorPath('lowlight_enhance'));
    tv.checkWeights(weightsChecksum([model]), [model]);
    const space = new VariableSpace(engine.config, tv.data.granularity, tv.data.mode);
    const choice = new Uint8Array(space.count);
    for (const v of tv.data.chosen) choice[v] = 1;
    const res = await evaluateTaskVectors(engine, openBundled(), [{ name: 'lowlight_enhance', means: tv.data.means, space, choice }], {
      folds: [0, 1, 2, 3],
      episodes: 12,
      seed: 0,
      batch: 16,
      examples: 0,
    });
    const s = res.summary[0]!;
    const gap = s.zeroShot - s.oneShot; // MSE: lower is better
    const closed = (x: number) => (s.zeroShot - x) / gap;
    console.log(
      `shipped model, low-light MSE: one-shot ${s.oneShot.toFixed(4)}, zero-shot ${s.zeroShot.toFixed(4)}, ` +
        `task vector ${s.taskVector.toFixed(4)} (closes ${(100 * closed(s.taskVector)).toFixed(0)}%), random ${s.random.toFixed(4)} (closes ${(100 * closed(s.random)).toFixed(0)}%)`,
    );
    expect(gap).toBeGreaterThanOrEqual(0.8);
    expect(closed(s.taskVector)).toBeGreaterThanOrEqual(0.8);
    expect(closed(s.random)).toBeLessThanOrEqual(0.5);
  });
});
