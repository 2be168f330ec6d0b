// The engine's weight names and shapes for a config: the MAE state-dict keys exactly as the released checkpoint has them
// them, and the taming VQGAN keys under "vae." (decoder and codebook required, encoder optional),
// derived from the taming Encoder/Decoder constructors so they hold for any ch/ch_mult/num_res_blocks.
import { GRID, type ModelConfig, PATCH } from '../config.js';

export type Shape = number[];

const TOKENS = GRID * GRID + 1;

function block(prefix: string, dim: number, hidden: number, out: Map<string, Shape>): void {
  out.set(`${prefix}.norm1.weight`, [dim]);
  out.set(`${prefix}.norm1.bias`, [dim]);
  out.set(`${prefix}.attn.qkv.weight`, [3 * dim, dim]);
  out.set(`${prefix}.attn.qkv.bias`, [3 * dim]);
  out.set(`${prefix}.attn.proj.weight`, [dim, dim]);
  out.set(`${prefix}.attn.proj.bias`, [dim]);
  out.set(`${prefix}.norm2.weight`, [dim]);
  out.set(`${prefix}.norm2.bias`, [dim]);
  out.set(`${prefix}.mlp.fc1.weight`, [hidden, dim]);
  out.set(`${prefix}.mlp.fc1.bias`, [hidden]);
  out.set(`${prefix}.mlp.fc2.weight`, [dim, hidden]);
  out.set(`${prefix}.mlp.fc2.bias`, [dim]);
}

/** MAE keys in state-dict order (398 for ViT-L). */
export function maeKeys(c: ModelConfig): Map<string, Shape> {
  const k = new Map<string, Shape>();
  k.set('cls_token', [1, 1, c.encDim]);
  k.set('pos_embed', [1, TOKENS, c.encDim]);
  k.set('patch_embed.proj.weight', [c.encDim, 3, PATCH, PATCH]);
  k.set('patch_embed.proj.bias', [c.encDim]);
  for (let i = 0; i < c.encDepth; i++) block(`blocks.${i}`, c.encDim, c.encDim * c.mlpRatio, k);
  k.set('norm.weight', [c.encDim]);
  k.set('norm.bias', [c.encDim]);
  k.set('decoder_embed.weight', [c.decDim, c.encDim]);
  k.set('decoder_embed.bias', [c.decDim]);
  k.set('mask_token', [1, 1, c.decDim]);
  k.set('decoder_pos_embed', [1, TOKENS, c.decDim]);
  for (let i = 0; i < c.decDepth; i++) block(`decoder_blocks.${i}`, c.decDim, c.decDim * c.mlpRatio, k);
  k.set('decoder_norm.weight', [c.decDim]);
  k.set('decoder_norm.bias', [c.decDim]);
  k.set('decoder_pred.weight', [c.vq.nEmbed, c.decDim]);
  k.set('decoder_pred.bias', [c.vq.nEmbed]);
  return k;
}

const conv = (o: number, i: number, k: number): Shape => [o, i, k, k];

function resnet(p: string, cin: number, cout: number, k: Map<string, Shape>): void {
  k.set(`${p}.norm1.weight`, [cin]);
  k.set(`${p}.norm1.bias`, [cin]);
  k.set(`${p}.conv1.weight`, conv(cout, cin, 3));
  k.set(`${p}.conv1.bias`, [cout]);
  k.set(`${p}.norm2.weight`, [cout]);
  k.set(`${p}.norm2.bias`, [cout]);
  k.set(`${p}.conv2.weight`, conv(cout, cout, 3));
  k.set(`${p}.conv2.bias`, [cout]);
  if (cin !== cout) {
    k.set(`${p}.nin_shortcut.weight`, conv(cout, cin, 1));
    k.set(`${p}.nin_shortcut.bias`, [cout]);
  }
}

