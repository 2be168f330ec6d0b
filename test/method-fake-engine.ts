// A small stand-in for the native engine with the same forward() contract, for testing the method
// without the addon. Its "model": the output quadrant is an 8x8 grid of grey blocks whose values are a
// canvas-dependent base plus, for every patched (layer, head, position) bit, a fixed random effect
// scaled by the task mean at that place. So patching matters, different bits have distinguishable
// effects, and the means matter, which is all the search and collection code can observe.

import { decTokens, encTokens, type ModelConfig, ONE_SHOT_DEC_TOKENS, ONE_SHOT_ENC_TOKENS, patchBits, patchBytes } from '../src/config.js';
import { CANVAS_FLOATS, type ForwardRequest, type ForwardResult, TARGET_BYTES, type TaskMeans } from '../src/engine.js';

const BLOCKS = 64; // 8x8 blocks over the 111x111 quadrant
const CELL = 111;
const blockOf = (y: number, x: number) => Math.min(7, Math.floor((y * 8) / CELL)) * 8 + Math.min(7, Math.floor((x * 8) / CELL));

function hash(a: number, b: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x632be5ab, 0xc2b2ae35);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return ((h >>> 0) / 0x1_0000_0000) * 2 - 1; // [-1, 1)
}

export class FakeEngine {
  calls = 0;
  samples = 0;
  /** Task-mean tables bound (bindTaskMeans calls). */
  binds = 0;
  constructor(
    readonly config: ModelConfig,
    readonly effectScale = 6,
  ) {}

  /** Block values (0..255 floats) of one sample. */
  private blocks(canvas: Float32Array, mask: Uint8Array | undefined, req: ForwardRequest): Float64Array {
    const v = new Float64Array(BLOCKS);
    // Base: the mean of the canvas's query cell, spread by a fixed pattern.
    let q = 0;
    for (let i = 0; i < 50; i++) q += canvas[(113 + i) * 224 + i]!;
    q /= 50;
    for (let k = 0; k < BLOCKS; k++) v[k] = 128 + 40 * Math.tanh(q + hash(k, 7));
    if (mask && req.patch) {
      const c = this.config;
      const ne = encTokens(req.mode);
      const nd = decTokens(req.mode);
      const E = c.encDepth * c.encHeads * ne;
      const bits = patchBits(c, req.mode);
      for (let bit = 0; bit < bits; bit++) {
        if (!(mask[bit >> 3]! & (1 << (bit & 7)))) continue;
        // Which mean does this bit read? (layer, position) -> one-shot row, first channel of the head.
        let meanValue: number;
        let pos: number;
        if (bit < E) {
          const l = Math.floor(bit / (c.encHeads * ne));
          const h = Math.floor((bit % (c.encHeads * ne)) / ne);
          const p = bit % ne;
          pos = p;
          const row = req.mode === 'zero-shot' && p > 0 ? p + 98 : p;
          meanValue = req.patch.means.enc[(l * ONE_SHOT_ENC_TOKENS + row) * c.encDim + h * (c.encDim / c.encHeads)]!;
        } else {
          const b = bit - E;
          const l = Math.floor(b / (c.decHeads * nd));
          const h = Math.floor((b % (c.decHeads * nd)) / nd);
          const p = b % nd;
          pos = p;
          const row = req.mode === 'zero-shot' && p > 0 ? p + 98 : p;
          meanValue = req.patch.means.dec[(l * ONE_SHOT_DEC_TOKENS + row) * c.decDim + h * (c.decDim / c.decHeads)]!;
        }
        // CLS carries more than one patch token (as a single-token variable must be visible at all).
        const scale = this.effectScale * (pos === 0 ? 4 : 1) * (1 + 0.2 * Math.tanh(meanValue));
        for (let k = 0; k < BLOCKS; k++) v[k]! += scale * hash(bit, k);
      }
    }
    for (let k = 0; k < BLOCKS; k++) v[k] = Math.min(255, Math.max(0, Math.trunc(v[k]!)));
    return v;
  }

  /** As the engine: the tables are checked once (sizes, finite values) and used as they are. */
  async bindTaskMeans(means: TaskMeans): Promise<TaskMeans> {
    const c = this.config;
    if (means.enc.length !== c.encDepth * ONE_SHOT_ENC_TOKENS * c.encDim || means.dec.length !== c.decDepth * ONE_SHOT_DEC_TOKENS * c.decDim) {
      throw new Error('fake bindTaskMeans: wrong table sizes');
    }
    if (!means.enc.every(Number.isFinite) || !means.dec.every(Number.isFinite)) throw new Error('fake bindTaskMeans: a non-finite value');
    this.binds++;
    return means;
  }

