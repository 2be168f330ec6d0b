// The small model shipped in models/ (trained by train/, docs/model-card-mini.md):
//  - the file is the documented one (its record: checksum, size, every tensor's shape), with the mini
//    preset's shapes;
//  - on fixed held-out episodes (the bundled data's validation folds, never seen in training) it shows
//    the method working, as the paper's Table 1 does at full scale: one-shot clearly better than
//    zero-shot, the shipped task vector (models/<task>.vtv.safetensors, searched on this model) patched
//    into the zero-shot forward recovering most of that gap, and a random subset of the same size far
//    less. Segmentation (mIoU) and low-light enhancement (MSE), each against the targets the model card
//    states.
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

  // [task, smallest gap, least share of it the task vector closes, most share a random subset closes]
  const targets: [string, number, number, number][] = [
    ['segmentation', 0.15, 0.5, 0.2],
    ['lowlight_enhance', 0.8, 0.8, 0.5],
  ];
  for (const [task, minGap, minTv, maxRandom] of targets)
    it(`shows the method on held-out ${task} episodes: one-shot >> zero-shot, the task vector closes the gap, a random subset far less`, async () => {
      const tv = TaskVector.load(shippedTaskVectorPath(task));
      tv.checkWeights(weightsChecksum([model]), [model]);
      const space = new VariableSpace(engine.config, tv.data.granularity, tv.data.mode);
      const choice = new Uint8Array(space.count);
      for (const v of tv.data.chosen) choice[v] = 1;
      const res = await evaluateTaskVectors(engine, openBundled(), [{ name: task, means: tv.data.means, space, choice }], {
        folds: [0, 1, 2, 3],
        episodes: 12,
        seed: 0,
        batch: 16,
        examples: 0,
      });
      const s = res.summary[0]!;
      const sign = s.metric === 'iou' ? 1 : -1; // mIoU: higher is better; MSE: lower
      const gap = sign * (s.oneShot - s.zeroShot);
      const closed = (x: number) => (sign * (x - s.zeroShot)) / gap;
      console.log(
        `shipped model, ${task} ${s.metric}: one-shot ${s.oneShot.toFixed(4)}, zero-shot ${s.zeroShot.toFixed(4)}, ` +
          `task vector ${s.taskVector.toFixed(4)} (closes ${(100 * closed(s.taskVector)).toFixed(0)}%), random ${s.random.toFixed(4)} (closes ${(100 * closed(s.random)).toFixed(0)}%)`,
      );
      expect(gap).toBeGreaterThanOrEqual(minGap);
      expect(closed(s.taskVector)).toBeGreaterThanOrEqual(minTv);
      expect(closed(s.random)).toBeLessThan(maxRandom);
    });
});
