// Shared by the data/metrics tests: running the PIL/numpy/torch reference (test/reference/pil_image_ops.py
// under Debian's /usr/bin/python3) on buffers written to a temporary folder, and test images.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Image8, makeImage } from '../src/data/image.js';
import { Rng } from '../src/data/rng.js';

export const PYTHON = '/usr/bin/python3';
const SCRIPT = join(import.meta.dirname, 'reference', 'pil_image_ops.py');

export class PyRef {
  readonly dir = mkdtempSync(join(tmpdir(), 'vtv-data-'));
  private jobs: Record<string, unknown>[] = [];
  private n = 0;

  /** Write a buffer to a fresh temp file and return its path. */
  file(data?: ArrayBufferView): string {
    const p = join(this.dir, `f${this.n++}.bin`);
    if (data) writeFileSync(p, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return p;
  }

  add(job: Record<string, unknown>): number {
    this.jobs.push(job);
    return this.jobs.length - 1;
  }

  /** Run all queued jobs in one python process; returns per-job results. */
  run(): Record<string, number>[] {
    const jobsPath = join(this.dir, 'jobs.json');
    writeFileSync(jobsPath, JSON.stringify(this.jobs));
    const out = execFileSync(PYTHON, [SCRIPT, jobsPath], { encoding: 'utf8', maxBuffer: 1 << 26 });
    this.jobs = [];
    return JSON.parse(out);
  }

  read(path: string): Uint8Array {
    return new Uint8Array(readFileSync(path));
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Uniform noise: the hardest case for a resampler (every coefficient matters). */
export function noiseImage(rng: Rng, w: number, h: number, channels: 1 | 3): Image8 {
  const img = makeImage(w, h, channels);
  for (let i = 0; i < img.data.length; i++) img.data[i] = rng.int(0, 255);
  return img;
}

/** Smooth content with sharp edges (photo-like): gradients, a disc, stripes. */
export function smoothImage(rng: Rng, w: number, h: number, channels: 1 | 3): Image8 {
  const img = makeImage(w, h, channels);
  const cx = rng.float() * w;
  const cy = rng.float() * h;
  const r = (0.2 + 0.3 * rng.float()) * Math.min(w, h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < channels; c++) {
        let v = (255 * (x + (c + 1) * y)) / (w + 3 * h);
        if ((x - cx) ** 2 + (y - cy) ** 2 < r * r) v = 255 - v;
        if (((x >> 3) + c) % 5 === 0) v *= 0.5;
        img.data[(y * w + x) * channels + c] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  }
  return img;
}

export { Rng };
