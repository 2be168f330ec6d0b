// SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255,
// population (biased) statistics, computed per RGB channel over the "valid" window positions
// (no padding: 101x101 windows on a 111x111 crop, as Wang's MATLAB filter2(..., 'valid')), then
// averaged over positions and over the three channels. Not in the reference; offered for users.
import { CROP, CROP_PLANE, checkCrops } from './crop.js';

const WIN = 11;
const SIGMA = 1.5;
const C1 = (0.01 * 255) ** 2;
const C2 = (0.03 * 255) ** 2;

/** The normalised 1-D Gaussian; the 2-D window is its outer product. */
function gaussian1d(): Float64Array {
  const g = new Float64Array(WIN);
  const r = (WIN - 1) / 2;
  let s = 0;
  for (let i = 0; i < WIN; i++) {
    g[i] = Math.exp(-((i - r) ** 2) / (2 * SIGMA * SIGMA));
    s += g[i] as number;
  }
  for (let i = 0; i < WIN; i++) g[i] = (g[i] as number) / s;
  return g;
}
const G = gaussian1d();
const OUT = CROP - WIN + 1;

/** Separable valid Gaussian filter of a CROPxCROP plane -> OUTxOUT. */
function filterValid(src: Float64Array): Float64Array {
  const tmp = new Float64Array(CROP * OUT);
  for (let y = 0; y < CROP; y++) {
    for (let x = 0; x < OUT; x++) {
      let s = 0;
      for (let k = 0; k < WIN; k++) s += (G[k] as number) * (src[y * CROP + x + k] as number);
      tmp[y * OUT + x] = s;
    }
  }
  const out = new Float64Array(OUT * OUT);
  for (let y = 0; y < OUT; y++) {
    for (let x = 0; x < OUT; x++) {
      let s = 0;
      for (let k = 0; k < WIN; k++) s += (G[k] as number) * (tmp[(y + k) * OUT + x] as number);
      out[y * OUT + x] = s;
    }
  }
  return out;
}

function ssimPlane(a: Float64Array, b: Float64Array): number {
  const mu1 = filterValid(a);
  const mu2 = filterValid(b);
  const s11 = filterValid(a.map((v) => v * v));
  const s22 = filterValid(b.map((v) => v * v));
  const s12 = filterValid(a.map((v, i) => v * (b[i] as number)));
  let sum = 0;
  for (let i = 0; i < OUT * OUT; i++) {
    const m1 = mu1[i] as number;
    const m2 = mu2[i] as number;
    const v1 = (s11[i] as number) - m1 * m1;
    const v2 = (s22[i] as number) - m2 * m2;
    const cov = (s12[i] as number) - m1 * m2;
    sum += ((2 * m1 * m2 + C1) * (2 * cov + C2)) / ((m1 * m1 + m2 * m2 + C1) * (v1 + v2 + C2));
  }
  return sum / (OUT * OUT);
}

/** Mean SSIM over the three channels, in [-1, 1]; 1 iff the crops are identical. */
export function ssim(gt: Uint8Array, pred: Uint8Array): number {
  checkCrops('ssim', gt, pred);
  let total = 0;
  for (let c = 0; c < 3; c++) {
    const a = Float64Array.from(gt.subarray(c * CROP_PLANE, (c + 1) * CROP_PLANE));
    const b = Float64Array.from(pred.subarray(c * CROP_PLANE, (c + 1) * CROP_PLANE));
    total += ssimPlane(a, b);
  }
  return total / 3;
}
