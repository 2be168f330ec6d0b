// The planted search problem of search-planted-engine.test.ts, shared with search_objectives tests and
// benchmarks/search_objectives.ts: on the tiny model with random weights, targets are the model's own
// outputs patched by a hidden, identifiable set of decoder (layer, head) variables, so the search's
// answer is known. Everything is seeded: the same engine weights give the same problem.
import type { ModelConfig } from '../src/config.js';
import { Rng } from '../src/data/rng.js';
import { CANVAS_FLOATS, type Engine, quadrantTokens, type TaskMeans } from '../src/engine.js';
import { REFERENCE_SEARCH, type SearchOptions } from '../src/method/reinforce.js';
import { VariableSpace } from '../src/method/variables.js';
import { targetsFromImages } from './method-fake-engine.js';

export interface PlantedProblem {
  space: VariableSpace;
  means: TaskMeans;
  /** Two training canvases [2][3][224][224]. */
  train: Float32Array;
  count: number;
  /** The hidden subset (0/1 per variable). */
  hidden: Uint8Array;
  /** Pixel targets: the bottom-right cells of the planted forward's images. */
  targets: Uint8Array;
  /** The planted forward's own output-quadrant tokens [2][49] (what a perfect VQGAN encoder would give back). */
  plantedTokens: Int32Array;
}

/** The budget under which the pixel objective recovers the hidden set (weights seeds 3, 4 and 9). */
export const PLANTED_BUDGET: SearchOptions = {
  ...REFERENCE_SEARCH,
  steps: 40,
  samplesPerStep: 64,
  trainImages: 2,
  lr: 0.2,
  restrict: 'decoder-only',
  validateEvery: 0,
  select: 'last',
  finalSubset: 'threshold',
  seed: 4,
};

export async function plantedProblem(engine: Engine, config: ModelConfig): Promise<PlantedProblem> {
  const rng = Rng.fromSeed(21);
  const canvas = (n: number) => Float32Array.from({ length: n * CANVAS_FLOATS }, () => rng.float() * 4 - 2);
  // Task means: captured one-shot head outputs of other canvases, as collect does.
  const src = canvas(4);
  const cap = await engine.forward({ mode: 'one-shot', canvases: src, capture: true });
  const means: TaskMeans = { enc: cap.captureEnc!.map((x) => x / 4), dec: cap.captureDec!.map((x) => x / 4) };
  const space = new VariableSpace(config, 0, 'zero-shot'); // 24 (layer, head) variables, 8 in the decoder
  const train = canvas(2);

  // Hidden subset: decoder heads that visibly change the output and are identifiable (every
  // one-variable change of the set changes the output too; otherwise another subset also reaches
  // loss 0 and "recovery" is undefined). The search space is the 8 decoder heads (encoder heads
  // disabled) to fit a CI budget: 40 steps x 64 samples, most of them repeats (computed once) late in
  // the search.
  const base = await engine.forward({ mode: 'zero-shot', canvases: train, outputs: { images: true } });
  const baseTargets = targetsFromImages(base.images!, 2);
  const decoderVars = Array.from({ length: space.count - space.encoderCount }, (_, i) => space.encoderCount + i);
  const lossesOf = async (subsets: Uint8Array[], targets: Uint8Array) => {
    const n = subsets.length;
    const choices = new Uint8Array(2 * n * space.count);
    subsets.forEach((c, i) => (choices.set(c, 2 * i * space.count), choices.set(c, (2 * i + 1) * space.count)));
    const r = await engine.forward({
      mode: 'zero-shot',
      canvases: train,
      canvasIndex: Int32Array.from({ length: 2 * n }, (_, i) => i % 2),
      loss: 'mse',
      targets,
      patch: { means, masks: space.masks(choices, 2 * n) },
    });
    return Array.from({ length: n }, (_, i) => r.losses![2 * i]! + r.losses![2 * i + 1]!);
  };
  const oneHot = (vs: number[]) => {
    const c = new Uint8Array(space.count);
    for (const v of vs) c[v] = 1;
    return c;
  };
  const single = await lossesOf(
    decoderVars.map((v) => oneHot([v])),
    baseTargets,
  );
  const visible = decoderVars.filter((_, i) => single[i]! > 0);
  // Candidates: pairs of the most visible heads first, then single heads as a fallback.
  const order = [...visible].sort((x, y) => single[decoderVars.indexOf(y)]! - single[decoderVars.indexOf(x)]!);
  const pairs = order.flatMap((x, i) => order.slice(i + 1).map((y) => [x, y]));
  for (const set of [...pairs.slice(0, 10), ...order.map((v) => [v])]) {
    const pair = oneHot(set);
    const img = await engine.forward({
      mode: 'zero-shot',
      canvases: train,
      outputs: { images: true, tokens: true },
      patch: { means, masks: space.masks(new Uint8Array([...pair, ...pair]), 2) },
    });
    const flips = decoderVars.map((v) => {
      const c = Uint8Array.from(pair);
      c[v] = 1 - c[v]!;
      return c;
    });
    const flipLosses = await lossesOf(flips, targetsFromImages(img.images!, 2));
    // Identifiable: every neighbour of the planted set is worse, so it is the unique optimum nearby.
    // (No further condition: with these random weights a hidden head alone can be worse than other
    // heads alone, so the search must get past a misleading start.)
    if (flipLosses.every((x) => x > 0)) {
      return { space, means, train, count: 2, hidden: pair, targets: targetsFromImages(img.images!, 2), plantedTokens: quadrantTokens(img.tokens!) };
    }
  }
  throw new Error('no identifiable set of decoder heads in this random model');
}

/** Precision and recall of a chosen subset against the hidden one. */
export function recovery(choice: Uint8Array, hidden: Uint8Array): { precision: number; recall: number } {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let v = 0; v < hidden.length; v++) {
    if (choice[v] && hidden[v]) tp++;
    else if (choice[v]) fp++;
    else if (hidden[v]) fn++;
  }
  return { precision: tp / Math.max(1, tp + fp), recall: tp / Math.max(1, tp + fn) };
}

/** |A ∩ B| / |A ∪ B| of two subsets (1 when both are empty). */
export function jaccard(a: Uint8Array, b: Uint8Array): number {
  let inter = 0;
  let union = 0;
  for (let v = 0; v < a.length; v++) {
    if (a[v] && b[v]) inter++;
    if (a[v] || b[v]) union++;
  }
  return union ? inter / union : 1;
}
