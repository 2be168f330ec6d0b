// The search variables (docs/method.md#variables) and their expansion into the engine's per-sample patch masks.
//
// A variable is a group of (layer, head, position) triples that is patched or not as one Bernoulli.
// Positions are defined, as in the reference (intervention_utils.construct_indices), in the zero-shot
// reduced sequences (encoder: CLS + 49 query tokens; decoder: CLS + rows 7..13). The engine reads the
// task means at one-shot row p+98 for reduced p >= 1 itself, so a zero-shot mask carries the reduced
// positions unchanged. A one-shot mask carries the same position numbers, unshifted, as the reference
// does: its patch shifts positions (and mean rows) by +98 only in zero-shot mode, so in one-shot a
// variable patches one-shot positions 1..49 (encoder) or 1..98 (decoder) with the means of those same
// rows, which are tokens of the example rows, not the query's.
//
// Granularities (the reference's, generalised from ViT-L's 24x16 + 8x16 to any config):
//   0: one variable per (layer, head), all of the mode's positions   (512 for ViT-L)
//   1: encoder (layer, head, slot) with slot 0 = CLS, 1 = the 49 query tokens;
//      decoder (layer, head, slot) with 0 = CLS, 1 = query quadrant 1+r*14+c, 2 = output 1+r*14+7+c
//      (1152 for ViT-L: the default)
//   2: one variable per (layer, head, reduced position)              (31,872 for ViT-L)
import {
  decTokens,
  encTokens,
  type Mode,
  type ModelConfig,
  patchBitIndex,
  patchBits,
  patchBytes,
  ZERO_SHOT_DEC_TOKENS,
  ZERO_SHOT_ENC_TOKENS,
} from '../config.js';

export type Granularity = 0 | 1 | 2;

/** What one variable stands for (for reports and subset files). */
export interface VariableInfo {
  layer: number; // 0..encDepth-1 encoder, then decoder layers
  head: number;
  /** granularity 0: 'all'; 1: 'cls' | 'query' | 'output'; 2: 'pos' */
  slot: 'all' | 'cls' | 'query' | 'output' | 'pos';
  /** Positions the variable covers, in the sequence of the space's mode. */
  positions: number[];
}

export class VariableSpace {
  readonly count: number;
  /** Number of variables that live in encoder layers (they come first). */
  readonly encoderCount: number;
  readonly info: VariableInfo[];
  readonly maskBytes: number;
  /** Per variable, the bit indices it sets in a mask of `mode`, as one flat list with offsets. */
  private readonly bitStart: Int32Array;
  private readonly bits: Int32Array;

  constructor(
    readonly config: ModelConfig,
    readonly granularity: Granularity,
    readonly mode: Mode,
  ) {
    this.info = describeVariables(config, granularity, mode);
    this.count = this.info.length;
    this.encoderCount = this.info.filter((v) => v.layer < config.encDepth).length;
    this.maskBytes = patchBytes(config, mode);
    const starts = new Int32Array(this.count + 1);
    const flat: number[] = [];
    for (let v = 0; v < this.count; v++) {
      starts[v] = flat.length;
      const { layer, head, positions } = this.info[v]!;
      for (const p of positions) flat.push(patchBitIndex(config, mode, layer, head, p));
    }
    starts[this.count] = flat.length;
    this.bitStart = starts;
    this.bits = Int32Array.from(flat);
    const limit = patchBits(config, mode);
    for (const b of this.bits) if (b < 0 || b >= limit) throw new Error(`internal: variable bit ${b} outside mask of ${limit} bits`);
  }

  /** Bit indices (in a mask of this space's mode) that variable v sets. */
  bitsOf(v: number): Int32Array {
    return this.bits.subarray(this.bitStart[v]!, this.bitStart[v + 1]!);
  }

  /**
   * Expands per-sample variable choices (batch x count, 0/1) into engine mask bytes
   * (batch x maskBytes). `out` is zeroed first, so it can be reused across steps.
   */
  masks(choices: Uint8Array, batch: number, out?: Uint8Array): Uint8Array {
    if (choices.length !== batch * this.count) {
      throw new Error(`masks: ${choices.length} choices for ${batch} samples of ${this.count} variables`);
    }
    const mb = this.maskBytes;
    const masks = out ?? new Uint8Array(batch * mb);
    if (masks.length !== batch * mb) throw new Error(`masks: output has ${masks.length} bytes, need ${batch * mb}`);
    masks.fill(0);
    const bits = this.bits;
    const start = this.bitStart;
    for (let b = 0; b < batch; b++) {
      const row = b * this.count;
      const base = b * mb;
      for (let v = 0; v < this.count; v++) {
        if (choices[row + v] === 0) continue;
        for (let k = start[v]!, e = start[v + 1]!; k < e; k++) {
          const bit = bits[k]!;
          masks[base + (bit >> 3)]! |= 1 << (bit & 7);
        }
      }
    }
    return masks;
  }

  /** The (layer, head, mode position) triples a set of variables patches (for checks and reports). */
  triples(choice: ArrayLike<number>): [number, number, number][] {
    const out: [number, number, number][] = [];
    for (let v = 0; v < this.count; v++) {
      if (!choice[v]) continue;
      const { layer, head, positions } = this.info[v]!;
      for (const p of positions) out.push([layer, head, p]);
    }
    return out;
  }
}

export function variableCount(c: ModelConfig, g: Granularity): number {
  const layers = c.encDepth * c.encHeads + c.decDepth * c.decHeads;
  if (g === 0) return layers;
  if (g === 1) return c.encDepth * c.encHeads * 2 + c.decDepth * c.decHeads * 3;
  return c.encDepth * c.encHeads * ZERO_SHOT_ENC_TOKENS + c.decDepth * c.decHeads * ZERO_SHOT_DEC_TOKENS;
}

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
/** Reduced decoder positions of the query-input quadrant (left half of rows 7..13). */
const DEC_QUERY = range(0, 49).map((i) => 1 + Math.floor(i / 7) * 14 + (i % 7));
/** Reduced decoder positions of the output quadrant (right half of rows 7..13). */
const DEC_OUTPUT = range(0, 49).map((i) => 1 + Math.floor(i / 7) * 14 + 7 + (i % 7));

function describeVariables(c: ModelConfig, g: Granularity, mode: Mode): VariableInfo[] {
  if (g !== 0 && g !== 1 && g !== 2) throw new Error(`granularity must be 0, 1 or 2, got ${String(g)}`);
  const out: VariableInfo[] = [];
  const layers = c.encDepth + c.decDepth;
  for (let l = 0; l < layers; l++) {
    const enc = l < c.encDepth;
    const heads = enc ? c.encHeads : c.decHeads;
    for (let h = 0; h < heads; h++) {
      if (g === 0) {
        out.push({ layer: l, head: h, slot: 'all', positions: range(0, enc ? encTokens(mode) : decTokens(mode)) });
      } else if (g === 1) {
        out.push({ layer: l, head: h, slot: 'cls', positions: [0] });
        if (enc) out.push({ layer: l, head: h, slot: 'query', positions: range(1, ZERO_SHOT_ENC_TOKENS) });
        else {
          out.push({ layer: l, head: h, slot: 'query', positions: [...DEC_QUERY] });
          out.push({ layer: l, head: h, slot: 'output', positions: [...DEC_OUTPUT] });
        }
      } else {
        const n = enc ? ZERO_SHOT_ENC_TOKENS : ZERO_SHOT_DEC_TOKENS;
        for (let p = 0; p < n; p++) out.push({ layer: l, head: h, slot: 'pos', positions: [p] });
      }
    }
  }
  return out;
}
