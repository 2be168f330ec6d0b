import { describe, expect, it } from 'vitest';
import { Rng } from '../src/data/rng.js';
import {
  adamStep,
  advantages,
  DISABLED_LOGIT,
  newAdamState,
  probabilities,
  sampleChoices,
  sigmoid,
  surrogateGradient,
  surrogateValue,
} from '../src/method/policy.js';

// A problem small enough to enumerate: 4 variables, an arbitrary loss over the 16 subsets.
const V = 4;
const logits = Float64Array.from([-1, 0.3, 1.2, -0.4]);
const loss = (s: ArrayLike<number>) => (s[0] ? 1.5 : 0) - (s[1] ? 0.7 : 0) + (s[2] && s[3] ? 2 : 0) + 0.3 * (s[3] ? 1 : 0) - (s[0] && s[1] ? 0.5 : 0);
const subsets = Array.from({ length: 1 << V }, (_, m) => Uint8Array.from({ length: V }, (_, v) => (m >> v) & 1));
function probOf(s: Uint8Array, th: Float64Array): number {
  let p = 1;
  for (let v = 0; v < V; v++) p *= s[v] ? sigmoid(th[v]!) : 1 - sigmoid(th[v]!);
  return p;
}
const expectedLoss = (th: Float64Array) => subsets.reduce((a, s) => a + probOf(s, th) * loss(s), 0);
function exactGradient(th: Float64Array): Float64Array {
  const g = new Float64Array(V);
  for (let v = 0; v < V; v++) {
    const h = 1e-6;
    const up = Float64Array.from(th);
    const dn = Float64Array.from(th);
    up[v]! += h;
    dn[v]! -= h;
    g[v] = (expectedLoss(up) - expectedLoss(dn)) / (2 * h);
  }
  return g;
}

describe('REINFORCE gradient against exact enumeration', () => {
  it('its expectation over all subsets is the gradient of E[loss] / V', () => {
    const mu = expectedLoss(logits);
    const B = subsets.length;
    const choices = new Uint8Array(B * V);
    subsets.forEach((s, i) => choices.set(s, i * V));
    // Weighting each enumerated subset by B p(s) turns the batch mean into the exact expectation.
    const adv = Float64Array.from(subsets, (s) => B * probOf(s, logits) * (loss(s) - mu));
    const g = surrogateGradient(logits, choices, B, adv, 0);
    const exact = exactGradient(logits);
    for (let v = 0; v < V; v++) expect(g[v]).toBeCloseTo(exact[v]! / V, 7);
  });

  it('the sampled, z-scored estimate approaches grad E[loss] / (V std(loss))', () => {
    const rng = Rng.fromSeed(3);
    const p = probabilities(logits);
    const N = 200_000;
    const choices = sampleChoices(p, N, rng);
    const losses = Float64Array.from({ length: N }, (_, i) => loss(choices.subarray(i * V, (i + 1) * V)));
    const g = surrogateGradient(logits, choices, N, advantages(losses), 0);
    const mu = expectedLoss(logits);
    const sd = Math.sqrt(subsets.reduce((a, s) => a + probOf(s, logits) * (loss(s) - mu) ** 2, 0));
    const exact = exactGradient(logits);
    for (let v = 0; v < V; v++) expect(Math.abs(g[v]! - exact[v]! / (V * sd))).toBeLessThan(0.004);
  });

  it('is the exact derivative of the surrogate, sparsity term included', () => {
    const rng = Rng.fromSeed(9);
    const B = 7;
    const choices = sampleChoices(probabilities(logits), B, rng);
    const adv = Float64Array.from({ length: B }, () => rng.float() * 2 - 1);
    const lambda = 0.37;
    const g = surrogateGradient(logits, choices, B, adv, lambda);
    for (let v = 0; v < V; v++) {
      const h = 1e-6;
      const up = Float64Array.from(logits);
      const dn = Float64Array.from(logits);
      up[v]! += h;
      dn[v]! -= h;
      const fd = (surrogateValue(up, choices, B, adv, lambda) - surrogateValue(dn, choices, B, adv, lambda)) / (2 * h);
      expect(g[v]).toBeCloseTo(fd, 7);
    }
  });

  it('passes no gradient to a disabled (clamped) variable', () => {
    const th = Float64Array.from([DISABLED_LOGIT, 0]);
    const g = surrogateGradient(th, Uint8Array.from([0, 1, 0, 0]), 2, Float64Array.from([1, -1]), 0.5);
    expect(g[0]).toBe(0);
    expect(g[1]).not.toBe(0);
    expect(probabilities(th)[0]).toBe(1e-6);
  });
});

describe('advantages and Adam', () => {
  it('z-scores with the unbiased std, per task first in multi-task mode', () => {
    const a = advantages([1, 2, 3, 4]);
    const sd = Math.sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3);
    expect(a[0]).toBeCloseTo(-1.5 / (sd + 1e-6), 12);
    // Two tasks on very different scales end up with equal weight.
    const m = advantages([1, 100, 2, 300], [0, 1, 0, 1]);
    expect(m[0]).toBeCloseTo(m[1]!, 4);
    expect(m[2]).toBeCloseTo(m[3]!, 4);
  });

  it('matches torch.optim.Adam on two hand-computed steps', () => {
    const p = Float64Array.from([1, -2]);
    const st = newAdamState(2);
    adamStep(p, Float64Array.from([0.5, -3]), st, 0.1);
    // First step: m_hat / sqrt(v_hat) = sign(g) (up to eps).
    expect(p[0]).toBeCloseTo(0.9, 7);
    expect(p[1]).toBeCloseTo(-1.9, 7);
    const p0 = p[0]!;
    adamStep(p, Float64Array.from([0.25, 1]), st, 0.1);
    const m = 0.9 * 0.05 + 0.1 * 0.25;
    const v = 0.999 * 0.00025 + 0.001 * 0.0625;
    const expected = p0 - (0.1 / (1 - 0.81)) * (m / (Math.sqrt(v) / Math.sqrt(1 - 0.999 ** 2) + 1e-8));
    expect(p[0]).toBeCloseTo(expected, 12);
  });
});
