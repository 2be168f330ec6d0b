import { describe, expect, it } from 'vitest';
import { patchBitIndex, patchBytes, preset } from '../src/config.js';
import { VariableSpace, variableCount } from '../src/method/variables.js';

const large = preset('mae-vqgan-vit-large');
const tiny = preset('tiny');

describe('variable spaces (docs/method.md#variables)', () => {
  it('has the reference counts for ViT-L', () => {
    expect(variableCount(large, 0)).toBe(512);
    expect(variableCount(large, 1)).toBe(1152);
    expect(variableCount(large, 2)).toBe(24 * 16 * 50 + 8 * 16 * 99);
    expect(new VariableSpace(large, 2, 'zero-shot').count).toBe(31872);
    expect(new VariableSpace(large, 1, 'zero-shot').encoderCount).toBe(768);
  });

  it('maps granularity-1 indices exactly as intervention_utils does', () => {
    const s = new VariableSpace(large, 1, 'zero-shot');
    for (const i of [0, 1, 2, 31, 33, 767]) {
      const v = s.info[i]!;
      expect(v.layer).toBe(Math.floor(i / 32));
      expect(v.head).toBe(Math.floor((i % 32) / 2));
      expect(v.positions).toEqual(i % 2 === 0 ? [0] : Array.from({ length: 49 }, (_, k) => k + 1));
    }
    for (const i of [768, 769, 770, 771, 800, 1151]) {
      const a = i - 768;
      const v = s.info[i]!;
      expect(v.layer).toBe(24 + Math.floor(a / 48));
      expect(v.head).toBe(Math.floor((a % 48) / 3));
      const slot = a % 3;
      const q1 = [];
      const q2 = [];
      for (let r = 0; r < 7; r++) for (let c = 0; c < 7; c++) q1.push(r * 14 + c + 1), q2.push(r * 14 + 7 + c + 1);
      expect(v.positions).toEqual(slot === 0 ? [0] : slot === 1 ? q1 : q2);
    }
  });

  it('keeps the reduced positions unshifted in one-shot masks, as the reference does (it shifts only in zero-shot)', () => {
    for (const g of [1, 2] as const) {
      const z = new VariableSpace(large, g, 'zero-shot');
      const o = new VariableSpace(large, g, 'one-shot');
      expect(o.count).toBe(z.count);
      for (let v = 0; v < z.count; v++) expect(o.info[v]!.positions).toEqual(z.info[v]!.positions);
    }
    const o = new VariableSpace(large, 1, 'one-shot');
    // Encoder query slot: one-shot positions 1..49 (not 99..147).
    expect(o.info[1]!.positions[0]).toBe(1);
    expect(o.info[1]!.positions.at(-1)).toBe(49);
    expect(o.info[0]!.positions).toEqual([0]);
    // Decoder output slot of the last layer: last position 1+6*14+13 = 98 (not 196).
    expect(o.info[1151]!.positions.at(-1)).toBe(98);
    // The bits are those positions in the one-shot layout: variable 1 is layer 0, head 0.
    const bits = [...o.bitsOf(1)];
    expect(bits).toEqual(Array.from({ length: 49 }, (_, k) => patchBitIndex(large, 'one-shot', 0, 0, k + 1)));
    // The decoder's last variable sets bits in the one-shot decoder layout at positions up to 98 only.
    const last = [...o.bitsOf(1151)];
    expect(last.at(-1)).toBe(patchBitIndex(large, 'one-shot', 31, 15, 98));
    // Granularity 0 covers every position of the mode: it has no position mapping to shift.
    expect(new VariableSpace(large, 0, 'one-shot').info[0]!.positions.length).toBe(148);
  });

  it('granularity 0 covers every position of the mode, granularity 2 one each', () => {
    const g0 = new VariableSpace(tiny, 0, 'one-shot');
    expect(g0.info[0]!.positions.length).toBe(148);
    expect(g0.info[g0.count - 1]!.positions.length).toBe(197);
    const g2 = new VariableSpace(tiny, 2, 'zero-shot');
    const idx = tiny.encDepth * tiny.encHeads * 50 + 3; // decoder layer 0, head 0, position 3
    expect(g2.info[idx]).toMatchObject({ layer: tiny.encDepth, head: 0, positions: [3] });
  });

  it('builds per-sample masks equal to setting each triple bit one by one', () => {
    for (const [g, mode] of [
      [0, 'zero-shot'],
      [1, 'zero-shot'],
      [1, 'one-shot'],
      [2, 'zero-shot'],
    ] as const) {
      const s = new VariableSpace(tiny, g, mode);
      const B = 5;
      const choices = new Uint8Array(B * s.count);
      let x = 12345;
      for (let i = 0; i < choices.length; i++) choices[i] = ((x = (x * 1103515245 + 12345) >>> 0) >>> 16) % 3 === 0 ? 1 : 0;
      const masks = s.masks(choices, B);
      expect(masks.length).toBe(B * patchBytes(tiny, mode));
      for (let b = 0; b < B; b++) {
        const expected = new Uint8Array(s.maskBytes);
        for (const [l, h, p] of s.triples(choices.subarray(b * s.count, (b + 1) * s.count))) {
          const bit = patchBitIndex(tiny, mode, l, h, p);
          expected[bit >> 3]! |= 1 << (bit & 7);
        }
        expect(masks.subarray(b * s.maskBytes, (b + 1) * s.maskBytes)).toEqual(expected);
      }
      // All variables on: every bit of the mode is set exactly by granularities 0 and 2 (zero-shot).
      if (g !== 1 && mode === 'zero-shot') {
        const all = s.masks(new Uint8Array(s.count).fill(1), 1);
        let n = 0;
        for (const byte of all) for (let k = 0; k < 8; k++) n += (byte >> k) & 1;
        expect(n).toBe(tiny.encDepth * tiny.encHeads * 50 + tiny.decDepth * tiny.decHeads * 99);
      }
    }
  });

  it('rejects a bad granularity and a wrong-sized choice array', () => {
    expect(() => new VariableSpace(tiny, 3 as 1, 'zero-shot')).toThrow(/granularity/);
    const s = new VariableSpace(tiny, 1, 'zero-shot');
    expect(() => s.masks(new Uint8Array(3), 1)).toThrow(/choices/);
  });
});
