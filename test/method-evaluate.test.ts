// The semantics of `vtv eval` (src/method/evaluate.ts), checked on what it asks an engine for: an
// engine that records every request (and answers as the fake engine does) stands in for the model.
// Per task, fold and batch of episodes: one-shot runs the full canvas (example included), unpatched;
// zero-shot runs the same canvas in zero-shot mode (the engine drops the example rows), unpatched; the
// task-vector condition patches exactly the searched subset's bits with the task's means; the random
// condition patches a subset of the same size, of whole variables, on the same episodes.
import { describe, expect, it } from 'vitest';
import { meansDecFloats, meansEncFloats, patchBits, preset } from '../src/config.js';
import { openBundled } from '../src/data/bundled.js';
import { buildTaskCanvas } from '../src/data/episode-canvas.js';
import { CANVAS_FLOATS, type ForwardRequest, type ForwardResult, type TaskMeans } from '../src/engine.js';
import { CONDITIONS, type EvalOptions, type EvalTask, evaluateTaskVectors } from '../src/method/evaluate.js';
import { VariableSpace } from '../src/method/variables.js';
import { FakeEngine } from './method-fake-engine.js';

const tiny = preset('tiny');

interface Call {
  req: ForwardRequest;
  canvases: Float32Array;
  masks?: Uint8Array;
  result: ForwardResult;
}

/** The fake engine, recording copies of what it was asked and what it answered. */
class RecordingEngine extends FakeEngine {
  log: Call[] = [];
  override async forward(req: ForwardRequest): Promise<ForwardResult> {
    const result = await super.forward(req);
    this.log.push({ req, canvases: req.canvases.slice(), masks: req.patch?.masks.slice(), result });
    return result;
  }
}

function randomMeans(seed: number): TaskMeans {
  let x = seed;
  const next = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 0x1_0000_0000) * 2 - 1;
  return { enc: Float32Array.from({ length: meansEncFloats(tiny) }, next), dec: Float32Array.from({ length: meansDecFloats(tiny) }, next) };
}

/** Bitwise equality of two float arrays (toEqual on 150k-element arrays is slow). */
const sameFloats = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

const setBits = (mask: Uint8Array, bits: number) => {
  const out: number[] = [];
  for (let i = 0; i < bits; i++) if (mask[i >> 3]! & (1 << (i & 7))) out.push(i);
  return out;
};

/** The variables whose bits a mask sets, requiring each to be set wholly or not at all. */
function variablesOf(space: VariableSpace, mask: Uint8Array): number[] {
  const on: number[] = [];
  for (let v = 0; v < space.count; v++) {
    const bits = [...space.bitsOf(v)];
    const n = bits.filter((b) => mask[b >> 3]! & (1 << (b & 7))).length;
    if (n !== 0 && n !== bits.length) throw new Error(`variable ${v} is partly set (${n} of ${bits.length} bits)`);
    if (n) on.push(v);
  }
  return on;
}

const ds = openBundled();
const space = new VariableSpace(tiny, 1, 'zero-shot');
const opts: EvalOptions = { folds: [0, 1], episodes: 3, seed: 11, batch: 2, examples: 0 };

async function run(tasks: EvalTask[], o: EvalOptions = opts) {
  const engine = new RecordingEngine(tiny);
  const results = await evaluateTaskVectors(engine, ds, tasks, o);
  return { engine, results };
}

