// MSE as the reference's loss_mse (docs/method.md#metrics): both crops back to ImageNet-normalised space,
// (v/255 - mean_c)/std_c, mean squared difference over 3x111x111. Equal to
// mean over (c, i) of ((gt - pred) / (255 std_c))^2, which is what we compute.
import { IMAGENET_STD } from '../data/canvas.js';
import { CROP_PLANE, checkCrops } from './crop.js';

export function mse(gt: Uint8Array, pred: Uint8Array): number {
  checkCrops('mse', gt, pred);
  let total = 0;
  for (let c = 0; c < 3; c++) {
    const s = 255 * (IMAGENET_STD[c] as number);
    let sum = 0;
    for (let i = c * CROP_PLANE; i < (c + 1) * CROP_PLANE; i++) {
      const d = (gt[i] as number) - (pred[i] as number);
      sum += d * d;
    }
    total += sum / (s * s);
  }
  return total / (3 * CROP_PLANE);
}
