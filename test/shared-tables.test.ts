// The tables shared by TypeScript and the native engine agree: the presets and the canvas geometry (both
// compiled from src/model-constants.json), the names of the engine's enums (backends, precisions, modes,
// losses), which the addon parses with its own tables, and the weight tensors: the names and shapes
// src/checkpoint/keys.ts lists (what `vtv convert` writes and the CLI checks) are exactly those the
// engine's binders read (native/src/model/weights_view.cc).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { maeKeys, vqDecodeKeys, vqEncodeKeys } from '../src/checkpoint/keys.js';
import {
  BACKENDS,
  CELL,
  CELL_START,
  GRID,
  HALF,
  IMAGE,
  LOSSES,
  MODES,
  ONE_SHOT_DEC_TOKENS,
  ONE_SHOT_ENC_TOKENS,
  PATCH,
  PRECISIONS,
  PRESETS,
  ZERO_SHOT_DEC_TOKENS,
  ZERO_SHOT_ENC_TOKENS,
  ZERO_SHOT_SHIFT,
} from '../src/config.js';
import { writeRandomWeights } from '../src/model/random-weights.js';
import { loadAddon } from '../src/native.js';

const f32 = (x: number) => Math.fround(x);

describe('the addon and src/config.ts agree', () => {
  const addon = loadAddon();

  it('presets: the same names in the same order, every field equal (eps as float32)', () => {
    expect(addon.presetNames()).toEqual(Object.keys(PRESETS));
    for (const name of addon.presetNames()) {
      const n = addon.preset(name);
      const t = PRESETS[name]!;
      expect({ ...n, lnEps: f32(n.lnEps), vq: { ...n.vq, eps: f32(n.vq.eps) } }).toEqual({ ...t, lnEps: f32(t.lnEps), vq: { ...t.vq, eps: f32(t.vq.eps) } });
    }
    expect(() => addon.preset('vit-huge')).toThrow(`unknown model preset 'vit-huge' (known: ${Object.keys(PRESETS).join(', ')})`);
  });

  it('canvas geometry and token counts', () => {
    expect(addon.canvas).toEqual({
      image: IMAGE,
      patch: PATCH,
      grid: GRID,
      half: HALF,
      cell: CELL,
      cellStart: CELL_START,
      oneShotEncTokens: ONE_SHOT_ENC_TOKENS,
      oneShotDecTokens: ONE_SHOT_DEC_TOKENS,
      zeroShotEncTokens: ZERO_SHOT_ENC_TOKENS,
      zeroShotDecTokens: ZERO_SHOT_DEC_TOKENS,
      zeroShotShift: ZERO_SHOT_SHIFT,
    });
  });

  it('enum names: backends, precisions, modes, losses', () => {
    expect(addon.names).toEqual({ backends: [...BACKENDS], precisions: [...PRECISIONS], modes: [...MODES], losses: ['none', ...LOSSES] });
  });

  it('weight tensors: the engine reads exactly the names keys.ts lists, with its shapes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vtv-tables-'));
    try {
      for (const name of ['tiny', 'mini']) {
        const c = PRESETS[name]!;
        const file = join(dir, `${name}.safetensors`);
        // The file holds exactly keys.ts's tensors and shapes (random-weights writes those): binding fails on
        // a name or shape the engine wants and the file lacks, and bound lists every name the engine read.
        writeRandomWeights(file, c, 1);
        const ts = [...maeKeys(c).keys(), ...[...vqDecodeKeys(c).keys(), ...vqEncodeKeys(c).keys()].map((k) => `vae.${k}`)].sort();
        expect(addon.boundTensors(c, [file]), name).toEqual(ts);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
