// Writes example pairs of a simple image transformation from the bundled images, in the layout
// `vtv collect --pairs` reads (OUT/inputs/<id>.png + OUT/outputs/<id>.png), plus a few other bundled
// images in OUT/new/ to apply the found task vector to.
//
// Run: npx tsx scripts/make-pairs.ts [--transform edges|invert|mask] [--count 20] [--new 4] [--seed 0] [--out pairs/edges]
//   edges   Sobel gradient magnitude of the luma, grey (an image task: MSE)
//   invert  255 - v per channel (an image task: MSE)
//   mask    the bundled label map as a 0/255 grey mask (a segmentation-like task: IoU)
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { encodePng, makeImage, type RgbImage, readImageFile, readLabelFile } from '../src/data/image.js';
import { packageDataDir } from '../src/data/paths.js';
import { Rng } from '../src/data/rng.js';
import { luma } from '../src/data/tasks/ops.js';

export const TRANSFORMS = ['edges', 'invert', 'mask'] as const;
export type Transform = (typeof TRANSFORMS)[number];

/** Sobel gradient magnitude of the luma, clamped to 0..255, as a grey RGB image. */
export function edges(img: RgbImage): RgbImage {
  const l = luma(img);
  const { width: w, height: h } = img;
  const out = makeImage(w, h, 3);
  const at = (x: number, y: number) => l.data[Math.min(h - 1, Math.max(0, y)) * w + Math.min(w - 1, Math.max(0, x))]!;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const gx = at(x + 1, y - 1) + 2 * at(x + 1, y) + at(x + 1, y + 1) - at(x - 1, y - 1) - 2 * at(x - 1, y) - at(x - 1, y + 1);
      const gy = at(x - 1, y + 1) + 2 * at(x, y + 1) + at(x + 1, y + 1) - at(x - 1, y - 1) - 2 * at(x, y - 1) - at(x + 1, y - 1);
      const v = Math.min(255, Math.round(Math.hypot(gx, gy) / 2));
      out.data.fill(v, 3 * (y * w + x), 3 * (y * w + x) + 3);
    }
  return out as RgbImage;
}

export function invert(img: RgbImage): RgbImage {
  return { ...img, data: img.data.map((v) => 255 - v) };
}

export interface MakePairsOptions {
  transform: Transform;
  count: number;
  newImages: number;
  seed: number;
  out: string;
  /** Default: the bundled dataset. */
  bundledDir?: string;
}

/** Writes the pairs and the new images; returns the ids used for each. */
export function makePairs(o: MakePairsOptions): { pairs: string[]; fresh: string[] } {
  if (!(TRANSFORMS as readonly string[]).includes(o.transform)) throw new Error(`--transform must be one of ${TRANSFORMS.join(', ')}, got '${o.transform}'`);
  const dir = o.bundledDir ?? join(packageDataDir(), 'bundled');
  const ids = readdirSync(join(dir, 'JPEGImages'))
    .filter((f) => f.endsWith('.jpg'))
    .sort()
    .map((f) => basename(f, '.jpg'));
  if (o.count + o.newImages > ids.length) throw new Error(`only ${ids.length} bundled images: --count + --new must not exceed that`);
  const order = Rng.fromSeed(o.seed).fork('make-pairs').shuffle(ids);
  const pairs = order.slice(0, o.count);
  const fresh = order.slice(o.count, o.count + o.newImages);
  for (const d of ['inputs', 'outputs', 'new']) mkdirSync(join(o.out, d), { recursive: true });
  for (const id of pairs) {
    const img = readImageFile(join(dir, 'JPEGImages', `${id}.jpg`));
    let output: RgbImage;
    if (o.transform === 'edges') output = edges(img);
    else if (o.transform === 'invert') output = invert(img);
    else {
      const labels = readLabelFile(join(dir, 'SegmentationClassAug', `${id}.png`));
      output = makeImage(labels.width, labels.height, 3) as RgbImage;
      for (let i = 0; i < labels.data.length; i++) output.data.fill(labels.data[i]! > 0 && labels.data[i]! < 255 ? 255 : 0, 3 * i, 3 * i + 3);
    }
    writeFileSync(join(o.out, 'inputs', `${id}.png`), encodePng(img));
    writeFileSync(join(o.out, 'outputs', `${id}.png`), encodePng(output));
  }
  for (const id of fresh) writeFileSync(join(o.out, 'new', `${id}.png`), encodePng(readImageFile(join(dir, 'JPEGImages', `${id}.jpg`))));
  return { pairs, fresh };
}

function main(argv: string[]): void {
  const arg = (name: string, dflt: string) => {
    const i = argv.indexOf(name);
    return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
  };
  const transform = arg('--transform', 'edges') as Transform;
  const num = (name: string, dflt: number) => {
    const v = Number(arg(name, String(dflt)));
    if (!Number.isInteger(v) || v < 0) throw new Error(`${name} must be a non-negative integer`);
    return v;
  };
  const out = arg('--out', join('pairs', transform));
  const r = makePairs({ transform, count: num('--count', 20), newImages: num('--new', 4), seed: num('--seed', 0), out });
  console.log(`wrote ${r.pairs.length} ${transform} pairs to ${out}/{inputs,outputs} and ${r.fresh.length} new images to ${out}/new`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    console.error(`make-pairs: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
