// Engine key names and shapes: docs/method.md#model's counts and parameter totals for ViT-L, and agreement with the
// names the Python fixture derives independently from the taming/timm constructors.
import { describe, expect, it } from 'vitest';
import { inferConfig, inferDims } from '../src/checkpoint/infer-config.js';
import { maeKeys, vqDecodeKeys, vqEncodeKeys } from '../src/checkpoint/keys.js';
import { preset } from '../src/config.js';
import { pythonKeyShapes } from './fixtures/torch-fixtures.js';

const params = (m: Map<string, number[]>) => [...m.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);

describe('engine keys', () => {
  const large = preset('mae-vqgan-vit-large');

  it('matches docs/method.md#model for ViT-L: 398 MAE keys, 194 decoder tensors, parameter totals', () => {
    const mae = maeKeys(large);
    expect(mae.size).toBe(398);
    expect((params(mae) / 1e6).toFixed(2)).toBe('329.67');
    const dec = vqDecodeKeys(large);
    const decoderOnly = new Map([...dec].filter(([k]) => k.startsWith('decoder.')));
    expect(decoderOnly.size).toBe(194);
    expect((params(decoderOnly) / 1e6).toFixed(2)).toBe('42.45');
    const enc = vqEncodeKeys(large);
    const encoderOnly = new Map([...enc].filter(([k]) => k.startsWith('encoder.')));
    expect((params(encoderOnly) / 1e6).toFixed(2)).toBe('29.30');
    const small = ['quantize.embedding.weight', 'post_quant_conv.weight', 'post_quant_conv.bias', 'quant_conv.weight', 'quant_conv.bias'];
    expect((small.reduce((a, k) => a + ((dec.get(k) ?? enc.get(k)) as number[]).reduce((x, y) => x * y, 1), 0) / 1e6).toFixed(2)).toBe('0.39');
    expect(dec.get('decoder.up.3.block.0.nin_shortcut.weight')).toEqual([256, 512, 1, 1]);
    expect(dec.get('decoder.up.1.block.0.nin_shortcut.weight')).toEqual([128, 256, 1, 1]);
    expect(dec.get('decoder.mid.attn_1.q.weight')).toEqual([512, 512, 1, 1]);
    expect(dec.get('decoder.conv_out.weight')).toEqual([3, 128, 3, 3]);
  });

  for (const name of ['mae-vqgan-vit-large', 'tiny']) {
    it(`agrees with the Python fixture's names and shapes (${name})`, () => {
      const c = preset(name);
      const py = pythonKeyShapes(c);
      expect(Object.fromEntries(maeKeys(c))).toEqual(py.mae);
      const vq = Object.fromEntries([...vqDecodeKeys(c), ...vqEncodeKeys(c)]);
      const pyVq = Object.fromEntries(Object.entries(py.vq).filter(([k]) => !k.startsWith('loss.')));
      expect(vq).toEqual(pyVq);
    });
  }

  it('infers each preset back from its shapes (heads come from the matching preset)', () => {
    for (const name of ['mae-vqgan-vit-large', 'tiny']) {
      const c = preset(name);
      const vq = new Map([...vqDecodeKeys(c), ...vqEncodeKeys(c)]);
      expect(inferConfig(inferDims(maeKeys(c), vq), 'x')).toEqual(c);
      // Without the encoder, ch and ch_mult still come out right.
      expect(inferConfig(inferDims(maeKeys(c), vqDecodeKeys(c)), 'x')).toEqual(c);
    }
    const odd = { ...preset('tiny'), encDim: 48 };
    expect(() => inferConfig(inferDims(maeKeys(odd), vqDecodeKeys(odd)), 'ck.pth')).toThrow(/ck\.pth: no preset matches .*"encDim":48.*pass a config/);
  });
});
