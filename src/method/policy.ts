// The REINFORCE policy maths of docs/method.md#search, in float64: independent Bernoullis with probabilities
// clamp(sigmoid(theta), 1e-6, 1-1e-6), z-scored advantages, the mean-log-prob surrogate and its exact
// gradient, and torch's Adam. Nothing here touches the engine; the search loop feeds it losses.

export const PROB_EPS = 1e-6;
/** Logit that switches a variable off for good (restrict_area): sigmoid is 0, the clamp kills the gradient. */
export const DISABLED_LOGIT = -1000;

export const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** Whether the clamp is inactive at this logit (torch's clamp passes no gradient when it clips). */
function clampPasses(s: number): boolean {
  return s >= PROB_EPS && s <= 1 - PROB_EPS;
}

export function probabilities(logits: Float64Array): Float64Array {
  const p = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) p[i] = Math.min(1 - PROB_EPS, Math.max(PROB_EPS, sigmoid(logits[i]!)));
  return p;
}

/** A source of uniform floats in [0, 1). */
export interface UniformSource {
  float(): number;
}

/** batch x V independent Bernoulli draws, row-major (sample b's choices at [b*V, (b+1)*V)). */
export function sampleChoices(probs: Float64Array, batch: number, rng: UniformSource, out?: Uint8Array): Uint8Array {
  const V = probs.length;
  const s = out ?? new Uint8Array(batch * V);
  for (let b = 0; b < batch; b++) {
    const row = b * V;
    for (let v = 0; v < V; v++) s[row + v] = rng.float() < probs[v]! ? 1 : 0;
  }
  return s;
}

/** Variables set when thresholding at 0.5 (the deterministic alternative to one draw, docs/method.md#search). */
export function thresholdChoices(probs: Float64Array): Uint8Array {
  return Uint8Array.from(probs, (p) => (p > 0.5 ? 1 : 0));
}

function zscoreInPlace(x: Float64Array, idx: number[], eps: number): void {
  const n = idx.length;
  if (n === 0) return;
  let mean = 0;
  for (const i of idx) mean += x[i]!;
  mean /= n;
  let ss = 0;
  for (const i of idx) ss += (x[i]! - mean) ** 2;
  // torch.std is unbiased; a single sample has NaN std in torch, which we treat as 0.
  const std = n > 1 ? Math.sqrt(ss / (n - 1)) : 0;
  for (const i of idx) x[i] = (x[i]! - mean) / (std + eps);
}

/**
 * Advantages A = (L - mean L) / (std L + 1e-6) with the unbiased std. With `groupOf` (multi-task mode),
 * each group (task) is z-scored on its own first, then the whole batch (docs/method.md#search, advantages).
 */
export function advantages(losses: ArrayLike<number>, groupOf?: ArrayLike<number>): Float64Array {
  const a = Float64Array.from(losses as ArrayLike<number>);
  if (groupOf) {
    const groups = new Map<number, number[]>();
    for (let i = 0; i < a.length; i++) {
      const g = groupOf[i]!;
      let list = groups.get(g);
      if (!list) groups.set(g, (list = []));
      list.push(i);
    }
    for (const idx of groups.values()) zscoreInPlace(a, idx, PROB_EPS);
  }
  zscoreInPlace(a, Array.from(a.keys()), PROB_EPS);
  return a;
}

/**
 * The surrogate objective mean_i[ mean_v log Bern(s_iv; p_v) * A_i ] + lambda * mean_v p_v.
 * Its gradient is the REINFORCE estimate; the value is kept for tests and logs.
 */
export function surrogateValue(logits: Float64Array, choices: Uint8Array, batch: number, adv: Float64Array, lambda: number): number {
  const V = logits.length;
  const p = probabilities(logits);
  let total = 0;
  for (let b = 0; b < batch; b++) {
    let lp = 0;
    for (let v = 0; v < V; v++) lp += choices[b * V + v] ? Math.log(p[v]!) : Math.log(1 - p[v]!);
    total += (lp / V) * adv[b]!;
  }
  let meanP = 0;
  for (let v = 0; v < V; v++) meanP += p[v]!;
  return total / batch + (lambda * meanP) / V;
}

/**
 * Exact gradient of surrogateValue w.r.t. the logits: d/dθ log Bern(s; σ(θ)) = s - σ(θ) and
 * dσ/dθ = σ(1-σ), both zero where the clamp clips.
 */
export function surrogateGradient(logits: Float64Array, choices: Uint8Array, batch: number, adv: Float64Array, lambda: number): Float64Array {
  const V = logits.length;
  const g = new Float64Array(V);
  // Sum of A_i s_iv per variable, and sum of A_i.
  let sumA = 0;
  for (let b = 0; b < batch; b++) {
    const a = adv[b]!;
    if (a === 0) continue;
    sumA += a;
    const row = b * V;
    for (let v = 0; v < V; v++) if (choices[row + v]) g[v]! += a;
  }
  for (let v = 0; v < V; v++) {
    const s = sigmoid(logits[v]!);
    if (!clampPasses(s)) {
      g[v] = 0;
      continue;
    }
    g[v] = (g[v]! - sumA * s) / (batch * V) + (lambda * s * (1 - s)) / V;
  }
  return g;
}

/** torch.optim.Adam defaults (betas 0.9/0.999, eps 1e-8, no weight decay), state in float64. */
export interface AdamState {
  m: Float64Array;
  v: Float64Array;
  t: number;
}

export function newAdamState(n: number): AdamState {
  return { m: new Float64Array(n), v: new Float64Array(n), t: 0 };
}

export function adamStep(params: Float64Array, grad: Float64Array, state: AdamState, lr: number, beta1 = 0.9, beta2 = 0.999, eps = 1e-8): void {
  state.t += 1;
  const bc1 = 1 - beta1 ** state.t;
  const bc2 = 1 - beta2 ** state.t;
  const stepSize = lr / bc1;
  const sqrtBc2 = Math.sqrt(bc2);
  for (let i = 0; i < params.length; i++) {
    const g = grad[i]!;
    const m = (state.m[i] = beta1 * state.m[i]! + (1 - beta1) * g);
    const v = (state.v[i] = beta2 * state.v[i]! + (1 - beta2) * g * g);
    params[i]! -= (stepSize * m) / (Math.sqrt(v) / sqrtBc2 + eps);
  }
}
