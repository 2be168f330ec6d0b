// Random MAE-VQGAN weights for any config (the demo and tests use the tiny preset): every key the
// engine reads (docs/method.md#model, VQGAN under "vae.", its encoder included), initialised as the original modules are at construction
// (LayerNorm/GroupNorm 1 and 0, Linear and Conv with fan-in scaled uniforms, fixed 2-D sin-cos
// position embeddings, a uniform codebook), so activations stay in a sensible range and decoded
// images are not constant. Seeded: the same seed gives the same file.

import { maeKeys, vqDecodeKeys, vqEncodeKeys } from '../checkpoint/keys.js';
import { type SafeTensor, writeSafetensors } from '../checkpoint/safetensors.js';
import { GRID, type ModelConfig } from '../config.js';
import { Rng } from '../data/rng.js';

/** MAE's fixed 2-D sin-cos embedding (docs/method.md#model): row 0 (CLS) zero, first half encodes the column. */
export function sincosPosEmbed(dim: number): Float32Array {
  const out = new Float32Array((GRID * GRID + 1) * dim);
  const q = dim / 4;
  for (let r = 0; r < GRID; r++) {
    for (let c = 0; c < GRID; c++) {
      const row = out.subarray((1 + r * GRID + c) * dim, (2 + r * GRID + c) * dim);
      for (let k = 0; k < q; k++) {
        const w = 10000 ** (-k / q);
        row[k] = Math.sin(c * w);
        row[q + k] = Math.cos(c * w);
        row[2 * q + k] = Math.sin(r * w);
        row[3 * q + k] = Math.cos(r * w);
      }
    }
  }
  return out;
}

function initTensor(key: string, shape: number[], c: ModelConfig, rng: Rng): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  const uniform = (bound: number) => {
    for (let i = 0; i < n; i++) data[i] = (rng.float() * 2 - 1) * bound;
  };
  const leaf = key.split('.').at(-1)!;
  const isNorm = /(^|\.)(norm\d?|norm_out|decoder_norm|norm)\.(weight|bias)$/.test(key) || /\.norm\.(weight|bias)$/.test(key);
  if (key === 'pos_embed') return sincosPosEmbed(c.encDim);
  if (key === 'decoder_pos_embed') return sincosPosEmbed(c.decDim);
  if (key === 'cls_token' || key === 'mask_token') {
    uniform(0.02 * Math.sqrt(3));
    return data;
  }
  if (key.endsWith('quantize.embedding.weight')) {
    uniform(1 / c.vq.nEmbed);
    // A wider spread than taming's 1/n so that different tokens decode to visibly different pixels.
    for (let i = 0; i < n; i++) data[i]! *= c.vq.nEmbed;
    return data;
  }
  if (isNorm) {
    if (leaf === 'weight') data.fill(1);
    return data;
  }
  const fanIn = shape.length > 1 ? shape.slice(1).reduce((a, b) => a * b, 1) : shape[0]!;
  uniform(leaf === 'bias' ? 1 / Math.sqrt(fanIn) : Math.sqrt(3 / fanIn));
  return data;
}

/**
 * All weight tensors of a model: MAE keys, then "vae."-prefixed VQGAN decode keys, then the VQGAN
 * encoder keys (encoder.*, quant_conv.*) that the token-space search objective needs for its targets.
 * Each tensor has its own RNG stream (forked by key), so adding keys leaves the others unchanged.
 */
export function randomWeights(c: ModelConfig, seed: number): Map<string, SafeTensor> {
  const rng = Rng.fromSeed(seed);
  const out = new Map<string, SafeTensor>();
  const add = (key: string, shape: number[]) => out.set(key, { dtype: 'F32', shape, data: initTensor(key, shape, c, rng.fork(key)) });
  for (const [k, s] of maeKeys(c)) add(k, s);
  for (const [k, s] of vqDecodeKeys(c)) add(`vae.${k}`, s);
  for (const [k, s] of vqEncodeKeys(c)) add(`vae.${k}`, s);
  return out;
}

/** Writes random weights to a safetensors file with the same metadata `vtv convert` writes. */
export function writeRandomWeights(path: string, c: ModelConfig, seed: number): number {
  return writeSafetensors(path, randomWeights(c, seed), {
    vtv_config: JSON.stringify(c),
    vtv_format: '1',
    source: `random(seed=${seed})`,
    dtype: 'fp32',
  });
}
