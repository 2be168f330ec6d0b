// IoU as the reference's loss_iou (docs/method.md#metrics): each pixel is rounded to the nearer of WHITE and BLACK
// by squared RGB distance (t = 0); (R-255)^2+(G-255)^2+(B-255)^2 < R^2+G^2+B^2 iff R+G+B > 382.5,
// so foreground = R+G+B > 382.5 (no integer pixel ties). IoU is per image; the dataset score is the
// mean of per-image IoUs (mIoU).
import { CROP_PLANE, checkCrops } from './crop.js';

/** Foreground map of a [3][111][111] crop: 1 where R+G+B > 382.5. */
export function foreground(crop: Uint8Array): Uint8Array {
  const out = new Uint8Array(CROP_PLANE);
  for (let i = 0; i < CROP_PLANE; i++) {
    out[i] = (crop[i] as number) + (crop[CROP_PLANE + i] as number) + (crop[2 * CROP_PLANE + i] as number) > 382.5 ? 1 : 0;
  }
  return out;
}

/**
 * |fg(gt) ∧ fg(pred)| / |fg(gt) ∨ fg(pred)|. When both are empty the reference computes 0/0 = NaN
 * (docs/method.md#metrics); we return 1.0 (a correct "nothing here" prediction) so means stay finite.
 */
export function iou(gt: Uint8Array, pred: Uint8Array): number {
  checkCrops('iou', gt, pred);
  const a = foreground(gt);
  const b = foreground(pred);
  let inter = 0;
  let union = 0;
  for (let i = 0; i < CROP_PLANE; i++) {
    inter += (a[i] as number) & (b[i] as number);
    union += (a[i] as number) | (b[i] as number);
  }
  return union === 0 ? 1 : inter / union;
}

/** Mean of per-image IoUs ("mIoU" as the reference computes it, not pooled over the dataset). */
export function meanIoU(pairs: Iterable<readonly [Uint8Array, Uint8Array]>): number {
  let sum = 0;
  let n = 0;
  for (const [gt, pred] of pairs) {
    sum += iou(gt, pred);
    n++;
  }
  if (n === 0) throw new Error('meanIoU: no images');
  return sum / n;
}