describe('evaluateTaskVectors: what each condition asks the engine', () => {
  const choice = new Uint8Array(space.count);
  for (const v of [0, 3, 17, space.encoderCount + 1, space.count - 1]) choice[v] = 1;
  const subset = [...choice.keys()].filter((v) => choice[v]);
  const tasks: EvalTask[] = [
    { name: 'segmentation', means: randomMeans(1), space, choice },
    { name: 'colorization', means: randomMeans(2), space, choice },
  ];

  it('runs the four conditions on the same episodes, with the modes, patches and sizes of the method', async () => {
    const { engine, results } = await run(tasks);
    const chunks = Math.ceil(opts.episodes / opts.batch);
    expect(engine.log.length).toBe(tasks.length * opts.folds.length * chunks * CONDITIONS.length);
    let call = 0;
    for (const t of tasks) {
      const randomByFold: number[][] = [];
      for (const fold of opts.folds) {
        const refs = ds.episodeRefs({ split: 'val', fold }, opts.seed, opts.episodes);
        let randomSubset: number[] | undefined;
        for (let off = 0; off < refs.length; off += opts.batch) {
          const chunk = refs.slice(off, off + opts.batch);
          const want = chunk.map((r) => buildTaskCanvas(t.name as 'segmentation', ds.loadEpisode(r)));
          const [oneShot, zeroShot, taskVector, random] = engine.log.slice(call, call + 4);
          call += 4;
          for (const c of [oneShot!, zeroShot!, taskVector!, random!]) {
            // The same episodes, in order, as the task's canvases.
            expect(c.canvases.length).toBe(chunk.length * CANVAS_FLOATS);
            want.forEach((w, i) => expect(sameFloats(c.canvases.subarray(i * CANVAS_FLOATS, (i + 1) * CANVAS_FLOATS), w.canvas)).toBe(true));
            expect(c.req.loss).toBe(t.name === 'segmentation' ? 'iou' : 'mse');
          }
          // One-shot: the whole canvas, whose example cells hold the support's example (not blank).
          expect(oneShot!.req.mode).toBe('one-shot');
          expect(oneShot!.req.patch).toBeUndefined();
          for (const w of want) expect(w.cells.exampleInput.some((v) => v !== 1)).toBe(true);
          // Zero-shot: no example (zero-shot mode keeps only the query rows) and no patch.
          expect(zeroShot!.req.mode).toBe('zero-shot');
          expect(zeroShot!.req.patch).toBeUndefined();
          // Task vector: exactly the subset's bits, in every sample, with the task's means.
          expect(taskVector!.req.mode).toBe('zero-shot');
          expect(taskVector!.req.patch!.means).toBe(t.means);
          const bits = patchBits(tiny, 'zero-shot');
          const wantBits = subset.flatMap((v) => [...space.bitsOf(v)]).sort((a, b) => a - b);
          for (let i = 0; i < chunk.length; i++) {
            const m = taskVector!.masks!.subarray(i * space.maskBytes, (i + 1) * space.maskBytes);
            expect(setBits(m, space.maskBytes * 8)).toEqual(wantBits);
            expect(variablesOf(space, m)).toEqual(subset);
          }
          expect(wantBits.every((b) => b < bits)).toBe(true);
          // Random: whole variables, as many as the subset, the same for every episode of the fold.
          expect(random!.req.mode).toBe('zero-shot');
          expect(random!.req.patch!.means).toBe(t.means);
          for (let i = 0; i < chunk.length; i++) {
            const vars = variablesOf(space, random!.masks!.subarray(i * space.maskBytes, (i + 1) * space.maskBytes));
            expect(vars.length).toBe(subset.length);
            randomSubset ??= vars;
            expect(vars).toEqual(randomSubset);
          }
        }
        expect(randomSubset).not.toEqual(subset);
        randomByFold.push(randomSubset!);
      }
      // Drawn afresh per fold.
      expect(randomByFold[1]).not.toEqual(randomByFold[0]);
    }
    // The rows are the means of what the engine answered, per condition.
    call = 0;
    for (const t of tasks) {
      for (const fold of opts.folds) {
        const scores: number[][] = [[], [], [], []];
        for (let k = 0; k < chunks; k++) for (let c = 0; c < 4; c++) scores[c]!.push(...engine.log[call++]!.result.metrics!);
        const row = results.rows.find((r) => r.task === t.name && r.fold === fold)!;
        expect(row.episodes).toBe(opts.episodes);
        expect(row.subsetSize).toBe(subset.length);
        const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
        CONDITIONS.forEach((cond, c) => expect(row[cond]).toBeCloseTo(mean(scores[c]!), 12));
      }
    }
  });

  it('draws the subset per fold from the logits when asked, and the random subset has that size', async () => {
    const logits = new Float64Array(space.count).fill(-1.5); // about 18% of variables per draw
    const { engine, results } = await run([{ name: 'segmentation', means: randomMeans(3), space, choice, logits }], { ...opts, drawPerFold: true });
    const chunks = Math.ceil(opts.episodes / opts.batch);
    const drawn: number[][] = [];
    for (let f = 0; f < opts.folds.length; f++) {
      const base = f * chunks * 4;
      const tv = variablesOf(space, engine.log[base + 2]!.masks!.subarray(0, space.maskBytes));
      const rnd = variablesOf(space, engine.log[base + 3]!.masks!.subarray(0, space.maskBytes));
      expect(tv.length).toBeGreaterThan(0);
      expect(rnd.length).toBe(tv.length);
      expect(results.rows[f]!.subsetSize).toBe(tv.length);
      drawn.push(tv);
    }
    expect(drawn[1]).not.toEqual(drawn[0]);
    await expect(run([{ name: 'segmentation', means: randomMeans(3), space, choice }], { ...opts, drawPerFold: true })).rejects.toThrow(
      /needs the search logits of 'segmentation'/,
    );
  });
});
