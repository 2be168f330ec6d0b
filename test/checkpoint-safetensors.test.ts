// The safetensors writer/reader: byte layout per the format (checked by an independent Python parser),
// alignment of every tensor, atomic writes, and validation of malformed files.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors, readSafetensorsHeader, type SafeTensor, SafetensorsWriter, writeSafetensors } from '../src/checkpoint/safetensors.js';
import { PYTHON, tempDir } from './fixtures/torch-fixtures.js';

let dir = '';
let cleanup = () => {};
beforeAll(() => ({ dir, cleanup } = tempDir('st')));
afterAll(() => cleanup());

const sample = (): Record<string, SafeTensor> => ({
  u8: { dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 255]) },
  bf: { dtype: 'BF16', shape: [3], data: new Uint16Array([0x3f80, 0xc000, 0x7fc0]) },
  f32: { dtype: 'F32', shape: [2, 3], data: new Float32Array([1.5, -2, 3, 0, -0, 1e-42]) },
  i32: { dtype: 'I32', shape: [1], data: new Int32Array([-7]) },
  scalar: { dtype: 'F32', shape: [], data: new Float32Array([42]) },
  empty: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
  i64: { dtype: 'I64', shape: [2], data: new BigInt64Array([-1n, 2n ** 40n]) },
});

describe('safetensors', () => {
  it('round-trips every dtype with metadata; every tensor is aligned to its element size', () => {
    const p = join(dir, 'a.safetensors');
    const bytes = writeSafetensors(p, sample(), { vtv_format: '1', note: 'ü' });
    expect(readFileSync(p).length).toBe(bytes);
    const { metadata, tensors } = readSafetensors(p);
    expect(metadata).toEqual({ vtv_format: '1', note: 'ü' });
    for (const [k, t] of Object.entries(sample())) {
      const got = tensors.get(k) as SafeTensor;
      expect(got.dtype).toBe(t.dtype);
      expect(got.shape).toEqual(t.shape);
      expect(Array.from(got.data as ArrayLike<number>)).toEqual(Array.from(t.data as ArrayLike<number>));
    }
    const h = readSafetensorsHeader(p);
    expect(h.dataStart % 8).toBe(0);
    for (const [k, t] of h.tensors) expect(t.begin % ({ F32: 4, I32: 4, I64: 8, BF16: 2, U8: 1 } as Record<string, number>)[t.dtype], k).toBe(0);
  });

  it('is readable by an independent parser of the format (Python struct + json + numpy)', () => {
    const p = join(dir, 'b.safetensors');
    writeSafetensors(p, sample(), { vtv_config: '{"a":1}' });
    const script = `
import json, struct, sys, numpy as np
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
assert (8 + n) % 8 == 0, n
h = json.loads(b[8:8 + n])
meta = h.pop('__metadata__')
spans = sorted(v['data_offsets'] for v in h.values())
assert spans[0][0] == 0 and all(a[1] == c[0] for a, c in zip(spans, spans[1:])) and 8 + n + spans[-1][1] == len(b)
f = h['f32']; lo, hi = f['data_offsets']
print(json.dumps({'meta': meta, 'f32': np.frombuffer(b[8 + n + lo:8 + n + hi], '<f4').reshape(f['shape']).tolist(), 'dtypes': {k: v['dtype'] for k, v in h.items()}}))`;
    const out = JSON.parse(execFileSync(PYTHON, ['-c', script, p], { encoding: 'utf8' }));
    expect(out.meta).toEqual({ vtv_config: '{"a":1}' });
    expect(out.f32).toEqual([
      [1.5, -2, 3],
      [0, -0, Math.fround(1e-42)],
    ]);
    expect(out.dtypes).toEqual({ u8: 'U8', bf: 'BF16', f32: 'F32', i32: 'I32', scalar: 'F32', empty: 'F32', i64: 'I64' });
  });

  it('writes atomically: no file until close, nothing left after abort or a failed write', () => {
    const p = join(dir, 'c.safetensors');
    const w = new SafetensorsWriter(p, { x: { dtype: 'F32', shape: [2] } });
    expect(existsSync(p)).toBe(false);
    expect(readdirSync(dir).some((n) => n.startsWith(`c.safetensors.tmp-${process.pid}`))).toBe(true);
    expect(() => w.write('x', new Float32Array(3))).toThrow(/has 12 bytes, the header says 8/);
    w.abort();
    expect(readdirSync(dir).filter((n) => n.startsWith('c.safetensors'))).toEqual([]);
    expect(() => writeSafetensors(p, { x: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(/needs 3 elements, data has 2/);
    expect(readdirSync(dir).filter((n) => n.startsWith('c.safetensors'))).toEqual([]);
  });

  it('rejects malformed files naming the problem', () => {
    const p = join(dir, 'd.safetensors');
    writeSafetensors(p, { a: { dtype: 'F32', shape: [4], data: new Float32Array(4) }, b: { dtype: 'F32', shape: [2], data: new Float32Array(2) } });
    const good = readFileSync(p);
    writeFileSync(join(dir, 'short.st'), good.subarray(0, good.length - 4));
    expect(() => readSafetensors(join(dir, 'short.st'))).toThrow(/data_offsets .* do not fit/);
    writeFileSync(join(dir, 'tiny.st'), good.subarray(0, 5));
    expect(() => readSafetensors(join(dir, 'tiny.st'))).toThrow(/too short/);
    const n = Number(good.readBigUInt64LE(0));
    const hdr = JSON.parse(good.subarray(8, 8 + n).toString());
    hdr.b.data_offsets = [20, 28];
    hdr.a.data_offsets = [0, 16];
    const text = Buffer.from(JSON.stringify(hdr).padEnd(n, ' '));
    writeFileSync(join(dir, 'hole.st'), Buffer.concat([good.subarray(0, 8), text, good.subarray(8 + n), Buffer.alloc(4)]));
    expect(() => readSafetensors(join(dir, 'hole.st'))).toThrow(/tensor 'b' starts at 20, expected 16/);
    writeFileSync(join(dir, 'json.st'), Buffer.concat([good.subarray(0, 8), Buffer.from('{'.padEnd(n, 'x')), good.subarray(8 + n)]));
    expect(() => readSafetensors(join(dir, 'json.st'))).toThrow(/header is not JSON/);
  });
});
