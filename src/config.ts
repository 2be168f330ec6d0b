// Model shapes, mirrored from native/src/core/config.cc (a test checks the two agree). The canvas
// geometry (224 px, 16 px patches, 14x14 grid, masked bottom-right 7x7 quadrant) is fixed by the method.
import { z } from 'zod';

export const IMAGE = 224;
export const PATCH = 16;
export const GRID = 14;
export const CELL = 111; // a canvas cell in pixels
export const ONE_SHOT_ENC_TOKENS = 148;
export const ONE_SHOT_DEC_TOKENS = 197;
export const ZERO_SHOT_ENC_TOKENS = 50;
export const ZERO_SHOT_DEC_TOKENS = 99;
export const ZERO_SHOT_SHIFT = 98;

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
export type Mode = 'one-shot' | 'zero-shot';

export const PRESETS: Record<string, ModelConfig> = {
  'mae-vqgan-vit-large': {
    name: 'mae-vqgan-vit-large',
    encDim: 1024,
    encDepth: 24,
    encHeads: 16,
    decDim: 512,
    decDepth: 8,
    decHeads: 16,
    mlpRatio: 4,
    lnEps: 1e-6,
    vq: { embedDim: 256, nEmbed: 1024, zChannels: 256, ch: 128, chMult: [1, 1, 2, 2, 4], numResBlocks: 2, groups: 32, eps: 1e-6 },
  },
  mini: {
    name: 'mini',
    encDim: 128,
    encDepth: 4,
    encHeads: 4,
    decDim: 128,
    decDepth: 3,
    decHeads: 4,
    mlpRatio: 4,
    lnEps: 1e-6,
    vq: { embedDim: 32, nEmbed: 512, zChannels: 64, ch: 8, chMult: [1, 1, 2, 4, 8], numResBlocks: 1, groups: 4, eps: 1e-6 },
  },
  tiny: {
    name: 'tiny',
    encDim: 64,
    encDepth: 4,
    encHeads: 4,
    decDim: 32,
    decDepth: 2,
    decHeads: 4,
    mlpRatio: 4,
    lnEps: 1e-6,
    vq: { embedDim: 16, nEmbed: 64, zChannels: 32, ch: 8, chMult: [1, 1, 2, 2, 4], numResBlocks: 1, groups: 4, eps: 1e-6 },
  },
};

export function preset(name: string): ModelConfig {
  const c = PRESETS[name];
  if (!c) throw new Error(`unknown model preset '${name}' (known: ${Object.keys(PRESETS).join(', ')})`);
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
