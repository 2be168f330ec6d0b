// The small model shipped in the package (models/, made by train/, described in docs/model-card-mini.md):
// `vtv demo` runs it by default, and the trained-model tests evaluate it.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../data/paths.js';

/** The shipped model's preset name (its weights' metadata says the same). */
export const SHIPPED_MODEL = 'mini';

/** models/mae-vqgan-mini.safetensors inside the package. */
export const shippedModelPath = (): string => join(packageRoot(), 'models', 'mae-vqgan-mini.safetensors');

/** models/segmentation.vtv.safetensors: the task vector searched on the shipped model (`vtv export`). */
export const shippedTaskVectorPath = (task = 'segmentation'): string => join(packageRoot(), 'models', `${task}.vtv.safetensors`);

/** The shipped model's path, or undefined when the package was installed without it. */
export function findShippedModel(): string | undefined {
  const p = shippedModelPath();
  return existsSync(p) ? p : undefined;
}
