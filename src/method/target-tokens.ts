// The targets of the token-space search objective (docs/method.md#token-objective): for each training canvas, the VQGAN
// encoder's tokens of its ground truth at the 49 output-quadrant positions. The ground truth is the
// canvas itself (its bottom-right cell holds the target) or, for a set with override targets, the canvas
// with those targets pasted into that cell. They are computed once per search and cached next to its
// state (search/<task>/target_tokens.json) under a key that hashes the canvases, the targets and the
// weights, so a resumed search reuses them and a changed input never reads stale ones.
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { IMAGE } from '../config.js';
import { CELL_SIZE as CELL, CELL_OFFSET, IMAGENET_MEAN, IMAGENET_STD } from '../data/canvas.js';
import { CANVAS_FLOATS, QUADRANT_TOKENS, quadrantTokens, TARGET_BYTES } from '../engine.js';
import { writeJsonAtomic } from '../run/atomic-file.js';
import { readJsonFile } from '../run/json-file.js';
import type { CanvasSet } from './reinforce.js';

/** The part of the engine that computes target tokens (an Engine opened with needVqganEncoder). */
export interface TokenEncoder {
  encodeTokens(canvases: Float32Array): Promise<Int32Array>;
}

export interface TargetTokensFile {
  format: 'vtv-target-tokens';
  version: 1;
  /** sha256 over the weights' identity and every set's canvases and targets. */
  key: string;
  sets: { name: string; count: number; tokens: number[] }[];
}

/** The set's ground-truth canvases: its canvases, with the override targets (if any) in the bottom-right cell. */
export function groundTruthCanvases(set: CanvasSet): Float32Array {
  if (!set.targets) return set.canvases;
  if (set.targets.length !== set.count * TARGET_BYTES) throw new Error(`target tokens: targets have ${set.targets.length} bytes, not ${set.count} x 3x111x111`);
  const out = Float32Array.from(set.canvases);
  const plane = IMAGE * IMAGE;
  for (let b = 0; b < set.count; b++) {
    for (let c = 0; c < 3; c++) {
      const mean = IMAGENET_MEAN[c] as number;
      const std = IMAGENET_STD[c] as number;
      for (let y = 0; y < CELL; y++) {
        const dst = b * CANVAS_FLOATS + c * plane + (CELL_OFFSET + y) * IMAGE + CELL_OFFSET;
        const src = b * TARGET_BYTES + c * CELL * CELL + y * CELL;
        // As buildCanvas: the cell is ToTensor's float32 v/255, normalised in double.
        for (let x = 0; x < CELL; x++) out[dst + x] = (Math.fround(set.targets[src + x]! / 255) - mean) / std;
      }
    }
  }
  return out;
}

/** The [count][49] output-quadrant tokens of a set's ground truth. */
export async function computeTargetTokens(encoder: TokenEncoder, set: CanvasSet): Promise<Int32Array> {
  return quadrantTokens(await encoder.encodeTokens(groundTruthCanvases(set)));
}

/** A weights identity for the cache key: resolved paths, sizes and modification times. */
export function weightsIdentity(paths: string[]): string {
  return paths.map((p) => (existsSync(p) ? `${resolve(p)}:${statSync(p).size}:${statSync(p).mtimeMs}` : resolve(p))).join('|');
}

export function targetTokensKey(sets: CanvasSet[], weightsId: string): string {
  const h = createHash('sha256');
  const feed = (a: ArrayBufferView) => h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  h.update(weightsId);
  for (const s of sets) {
    h.update(`|${s.count}|`);
    feed(s.canvases);
    if (s.targets) feed(s.targets);
  }
  return h.digest('hex');
}

/**
 * Target tokens of each set, from the cache file when its key matches, else computed and written there.
 * Returns them in the order of `sets`, and whether they came from the cache.
 */
export async function cachedTargetTokens(
  path: string,
  encoder: TokenEncoder,
  names: string[],
  sets: CanvasSet[],
  weightsId: string,
): Promise<{ tokens: Int32Array[]; cached: boolean }> {
  const key = targetTokensKey(sets, weightsId);
  if (existsSync(path)) {
    let f: TargetTokensFile | undefined;
    try {
      f = readJsonFile<TargetTokensFile>(path, 'target tokens cache');
    } catch {
      f = undefined; // unreadable: recompute and replace
    }
    if (
      f?.format === 'vtv-target-tokens' &&
      f.version === 1 &&
      f.key === key &&
      f.sets.length === sets.length &&
      f.sets.every((s, i) => s.name === names[i] && s.count === sets[i]!.count && s.tokens.length === s.count * QUADRANT_TOKENS)
    ) {
      return { tokens: f.sets.map((s) => Int32Array.from(s.tokens)), cached: true };
    }
  }
  const tokens: Int32Array[] = [];
  for (const s of sets) tokens.push(await computeTargetTokens(encoder, s));
  const file: TargetTokensFile = {
    format: 'vtv-target-tokens',
    version: 1,
    key,
    sets: sets.map((s, i) => ({ name: names[i]!, count: s.count, tokens: Array.from(tokens[i]!) })),
  };
  writeJsonAtomic(path, file);
  return { tokens, cached: false };
}
