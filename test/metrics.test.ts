// Metrics on [3][111][111] crops: hand-computed cases, and SSIM against an independent numpy version.
import { afterAll, describe, expect, it } from 'vitest';
import { IMAGENET_MEAN, IMAGENET_STD } from '../src/data/canvas.js';
import { CROP_BYTES, foreground, iou, meanIoU, mse, psnr, ssim, taskLoss, taskMetric } from '../src/metrics/index.js';
import { PyRef, Rng } from './data-helpers.js';

const P = 111 * 111;
const py = new PyRef();
afterAll(() => py.dispose());

/** A crop with pixel i set to rgb where pred(i), else black. */
function crop(pred: (y: number, x: number) => boolean, rgb: [number, number, number] = [255, 255, 255]): Uint8Array {
  const out = new Uint8Array(CROP_BYTES);
  for (let i = 0; i < P; i++) {
    if (pred(Math.floor(i / 111), i % 111)) for (let c = 0; c < 3; c++) out[c * P + i] = rgb[c] as number;
  }
  return out;
}

describe('IoU (docs/method.md#metrics)', () => {
  it('rounds pixels to white iff R+G+B > 382.5', () => {
    const fg = foreground(crop(() => true, [128, 127, 127])); // 382 -> black
    expect(fg.every((v) => v === 0)).toBe(true);
    expect(foreground(crop(() => true, [128, 128, 127])).every((v) => v === 1)).toBe(true); // 383 -> white
    expect(foreground(crop(() => true, [255, 255, 0])).every((v) => v === 1)).toBe(true); // 510: yellow is nearer white
    expect(foreground(crop(() => true, [255, 100, 0])).every((v) => v === 0)).toBe(true); // 355
  });

  it('computes |A∧B|/|A∨B| per image', () => {
    const left = crop((_y, x) => x < 50); // 50 columns
    const right = crop((_y, x) => x >= 40); // 71 columns, overlap 10
    expect(iou(left, right)).toBeCloseTo(10 / 111, 12);
    expect(iou(left, left)).toBe(1);
    expect(
      iou(
        left,
        crop((_y, x) => x >= 50),
      ),
    ).toBe(0);
    // Grey predictions count by rounding: 200,200,200 is white.
    expect(
      iou(
        left,
        crop((_y, x) => x < 50, [200, 200, 200]),
      ),
    ).toBe(1);
  });

  it('returns 1 when both masks are empty (the reference would give NaN), 0 when only one is', () => {
    const empty = crop(() => false);
    expect(iou(empty, empty)).toBe(1);
    expect(
      iou(
        empty,
        crop((y) => y === 3),
      ),
    ).toBe(0);
  });

  it('averages per-image IoUs (not pooled)', () => {
    const big = crop(() => true);
    const small = crop((y, x) => y === 0 && x === 0);
    // Image 1: IoU 1; image 2: 1/12321. Pooled would be (12321+1)/(12321+12321) ≈ 0.5.
    expect(
      meanIoU([
        [big, big],
        [small, big],
      ]),
    ).toBeCloseTo((1 + 1 / P) / 2, 12);
    expect(() => meanIoU([])).toThrow(/no images/);
    expect(() => iou(new Uint8Array(10), big)).toThrow(/36963 bytes, got 10 and 36963/);
  });
});

describe('MSE in normalised space', () => {
  it('equals the mean squared difference of (v/255 - mean)/std over 3x111x111', () => {
    const rng = Rng.fromSeed(1);
    const a = new Uint8Array(CROP_BYTES).map(() => rng.int(0, 255));
    const b = new Uint8Array(CROP_BYTES).map(() => rng.int(0, 255));
    let ref = 0;
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < P; i++) {
        const na = ((a[c * P + i] as number) / 255 - (IMAGENET_MEAN[c] as number)) / (IMAGENET_STD[c] as number);
        const nb = ((b[c * P + i] as number) / 255 - (IMAGENET_MEAN[c] as number)) / (IMAGENET_STD[c] as number);
        ref += (na - nb) ** 2;
      }
    }
    expect(mse(a, b)).toBeCloseTo(ref / (3 * P), 12);
  });

  it('hand case: a difference of 51 in the red channel only', () => {
    const a = new Uint8Array(CROP_BYTES);
    const b = new Uint8Array(CROP_BYTES);
    b.fill(51, 0, P);
    // ((51/255)/0.229)^2 / 3
    expect(mse(a, b)).toBeCloseTo((0.2 / 0.229) ** 2 / 3, 12);
    expect(mse(a, a)).toBe(0);
  });

  it('task metric and loss by name', () => {
    const a = crop((_y, x) => x < 50);
    const b = crop((_y, x) => x >= 40);
    expect(taskMetric('iou')(a, b)).toBe(iou(a, b));
    expect(taskLoss('iou', a, b)).toBe(-iou(a, b));
    expect(taskLoss('mse', a, b)).toBe(mse(a, b));
  });
});

describe('PSNR', () => {
  it('is 10 log10(255^2 / MSE) on [0,255]', () => {
    const a = new Uint8Array(CROP_BYTES);
    const b = new Uint8Array(CROP_BYTES).fill(10); // MSE 100
    expect(psnr(a, b)).toBeCloseTo(10 * Math.log10(65025 / 100), 12);
    expect(psnr(a, a)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('SSIM (Gaussian 11x11, sigma 1.5, per channel, valid windows)', () => {
  it('is 1 for identical crops, symmetric, and lower for noisier copies', () => {
    const rng = Rng.fromSeed(2);
    const a = new Uint8Array(CROP_BYTES).map((_, i) => (i % 111) * 2);
    const noisy = (s: number) => a.map((v) => Math.max(0, Math.min(255, v + rng.int(-s, s))));
    const b1 = noisy(5);
    const b2 = noisy(40);
    expect(ssim(a, a)).toBeCloseTo(1, 12);
    expect(ssim(a, b1)).toBeCloseTo(ssim(b1, a), 12);
    expect(ssim(a, b1)).toBeGreaterThan(ssim(a, b2));
    expect(ssim(a, b2)).toBeLessThan(0.9);
  });

  it('hand case: constant crops, SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1)', () => {
    const a = new Uint8Array(CROP_BYTES).fill(100);
    const b = new Uint8Array(CROP_BYTES).fill(150);
    const c1 = (0.01 * 255) ** 2;
    expect(ssim(a, b)).toBeCloseTo((2 * 100 * 150 + c1) / (100 ** 2 + 150 ** 2 + c1), 10);
  });

  it('matches an independent numpy implementation', () => {
    const rng = Rng.fromSeed(3);
    const pairs = [0, 1, 2].map((k) => {
      const a = new Uint8Array(CROP_BYTES).map((_, i) => ((i % 111) + Math.floor(i / 111)) % 256);
      const b = a.map((v) => Math.max(0, Math.min(255, v + rng.int(-20 * (k + 1), 20 * (k + 1)))));
      return [a, b] as const;
    });
    for (const [a, b] of pairs) py.add({ op: 'ssim', a: py.file(a), b: py.file(b) });
    const res = py.run();
    pairs.forEach(([a, b], k) => {
      expect(ssim(a, b)).toBeCloseTo(res[k]?.ssim as number, 10);
    });
  });
});
