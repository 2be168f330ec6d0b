// Model shapes and the names that cross into the native engine. The canvas geometry (224 px, 16 px
// patches, 14x14 grid, masked bottom-right 7x7 quadrant) and the presets are defined once, in
// model-constants.json, which the native build also compiles (native/cmake/model_constants.cmake);
// test/shared-tables.test.ts checks that the addon's tables agree with this file.
import { z } from 'zod';
import { InputError } from './errors.js';
import constants from './model-constants.json' with { type: 'json' };

export const IMAGE = constants.canvas.image;
export const PATCH = constants.canvas.patch;
export const GRID = constants.canvas.grid;
/** Side of the output quadrant, in patches. */
export const HALF = constants.canvas.half;
/** A canvas cell in pixels. */
export const CELL = constants.canvas.cell;
/** First row/column of the second row/column of cells (a 2-px white gap after the first). */
export const CELL_START = constants.canvas.cellStart;
export const ONE_SHOT_ENC_TOKENS = constants.canvas.oneShotEncTokens;
export const ONE_SHOT_DEC_TOKENS = constants.canvas.oneShotDecTokens;
export const ZERO_SHOT_ENC_TOKENS = constants.canvas.zeroShotEncTokens;
export const ZERO_SHOT_DEC_TOKENS = constants.canvas.zeroShotDecTokens;
export const ZERO_SHOT_SHIFT = constants.canvas.zeroShotShift;
export const IMAGENET_MEAN: readonly number[] = constants.imagenet.mean;
export const IMAGENET_STD: readonly number[] = constants.imagenet.std;

/** The engine's compute backends, precisions, forward modes and per-sample losses (the addon's names). */
export const BACKENDS = ['auto', 'cpu', 'cuda'] as const;
export type Backend = (typeof BACKENDS)[number];
export const PRECISIONS = ['fp32', 'bf16'] as const;
export type Precision = (typeof PRECISIONS)[number];
export const MODES = ['one-shot', 'zero-shot'] as const;
export type Mode = (typeof MODES)[number];
/** Per-sample losses of a forward; the addon also takes 'none' (no loss). */
export const LOSSES = ['iou', 'mse', 'token-ce', 'token-accuracy'] as const;
export type Loss = (typeof LOSSES)[number];

export const VqganConfigSchema = z.object({
  embedDim: z.number().int().positive(),
  nEmbed: z.number().int().min(2),
  zChannels: z.number().int().positive(),
  ch: z.number().int().positive(),
  chMult: z.array(z.number().int().positive()).length(5),
  numResBlocks: z.number().int().positive(),
  groups: z.number().int().positive(),
  eps: z.number().positive(),
});

export const ModelConfigSchema = z.object({
  name: z.string(),
  encDim: z.number().int().positive(),
  encDepth: z.number().int().positive(),
  encHeads: z.number().int().positive(),
  decDim: z.number().int().positive(),
  decDepth: z.number().int().positive(),
  decHeads: z.number().int().positive(),
  mlpRatio: z.number().int().positive(),
  lnEps: z.number().positive(),
  vq: VqganConfigSchema,
});

export type VqganConfig = z.infer<typeof VqganConfigSchema>;
export type ModelConfig = z.infer<typeof ModelConfigSchema>;

export const PRESETS: Record<string, ModelConfig> = Object.fromEntries(constants.presets.map((p) => [p.name, ModelConfigSchema.parse(p)]));

export function preset(name: string): ModelConfig {
  const c = PRESETS[name];
  if (!c) throw new InputError(`unknown model preset '${name}' (known: ${Object.keys(PRESETS).join(', ')})`);
  return structuredClone(c);
}

export const encTokens = (m: Mode) => (m === 'one-shot' ? ONE_SHOT_ENC_TOKENS : ZERO_SHOT_ENC_TOKENS);
export const decTokens = (m: Mode) => (m === 'one-shot' ? ONE_SHOT_DEC_TOKENS : ZERO_SHOT_DEC_TOKENS);

/** Bits in one sample's patch mask: (layer, head, position) over encoder then decoder layers. */
export function patchBits(c: ModelConfig, m: Mode): number {
  return c.encDepth * c.encHeads * encTokens(m) + c.decDepth * c.decHeads * decTokens(m);
}
export const patchBytes = (c: ModelConfig, m: Mode) => Math.ceil(patchBits(c, m) / 8);

/** Bit index of (layer, head, position); layers 0..encDepth-1 are the encoder, then the decoder. */
export function patchBitIndex(c: ModelConfig, m: Mode, layer: number, head: number, pos: number): number {
  if (layer < c.encDepth) return (layer * c.encHeads + head) * encTokens(m) + pos;
  const l = layer - c.encDepth;
  return c.encDepth * c.encHeads * encTokens(m) + (l * c.decHeads + head) * decTokens(m) + pos;
}

/** Floats in the task-mean tables (pre-projection head outputs, one-shot positions). */
export const meansEncFloats = (c: ModelConfig) => c.encDepth * ONE_SHOT_ENC_TOKENS * c.encDim;
export const meansDecFloats = (c: ModelConfig) => c.decDepth * ONE_SHOT_DEC_TOKENS * c.decDim;
