// Locating files shipped with the package (split lists, the bundled dataset) from both src/ (tsx,
// vitest) and dist/src/ (compiled): walk up from this module to the directory holding package.json.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

export function packageRoot(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'data'))) {
      cached = dir;
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find the vtv package root (a folder with package.json and data/) above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** data/ inside the package: split lists and the bundled dataset. */
export const packageDataDir = (): string => join(packageRoot(), 'data');
