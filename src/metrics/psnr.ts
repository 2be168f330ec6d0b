// PSNR on 8-bit pixels: 10 log10(255^2 / MSE), MSE over all 3x111x111 values in [0,255].
// Not in the reference (which reports normalised MSE); offered because users compare with it.
import { CROP_BYTES, checkCrops } from './crop.js';

/** Infinity when the crops are identical. */
export function psnr(gt: Uint8Array, pred: Uint8Array): number {
  checkCrops('psnr', gt, pred);
  let sum = 0;
  for (let i = 0; i < CROP_BYTES; i++) {
    const d = (gt[i] as number) - (pred[i] as number);
    sum += d * d;
  }
  if (sum === 0) return Number.POSITIVE_INFINITY;
  return 10 * Math.log10((255 * 255) / (sum / CROP_BYTES));
}
