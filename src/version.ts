// The package's version, read from its package.json at run time (from dist/src/ or from src/ under tsx).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

export function packageVersion(): string {
  if (cached !== undefined) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = join(dir, 'package.json');
    try {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'vtv' && typeof pkg.version === 'string') {
        cached = pkg.version;
        return cached;
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${file}: cannot read the package version: ${(e as Error).message}`);
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json of vtv above ${dirname(fileURLToPath(import.meta.url))}`);
    dir = up;
  }
}
