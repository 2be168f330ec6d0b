// The seeded RNG: same seed -> same stream, state save/restore, label forks, ranges and uniformity.
import { describe, expect, it } from 'vitest';
import { Rng } from '../src/data/rng.js';

const draw = (r: Rng, n: number) => Array.from({ length: n }, () => r.int(0, 1_000_000));

describe('Rng', () => {
  it('gives the same stream for the same seed and different streams for different seeds', () => {
    expect(draw(Rng.fromSeed(42), 50)).toEqual(draw(Rng.fromSeed(42), 50));
    expect(draw(Rng.fromSeed(42), 50)).not.toEqual(draw(Rng.fromSeed(43), 50));
    // Seeds above 2^32 are not truncated to the same stream.
    expect(draw(Rng.fromSeed(2 ** 40 + 5), 20)).not.toEqual(draw(Rng.fromSeed(5), 20));
  });

  it('pins the stream of seed 42 (integer-only xoroshiro128+: identical on every machine)', () => {
    // Regression pin, generated once by this implementation; a change means old runs no longer replay.
    const r = Rng.fromSeed(42);
    const got = [r.int(0, 84), r.int(0, 84), r.int(0, 84), r.int(0, 1_000_000), r.getState().state];
    expect(got).toMatchSnapshot();
  });

  it('saves and restores its state exactly, through JSON', () => {
    const r = Rng.fromSeed(9);
    draw(r, 17);
    const saved = JSON.parse(JSON.stringify(r.getState()));
    const a = [draw(r, 30), r.float()];
    const restored = Rng.fromState(saved);
    expect([draw(restored, 30), restored.float()]).toEqual(a);
    const other = Rng.fromSeed(1);
    other.setState(saved);
    expect(draw(other, 5)).toEqual(draw(Rng.fromState(saved), 5));
    expect(() => Rng.fromState({ algorithm: 'mt', state: [1, 2, 3, 4] } as never)).toThrow(/setState/);
    expect(() => Rng.fromState({ algorithm: 'xoroshiro128plus', state: [0, 0, 0, 0] })).toThrow(/all-zero/);
  });

  it('forks by label without advancing the parent', () => {
    const p = Rng.fromSeed(3);
    const before = p.getState();
    const a1 = draw(p.fork('a'), 10);
    expect(p.getState()).toEqual(before);
    expect(draw(p.fork('a'), 10)).toEqual(a1);
    expect(draw(p.fork('b'), 10)).not.toEqual(a1);
    expect(draw(p.fork('episode/1'), 10)).not.toEqual(draw(p.fork('episode/2'), 10));
    // The child differs from the parent's own stream.
    expect(draw(p.clone(), 10)).not.toEqual(a1);
  });

  it('draws integers in [lo, hi] uniformly and floats in [0, 1)', () => {
    const r = Rng.fromSeed(5);
    const counts = new Array(7).fill(0);
    const n = 70_000;
    for (let i = 0; i < n; i++) {
      const v = r.int(-3, 3);
      expect(v >= -3 && v <= 3).toBe(true);
      counts[v + 3]++;
    }
    // Chi-square with 6 dof: 99.9th percentile is 22.5.
    const chi = counts.reduce((s, c) => s + (c - n / 7) ** 2 / (n / 7), 0);
    expect(chi).toBeLessThan(22.5);
    let mean = 0;
    for (let i = 0; i < 10_000; i++) {
      const f = r.float();
      expect(f >= 0 && f < 1).toBe(true);
      mean += f / 10_000;
    }
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.02);
    expect(() => r.int(3, 2)).toThrow(/lo <= hi/);
  });

  it('shuffles into a permutation, reproducibly', () => {
    const a = Rng.fromSeed(8).shuffle([...Array(20).keys()]);
    expect([...a].sort((x, y) => x - y)).toEqual([...Array(20).keys()]);
    expect(a).not.toEqual([...Array(20).keys()]);
    expect(Rng.fromSeed(8).shuffle([...Array(20).keys()])).toEqual(a);
  });
});