  async forward(req: ForwardRequest): Promise<ForwardResult> {
    const c = this.config;
    const N = req.canvases.length / CANVAS_FLOATS;
    if (!Number.isInteger(N) || N === 0) throw new Error('fake forward: bad canvases');
    const B = req.canvasIndex ? req.canvasIndex.length : N;
    const mb = patchBytes(c, req.mode);
    if (req.patch && req.patch.masks.length !== B * mb) throw new Error(`fake forward: masks ${req.patch.masks.length} != ${B * mb}`);
    this.calls++;
    this.samples += B;
    const seen = new Map<string, number>();
    const losses = new Float32Array(B);
    const metrics = new Float32Array(B);
    const images = req.outputs?.images ? new Uint8Array(B * CANVAS_FLOATS) : undefined;
    for (let b = 0; b < B; b++) {
      const ci = req.canvasIndex ? req.canvasIndex[b]! : b;
      if (ci < 0 || ci >= N) throw new Error(`fake forward: canvasIndex ${ci} out of range`);
      const canvas = req.canvases.subarray(ci * CANVAS_FLOATS, (ci + 1) * CANVAS_FLOATS);
      const mask = req.patch?.masks.subarray(b * mb, (b + 1) * mb);
      seen.set(`${ci}:${mask ? Buffer.from(mask).toString('base64') : ''}`, 1);
      const v = this.blocks(canvas, mask, req);
      if (images) {
        const img = images.subarray(b * CANVAS_FLOATS, (b + 1) * CANVAS_FLOATS);
        for (let ch = 0; ch < 3; ch++)
          for (let y = 0; y < CELL; y++) for (let x = 0; x < CELL; x++) img[ch * 224 * 224 + (113 + y) * 224 + 113 + x] = v[blockOf(y, x)]!;
      }
      if (req.loss) {
        const target = (y: number, x: number) => {
          if (req.targets) return req.targets[ci * TARGET_BYTES + y * CELL + x]!;
          const f = canvas[(113 + y) * 224 + 113 + x]!;
          return Math.min(255, Math.max(0, Math.trunc((f * 0.229 + 0.485) * 255)));
        };
        // Compare on block centres: enough to define a loss with the engine's sign conventions.
        let se = 0;
        let inter = 0;
        let uni = 0;
        for (let k = 0; k < BLOCKS; k++) {
          const y = Math.floor(((k >> 3) + 0.5) * (CELL / 8));
          const x = Math.floor(((k & 7) + 0.5) * (CELL / 8));
          const t = target(y, x);
          se += ((v[k]! - t) / 255 / 0.226) ** 2;
          const fp = v[k]! > 127.5;
          const ft = t > 127.5;
          if (fp && ft) inter++;
          if (fp || ft) uni++;
        }
        if (req.loss === 'mse') {
          metrics[b] = se / BLOCKS;
          losses[b] = se / BLOCKS;
        } else {
          metrics[b] = inter / uni; // NaN when both empty, like the reference
          losses[b] = -metrics[b]!;
        }
      }
    }
    let captureEnc: Float32Array | undefined;
    let captureDec: Float32Array | undefined;
    if (req.capture) {
      const ne = encTokens(req.mode);
      const nd = decTokens(req.mode);
      captureEnc = new Float32Array(c.encDepth * ne * c.encDim);
      captureDec = new Float32Array(c.decDepth * nd * c.decDim);
      for (let b = 0; b < B; b++) {
        const ci = req.canvasIndex ? req.canvasIndex[b]! : b;
        const canvas = req.canvases.subarray(ci * CANVAS_FLOATS, (ci + 1) * CANVAS_FLOATS);
        for (let i = 0; i < captureEnc.length; i++) captureEnc[i]! += canvas[(i * 7919) % CANVAS_FLOATS]! * (1 + (i % 5));
        for (let i = 0; i < captureDec.length; i++) captureDec[i]! += canvas[(i * 104729) % CANVAS_FLOATS]! - (i % 3);
      }
    }
    return {
      batch: B,
      images,
      losses: req.loss ? losses : undefined,
      metrics: req.loss ? metrics : undefined,
      captureEnc,
      captureDec,
      uniqueForwards: seen.size,
      uniqueDecodes: seen.size,
      seconds: 0,
    };
  }
}

/** Bottom-right cells of images ([B][3][224][224]) as targets ([B][3][111][111]). */
export function targetsFromImages(images: Uint8Array, batch: number): Uint8Array {
  const t = new Uint8Array(batch * TARGET_BYTES);
  for (let b = 0; b < batch; b++)
    for (let ch = 0; ch < 3; ch++)
      for (let y = 0; y < CELL; y++)
        for (let x = 0; x < CELL; x++)
          t[b * TARGET_BYTES + ch * CELL * CELL + y * CELL + x] = images[b * CANVAS_FLOATS + ch * 224 * 224 + (113 + y) * 224 + 113 + x]!;
  return t;
}
