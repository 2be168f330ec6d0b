// Metric inputs: 111x111 RGB crops, Uint8Array [3][111][111] (channel-major, as engine targets).
import { CELL } from '../config.js';

export const CROP = CELL;
export const CROP_PLANE = CROP * CROP;
export const CROP_BYTES = 3 * CROP_PLANE;

export function checkCrops(fn: string, a: Uint8Array, b: Uint8Array): void {
  if (a.length !== CROP_BYTES || b.length !== CROP_BYTES) {
    throw new Error(`${fn}: crops must be [3][${CROP}][${CROP}] = ${CROP_BYTES} bytes, got ${a.length} and ${b.length}`);
  }
}
