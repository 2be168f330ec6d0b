// End-to-end `vtv convert` on real torch.save files (Debian python3-torch) with the real key names at
// the tiny preset's shapes: values must match the fixture's numpy dumps bit for bit.
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertCheckpoints } from '../src/checkpoint/convert.js';
import { maeKeys, vqDecodeKeys, vqEncodeKeys } from '../src/checkpoint/keys.js';
import type { InertObject } from '../src/checkpoint/pickle.js';
import { readSafetensors, readSafetensorsHeader } from '../src/checkpoint/safetensors.js';
import { TorchCheckpoint } from '../src/checkpoint/torch-checkpoint.js';
import { TensorRef } from '../src/checkpoint/torch-globals.js';
import { preset } from '../src/config.js';
import { type Expected, loadExpected, makeTorchCheckpoints, tempDir } from './fixtures/torch-fixtures.js';

let dir = '';
let cleanup = () => {};
let want: Expected;
const tiny = preset('tiny');
const f = (name: string) => join(dir, name);

beforeAll(() => {
  ({ dir, cleanup } = tempDir('convert'));
  makeTorchCheckpoints(dir, tiny);
  want = loadExpected(dir);
});
afterAll(() => cleanup());

function engineKeys(encoder: boolean): string[] {
  return [
    ...maeKeys(tiny).keys(),
    ...[...vqDecodeKeys(tiny).keys()].map((k) => `vae.${k}`),
    ...(encoder ? [...vqEncodeKeys(tiny).keys()].map((k) => `vae.${k}`) : []),
  ];
}

/** Compares every tensor of `out` with the fixture's dump; `ckptVq` reads the VQGAN from last.ckpt's copy. */
function expectValues(out: string, dtype: 'fp32' | 'bf16', ckptVq: boolean): void {
  const { tensors } = readSafetensors(out);
  for (const [k, t] of tensors) {
    const ref = ckptVq && k.startsWith('vae.') ? `ckpt:${k}` : k;
    expect(t.shape, k).toEqual(want.shape(ref));
    if (dtype === 'fp32') {
      expect(t.dtype).toBe('F32');
      // Compare bit patterns so NaN, -0 and subnormals must match exactly too.
      const got = new Uint32Array((t.data as Float32Array).buffer, t.data.byteOffset, t.data.length);
      const exp = want.f32(ref);
      const expBits = new Uint32Array(exp.buffer, exp.byteOffset, exp.length);
      expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(expBits.buffer, expBits.byteOffset, expBits.byteLength)), k).toBe(true);
    } else {
      expect(t.dtype).toBe('BF16');
      const exp = want.bf16(ref);
      const got = t.data as Uint16Array;
      // Any NaN pattern is a NaN: torch's vectorised path writes 0xffff, its scalar path 0x7fc0.
      const isNaN16 = (v: number) => (v & 0x7f80) === 0x7f80 && (v & 0x7f) !== 0;
      const mismatch = got.findIndex((v, i) => v !== exp[i] && !(isNaN16(v) && isNaN16(exp[i])));
      expect(mismatch, `${k} first mismatch`).toBe(-1);
    }
  }
}

