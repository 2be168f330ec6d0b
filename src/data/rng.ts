// Seeded random numbers for everything that must replay identically on every machine: episode
// sampling, inpainting squares, search masks. The generator is pure-rand's xoroshiro128+, whose state
// is four 32-bit integers and whose arithmetic is integer-only, so a seed gives the same stream on any
// platform, and the state can be written into a checkpoint and restored exactly.

import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { xoroshiro128plus, xoroshiro128plusFromState } from 'pure-rand/generator/xoroshiro128plus';
import type { JumpableRandomGenerator } from 'pure-rand/types/JumpableRandomGenerator';

/** Serialisable generator state (JSON-safe). */
export interface RngState {
  algorithm: 'xoroshiro128plus';
  state: [number, number, number, number];
}

/** murmur3's 32-bit finaliser: a bijective mix, used to derive child states from labels. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}

/** FNV-1a over the UTF-16 code units of a label. */
function hashLabel(label: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

export class Rng {
  private gen: JumpableRandomGenerator;

  private constructor(gen: JumpableRandomGenerator) {
    this.gen = gen;
  }

  /**
   * A generator from an integer seed (any safe integer, all 53 bits used). The seed is spread over the
   * 128-bit state with murmur3's finaliser: pure-rand's own seeding leaves nearby seeds' first outputs
   * nearly equal (seed 42 and 43 would start with neighbouring numbers).
   */
  static fromSeed(seed: number): Rng {
    if (!Number.isSafeInteger(seed)) throw new Error(`Rng.fromSeed: seed must be a safe integer, got ${seed}`);
    const lo = seed | 0;
    const hi = Math.floor(seed / 0x1_0000_0000) | 0;
    const s: [number, number, number, number] = [
      fmix32(lo ^ 0x243f6a88),
      fmix32(hi ^ 0x85a308d3),
      fmix32(fmix32(lo) ^ 0x13198a2e ^ hi),
      fmix32(fmix32(hi) ^ 0x03707344 ^ lo),
    ];
    if (s.every((v) => v === 0)) s[0] = 1;
    return new Rng(xoroshiro128plusFromState(s));
  }

  static fromState(s: RngState): Rng {
    const r = new Rng(xoroshiro128plus(0));
    r.setState(s);
    return r;
  }

  getState(): RngState {
    const s = this.gen.getState();
    return { algorithm: 'xoroshiro128plus', state: [s[0] | 0, s[1] | 0, s[2] | 0, s[3] | 0] };
  }

  setState(s: RngState): void {
    if (s?.algorithm !== 'xoroshiro128plus' || !Array.isArray(s.state) || s.state.length !== 4 || !s.state.every((v) => Number.isInteger(v))) {
      throw new Error(`Rng.setState: expected {algorithm:'xoroshiro128plus', state:[4 integers]}, got ${JSON.stringify(s)}`);
    }
    if (s.state.every((v) => (v | 0) === 0)) throw new Error('Rng.setState: the all-zero state is invalid for xoroshiro128+');
    this.gen = xoroshiro128plusFromState(s.state.map((v) => v | 0));
  }

  /** An independent copy that continues the same stream. */
  clone(): Rng {
    return new Rng(this.gen.clone());
  }

  /**
   * A child generator named by `label`, derived from this generator's current state without
   * advancing it: the same parent state and label always give the same child, and different
   * labels give unrelated streams (e.g. fork(`episode/${i}`) for random access to episode i).
   */
  fork(label: string): Rng {
    const parent = this.gen.getState();
    const h = hashLabel(label);
    const s: [number, number, number, number] = [0, 0, 0, 0];
    for (let i = 0; i < 4; i++) s[i] = fmix32((parent[i] ?? 0) ^ fmix32(h + Math.imul(i + 1, 0x9e3779b9)));
    if (s.every((v) => v === 0)) s[0] = 1;
    return new Rng(xoroshiro128plusFromState(s));
  }

  /** Uniform integer in [lo, hi], both included (like Python's random.randint). */
  int(lo: number, hi: number): number {
    if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || hi < lo) {
      throw new Error(`Rng.int: need integers lo <= hi, got lo=${lo} hi=${hi}`);
    }
    return uniformInt(this.gen, lo, hi);
  }

  /** Uniform float in [0, 1) with 53 random bits. */
  float(): number {
    return uniformFloat64(this.gen);
  }

  /** A uniformly chosen element. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('Rng.pick: empty list');
    return items[this.int(0, items.length - 1)] as T;
  }

  /** Fisher-Yates shuffle in place; returns the same array. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      const t = items[i] as T;
      items[i] = items[j] as T;
      items[j] = t;
    }
    return items;
  }
}
