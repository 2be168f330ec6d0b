// Recovers a model config from tensor shapes. Widths, depths, MLP ratio and every VQGAN channel count
// follow from shapes; head counts, GroupNorm groups and eps do not, so they come from the preset whose
// inferable fields all match (or from an explicit config, which is then checked against the shapes).
import { type ModelConfig, PRESETS } from '../config.js';
import { InputError } from '../errors.js';

function countIndexed(keys: Iterable<string>, prefix: string): number {
  const seen = new Set<number>();
  const re = new RegExp(`^${prefix.replace(/\./g, '\\.')}(\\d+)\\.`);
  for (const k of keys) {
    const m = re.exec(k);
    if (m) seen.add(Number(m[1]));
  }
  for (let i = 0; i < seen.size; i++) if (!seen.has(i)) return i; // stop at the first gap
  return seen.size;
}

function gcd(a: number, b: number): number {
  return b ? gcd(b, a % b) : a;
}

/** The shape-determined fields, with `undefined` where a needed key is missing. */
export interface InferredDims {
  encDim?: number;
  encDepth: number;
  decDim?: number;
  decDepth: number;
  mlpRatio?: number;
  vocab?: number;
  vq: { embedDim?: number; nEmbed?: number; zChannels?: number; ch?: number; chMult?: number[]; numResBlocks?: number };
}

/** `mae` holds MAE keys, `vq` VQGAN keys without the "vae." prefix. */
export function inferDims(mae: Map<string, number[]>, vq: Map<string, number[]>): InferredDims {
  const encDim = mae.get('pos_embed')?.[2];
  const decDim = mae.get('decoder_pos_embed')?.[2];
  const fc1 = mae.get('blocks.0.mlp.fc1.weight')?.[0];
  const levels = countIndexed(vq.keys(), 'decoder.up.');
  const levelCh = Array.from({ length: levels }, (_, i) => vq.get(`decoder.up.${i}.block.0.conv1.weight`)?.[0]);
  let ch = vq.get('encoder.conv_in.weight')?.[0];
  if (ch === undefined && levelCh.length && levelCh.every((x) => x !== undefined)) {
    const g = (levelCh as number[]).reduce(gcd);
    // Without the encoder, ch and ch_mult[0] are not separable: prefer a preset's ch when it divides all.
    ch =
      Object.values(PRESETS)
        .map((p) => p.vq.ch)
        .find((c) => (levelCh as number[]).every((x) => x % c === 0) && g % c === 0) ?? g;
  }
  const upBlocks = countIndexed(vq.keys(), 'decoder.up.0.block.');
  return {
    encDim,
    decDim,
    encDepth: countIndexed(mae.keys(), 'blocks.'),
    decDepth: countIndexed(mae.keys(), 'decoder_blocks.'),
    mlpRatio: fc1 !== undefined && encDim ? fc1 / encDim : undefined,
    vocab: mae.get('decoder_pred.weight')?.[0],
    vq: {
      nEmbed: vq.get('quantize.embedding.weight')?.[0],
      embedDim: vq.get('quantize.embedding.weight')?.[1],
      zChannels: vq.get('post_quant_conv.weight')?.[0],
      ch,
      chMult: ch && levelCh.every((x) => x !== undefined) && levels ? (levelCh as number[]).map((x) => x / ch) : undefined,
      numResBlocks: upBlocks ? upBlocks - 1 : undefined,
    },
  };
}

/** The differences between a config and inferred dims, as "field: config X, checkpoint Y" lines. */
export function dimMismatches(c: ModelConfig, d: InferredDims): string[] {
  const out: string[] = [];
  const cmp = (name: string, want: unknown, got: unknown) => {
    if (got !== undefined && JSON.stringify(want) !== JSON.stringify(got))
      out.push(`${name}: config ${JSON.stringify(want)}, checkpoint ${JSON.stringify(got)}`);
  };
  cmp('encDim', c.encDim, d.encDim);
  cmp('encDepth', c.encDepth, d.encDepth);
  cmp('decDim', c.decDim, d.decDim);
  cmp('decDepth', c.decDepth, d.decDepth);
  cmp('mlpRatio', c.mlpRatio, d.mlpRatio);
  cmp('vq.nEmbed (decoder_pred rows)', c.vq.nEmbed, d.vocab);
  cmp('vq.nEmbed', c.vq.nEmbed, d.vq.nEmbed);
  cmp('vq.embedDim', c.vq.embedDim, d.vq.embedDim);
  cmp('vq.zChannels', c.vq.zChannels, d.vq.zChannels);
  if (d.vq.ch !== undefined && d.vq.chMult) {
    cmp(
      'vq.ch x vq.chMult',
      c.vq.chMult.map((m) => m * c.vq.ch),
      d.vq.chMult.map((m) => m * (d.vq.ch as number)),
    );
  }
  cmp('vq.numResBlocks', c.vq.numResBlocks, d.vq.numResBlocks);
  return out;
}

/**
 * The config of a checkpoint: the preset whose shape-determined fields all match `d` (heads, groups
 * and eps are taken from it). Throws naming the inferred dims when no preset matches.
 */
export function inferConfig(d: InferredDims, source: string): ModelConfig {
  for (const p of Object.values(PRESETS)) {
    if (dimMismatches(p, d).length === 0 && d.encDim !== undefined && d.decDim !== undefined) return structuredClone(p);
  }
  const dims = { encDim: d.encDim, encDepth: d.encDepth, decDim: d.decDim, decDepth: d.decDepth, mlpRatio: d.mlpRatio, vocab: d.vocab, vq: d.vq };
  throw new InputError(
    `${source}: no preset matches the checkpoint's shapes ${JSON.stringify(dims)}; head counts cannot be inferred from shapes, so pass a config (preset name or JSON file)`,
  );
}
