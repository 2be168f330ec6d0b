// The small MAE-VQGAN that vtv trains itself (train/) and ships in models/: the default of `vtv demo`
// and the model of the tests that check the method works. docs/model-card-mini.md describes it;
// models/mae-vqgan-mini.json records its checksum, shapes and training run (a test checks the file
// against it).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../native.js';

export const SHIPPED_MODEL = {
  preset: 'mini',
  file: 'mae-vqgan-mini.safetensors',
  card: 'mae-vqgan-mini.json',
} as const;

/** The shipped weights' absolute path; throws naming the file when the package lacks it. */
export function shippedModelPath(): string {
  const p = join(packageRoot(), 'models', SHIPPED_MODEL.file);
  if (!existsSync(p)) throw new Error(`vtv: the shipped model ${p} is missing (reinstall the package, or train it with bash train/run_all.sh)`);
  return p;
}

export const shippedCardPath = (): string => join(packageRoot(), 'models', SHIPPED_MODEL.card);