describe('convertCheckpoints on release-like files', () => {
  it('converts a .pth with vae.*, optimizer, scaler and args (fp32): all keys, exact values', async () => {
    const out = f('a.safetensors');
    const s = await convertCheckpoints({ mae: f('mae.pth'), out });
    expect(s.warnings).toEqual([]);
    expect(s.encoder).toBe(true);
    expect(s.config).toEqual(tiny);
    const h = readSafetensorsHeader(out);
    expect([...h.tensors.keys()].sort()).toEqual(engineKeys(true).sort());
    expect(s.keys).toBe(engineKeys(true).length);
    expect(JSON.parse(h.metadata.vtv_config)).toEqual(tiny);
    expect(h.metadata.vtv_format).toBe('1');
    expect(h.metadata.source).toBe('mae.pth');
    expectValues(out, 'fp32', false);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('writes bf16 rounded to nearest even, as torch does (ties, subnormals, inf, NaN)', async () => {
    const out = f('b.safetensors');
    const s = await convertCheckpoints({ mae: f('mae.pth'), out, dtype: 'bf16' });
    expect(s.dtype).toBe('bf16');
    expectValues(out, 'bf16', false);
  });

  it('reads pickle protocol 4 the same way', async () => {
    const out = f('p4.safetensors');
    await convertCheckpoints({ mae: f('mae_p4.pth'), out });
    expectValues(out, 'fp32', false);
  });

  it('takes the VQGAN from a Lightning last.ckpt, dropping loss.* and ignoring its hparams objects', async () => {
    const out = f('c.safetensors');
    const s = await convertCheckpoints({ mae: f('mae_novae.pth'), vqgan: f('last.ckpt'), out });
    expect(s.warnings).toEqual([]);
    expect([...readSafetensorsHeader(out).tensors.keys()].sort()).toEqual(engineKeys(true).sort());
    expectValues(out, 'fp32', true);
    expect(readSafetensorsHeader(out).metadata.source).toBe('mae_novae.pth + last.ckpt');
  });

  it('accepts a bare state dict', async () => {
    const out = f('bare.safetensors');
    await convertCheckpoints({ mae: f('mae_bare.pth'), vqgan: f('last.ckpt'), out });
    expectValues(out, 'fp32', true);
  });

  it("prefers the .pth's vae.* over last.ckpt's duplicates, with a warning; prefer: 'ckpt' reverses it", async () => {
    const out = f('d.safetensors');
    const s = await convertCheckpoints({ mae: f('mae.pth'), vqgan: f('last.ckpt'), out });
    expect(s.warnings.join('\n')).toMatch(/in both files; used .*mae\.pth's, ignored .*last\.ckpt's duplicate/);
    expectValues(out, 'fp32', false);
    const s2 = await convertCheckpoints({ mae: f('mae.pth'), vqgan: f('last.ckpt'), out, prefer: 'ckpt', overwrite: true });
    expect(s2.warnings.join('\n')).toMatch(/used .*last\.ckpt's, ignored .*mae\.pth's/);
    expectValues(out, 'fp32', true);
  });

  it('accepts an explicit config by preset name or JSON file, and refuses a mismatching one', async () => {
    const out = f('e.safetensors');
    expect((await convertCheckpoints({ mae: f('mae.pth'), out, config: 'tiny' })).config).toEqual(tiny);
    const custom = { ...tiny, name: 'tiny-8-heads', encHeads: 8 };
    writeFileSync(f('cfg.json'), JSON.stringify(custom));
    const s = await convertCheckpoints({ mae: f('mae.pth'), out, config: f('cfg.json'), overwrite: true });
    expect(JSON.parse(readSafetensorsHeader(out).metadata.vtv_config)).toEqual(custom);
    expect(s.config.encHeads).toBe(8);
    await expect(convertCheckpoints({ mae: f('mae.pth'), out, config: 'mae-vqgan-vit-large', overwrite: true })).rejects.toThrow(
      /does not match config 'mae-vqgan-vit-large': encDim: config 1024, checkpoint 64/,
    );
    await expect(convertCheckpoints({ mae: f('mae.pth'), out, config: 'nope', overwrite: true })).rejects.toThrow(/neither a preset/);
  });
});

describe('TorchCheckpoint', () => {
  it('reads every tensor exactly also when views are read one outer slice at a time', () => {
    for (const maxReadBytes of [200, 1 << 30]) {
      const ck = TorchCheckpoint.open(f('mae.pth'), { maxReadBytes });
      try {
        const model = (ck.root as Map<string, unknown>).get('model') as Map<string, TensorRef>;
        for (const [k, ref] of model) {
          if (k.startsWith('vae.loss.')) continue;
          const got = ck.readF32(ref, k);
          const exp = want.f32(k);
          expect(got.length, k).toBe(exp.length);
          expect(
            got.every((v, i) => Object.is(v, exp[i]) || (Number.isNaN(v) && Number.isNaN(exp[i]))),
            `${k} (maxReadBytes ${maxReadBytes})`,
          ).toBe(true);
        }
      } finally {
        ck.close();
      }
    }
  });

  it('exposes the non-model entries as inert data (optimizer, scaler, args)', () => {
    const ck = TorchCheckpoint.open(f('mae.pth'));
    try {
      const root = ck.root as Map<string, unknown>;
      expect(root.get('epoch')).toBe(3499);
      expect((root.get('scaler') as Map<string, unknown>).get('_growth_tracker')).toBe(17);
      const state = ((root.get('optimizer') as Map<string, unknown>).get('state') as Map<number, Map<string, unknown>>).get(0);
      expect(state?.get('exp_avg')).toBeInstanceOf(TensorRef);
      const args = root.get('args') as InertObject;
      expect(args.cls).toBe('argparse.Namespace');
      // An unknown class outside the model entry stays inert data and does not block conversion.
      expect(((args.state as Map<string, unknown>).get('note') as InertObject).cls).toBe('__main__.Unknown');
    } finally {
      ck.close();
    }
  });
});

describe('convertCheckpoints refuses bad input with clear messages', () => {
  const convert = (mae: string, extra: Partial<Parameters<typeof convertCheckpoints>[0]> = {}) =>
    convertCheckpoints({ mae: f(mae), out: f('bad.safetensors'), ...extra });

  it('lists the first missing keys and the source file', async () => {
    await expect(convert('missing_keys.pth')).rejects.toThrow(
      /missing 3 key\(s\) for config 'tiny' in .*missing_keys\.pth: blocks\.2\.attn\.proj\.bias, decoder_pred\.weight, vae\.decoder\.up\.1\.upsample\.conv\.weight/,
    );
    await expect(convert('missing_block.pth', { config: 'tiny' })).rejects.toThrow(/decDepth: config 2, checkpoint 1/);
    await expect(convert('mae_novae.pth')).rejects.toThrow(/missing \d+ key\(s\).*vae\.quantize\.embedding\.weight.*pass the VQGAN last\.ckpt/);
    expect(existsSync(f('bad.safetensors'))).toBe(false);
  });

  it('skips an incomplete VQGAN encoder with a warning', async () => {
    const s = await convert('partial_encoder.pth', { out: f('pe.safetensors') });
    expect(s.encoder).toBe(false);
    expect(s.warnings.join('\n')).toMatch(/VQGAN encoder is incomplete \(\d+ of \d+ keys; missing e\.g\. encoder\.conv_in\.weight\); not written/);
    expect([...readSafetensorsHeader(f('pe.safetensors')).tensors.keys()].sort()).toEqual(engineKeys(false).sort());
  });

  it('refuses the legacy (non-zip) torch format', async () => {
    await expect(convert('legacy.pth')).rejects.toThrow(/legacy \(non-zip\) torch format is not supported; re-save with torch>=1\.6/);
  });

  it('refuses a model entry holding an object of an unknown class, naming it', async () => {
    await expect(convert('unknown_in_model.pth')).rejects.toThrow(/model\.blocks\.0\.extra is an object of class '__main__\.Unknown'/);
  });

  it('refuses pickles naming os.system or eval without running them', async () => {
    await expect(convert('evil_system.pth')).rejects.toThrow(/refused: the pickle names the global 'posix\.system'/);
    await expect(convert('evil_eval.pth')).rejects.toThrow(/refused: the pickle names the global 'builtins\.eval'/);
    expect(existsSync(f('PWNED'))).toBe(false);
  });

  it('reports truncated files (cut at many points) with the file named', async () => {
    const whole = readFileSync(f('mae.pth'));
    const cuts = [0, 3, 10, 100, 2000, whole.length >> 2, whole.length >> 1, whole.length - 200, whole.length - 23, whole.length - 1];
    for (const cut of cuts) {
      const p = f(`cut-${cut}.pth`);
      writeFileSync(p, whole.subarray(0, cut));
      await expect(convertCheckpoints({ mae: p, out: f('bad.safetensors') }), `cut at ${cut}`).rejects.toThrow(
        new RegExp(`cut-${cut}\\.pth.*(not a PyTorch checkpoint|not a zip archive|truncated|end-of-central-directory)`),
      );
    }
    await expect(convert('short_pickle.pth')).rejects.toThrow(/data\.pkl: truncated pickle/);
    await expect(convert('short_storage.pth')).rejects.toThrow(/tensor '.+' \(offset \d+, size .*\) needs \d+ bytes of storage '\d+', which has \d+/);
  });

  it('detects corrupted bytes in data.pkl and in tensor storages', async () => {
    const layout = JSON.parse(readFileSync(f('layout.json'), 'utf8'));
    const whole = readFileSync(f('mae.pth'));
    for (const at of [0, 1, layout.pkl_size >> 1, layout.pkl_size - 1]) {
      const bytes = Buffer.from(whole);
      bytes[layout.pkl_start + at] ^= 0x5a;
      const p = f(`pkl-${at}.pth`);
      writeFileSync(p, bytes);
      await expect(convertCheckpoints({ mae: p, out: f('bad.safetensors') })).rejects.toThrow(/data\.pkl' fails its CRC-32 check/);
    }
    const bytes = Buffer.from(whole);
    // Inside storage 0, which cls_token and pos_embed share and each read only in part.
    bytes[layout.pkl_start + layout.pkl_size + 4096] ^= 0xff;
    writeFileSync(f('data-corrupt.pth'), bytes);
    await expect(convertCheckpoints({ mae: f('data-corrupt.pth'), out: f('bad.safetensors') })).rejects.toThrow(
      /storage '.+\/data\/0' of tensor '(cls_token|pos_embed)' fails its CRC-32 check/,
    );
    // Inside the last storage entry (read whole).
    const last = Buffer.from(whole);
    last[whole.length - 2000] ^= 0xff;
    writeFileSync(f('data-corrupt2.pth'), last);
    await expect(convertCheckpoints({ mae: f('data-corrupt2.pth'), out: f('bad.safetensors') })).rejects.toThrow(/CRC-32|corrupt/);
  });

  it('leaves no partial output when a conversion fails', async () => {
    copyFileSync(f('short_storage.pth'), f('s2.pth'));
    await expect(convertCheckpoints({ mae: f('s2.pth'), out: f('never.safetensors') })).rejects.toThrow();
    expect(readdirSync(dir).filter((n) => n.startsWith('never'))).toEqual([]);
  });
});