function attn(p: string, c: number, k: Map<string, Shape>): void {
  k.set(`${p}.norm.weight`, [c]);
  k.set(`${p}.norm.bias`, [c]);
  for (const n of ['q', 'k', 'v', 'proj_out']) {
    k.set(`${p}.${n}.weight`, conv(c, c, 1));
    k.set(`${p}.${n}.bias`, [c]);
  }
}

/**
 * VQGAN keys needed to decode tokens (without the "vae." prefix): codebook, post_quant_conv and the
 * decoder (194 tensors for f16/1024). Attention sits at the lowest resolution only (docs/method.md#vqgan).
 */
export function vqDecodeKeys(c: ModelConfig): Map<string, Shape> {
  const v = c.vq;
  const L = v.chMult.length;
  const k = new Map<string, Shape>();
  k.set('quantize.embedding.weight', [v.nEmbed, v.embedDim]);
  k.set('post_quant_conv.weight', conv(v.zChannels, v.embedDim, 1));
  k.set('post_quant_conv.bias', [v.zChannels]);
  let cin = v.ch * v.chMult[L - 1];
  k.set('decoder.conv_in.weight', conv(cin, v.zChannels, 3));
  k.set('decoder.conv_in.bias', [cin]);
  resnet('decoder.mid.block_1', cin, cin, k);
  attn('decoder.mid.attn_1', cin, k);
  resnet('decoder.mid.block_2', cin, cin, k);
  for (let i = L - 1; i >= 0; i--) {
    const cout = v.ch * v.chMult[i];
    for (let b = 0; b <= v.numResBlocks; b++) {
      resnet(`decoder.up.${i}.block.${b}`, cin, cout, k);
      cin = cout;
      if (i === L - 1) attn(`decoder.up.${i}.attn.${b}`, cin, k);
    }
    if (i !== 0) {
      k.set(`decoder.up.${i}.upsample.conv.weight`, conv(cin, cin, 3));
      k.set(`decoder.up.${i}.upsample.conv.bias`, [cin]);
    }
  }
  k.set('decoder.norm_out.weight', [cin]);
  k.set('decoder.norm_out.bias', [cin]);
  k.set('decoder.conv_out.weight', conv(3, cin, 3));
  k.set('decoder.conv_out.bias', [3]);
  return k;
}

/** VQGAN encoder keys (optional: only training targets use them), without the "vae." prefix. */
export function vqEncodeKeys(c: ModelConfig): Map<string, Shape> {
  const v = c.vq;
  const L = v.chMult.length;
  const k = new Map<string, Shape>();
  k.set('encoder.conv_in.weight', conv(v.ch, 3, 3));
  k.set('encoder.conv_in.bias', [v.ch]);
  let cin = v.ch;
  for (let i = 0; i < L; i++) {
    const cout = v.ch * v.chMult[i];
    for (let b = 0; b < v.numResBlocks; b++) {
      resnet(`encoder.down.${i}.block.${b}`, cin, cout, k);
      cin = cout;
      if (i === L - 1) attn(`encoder.down.${i}.attn.${b}`, cin, k);
    }
    if (i !== L - 1) {
      k.set(`encoder.down.${i}.downsample.conv.weight`, conv(cin, cin, 3));
      k.set(`encoder.down.${i}.downsample.conv.bias`, [cin]);
    }
  }
  resnet('encoder.mid.block_1', cin, cin, k);
  attn('encoder.mid.attn_1', cin, k);
  resnet('encoder.mid.block_2', cin, cin, k);
  k.set('encoder.norm_out.weight', [cin]);
  k.set('encoder.norm_out.bias', [cin]);
  k.set('encoder.conv_out.weight', conv(v.zChannels, cin, 3));
  k.set('encoder.conv_out.bias', [v.zChannels]);
  k.set('quant_conv.weight', conv(v.embedDim, v.zChannels, 1));
  k.set('quant_conv.bias', [v.embedDim]);
  return k;
}

/** Top-level module names of a VQGAN state dict that the engine keeps (loss.* etc. are dropped). */
export const VQ_MODULES = ['quantize', 'post_quant_conv', 'decoder', 'encoder', 'quant_conv'];
