// Metrics on 111x111 RGB crops laid out [3][111][111].
import type { MetricName } from '../data/tasks/task.js';
import { iou } from './iou.js';
import { mse } from './mse.js';

export { CROP, CROP_BYTES } from './crop.js';
export { foreground, iou, meanIoU } from './iou.js';
export { mse } from './mse.js';
export { psnr } from './psnr.js';
export { ssim } from './ssim.js';

/** The task metric by name: 'iou' (higher is better) or 'mse' (lower is better). */
export function taskMetric(name: MetricName): (gt: Uint8Array, pred: Uint8Array) => number {
  return name === 'iou' ? iou : mse;
}

/** The loss the search minimises: -IoU for segmentation, MSE otherwise (docs/method.md#metrics). */
export function taskLoss(name: MetricName, gt: Uint8Array, pred: Uint8Array): number {
  return name === 'iou' ? -iou(gt, pred) : mse(gt, pred);
}
