// Deterministic generator of the bundled dataset (data/bundled/): photo-like scenes, each with one
// main object of a class (disc, square, triangle, star) and sometimes a smaller distractor of another
// class, on a smooth textured background, with exact label maps. Rendering uses 4x4 supersampling so
// edges are anti-aliased like a photo; a pixel takes the label of the topmost shape covering at least
// half of it, and pixels on the main object's edge (partly covered) get VOC's 255 boundary label.
// Everything derives from Rng streams and integer/IEEE arithmetic, so the files are reproducible:
// scripts/make-bundled-data.ts writes them, and test/data-bundled.test.ts regenerates a few and
// compares them with the committed ones.
import { BUNDLED_CLASSES } from './bundled.js';
import type { ListEntry } from './dataset.js';
import { type GrayImage, makeImage, type RgbImage } from './image.js';
import { Rng } from './rng.js';

export const BUNDLED_SEED = 20240601;
export const IMAGES_PER_CLASS = 20;
/** Per class, the first TRAIN_PER_CLASS images are 'trn', the rest 'val'. */
export const TRAIN_PER_CLASS = 14;
export const BOUNDARY = 255;
export const BUNDLED_JPEG_QUALITY = 92;

export interface BundledImage {
  id: string;
  classId: number;
  image: RgbImage;
  labels: GrayImage;
}

interface Shape {
  classId: number;
  cx: number;
  cy: number;
  r: number;
  theta: number;
  /** Fill: base colour, gradient direction/strength, stripe texture. */
  color: [number, number, number];
  color2: [number, number, number];
  gradAngle: number;
  stripeFreq: number;
  stripeAngle: number;
}

function polygon(s: Shape): [number, number][] {
  const pts: [number, number][] = [];
  if (s.classId === 2) {
    for (let k = 0; k < 4; k++) {
      const a = s.theta + Math.PI / 4 + (k * Math.PI) / 2;
      pts.push([s.cx + s.r * Math.cos(a), s.cy + s.r * Math.sin(a)]);
    }
  } else if (s.classId === 3) {
    for (let k = 0; k < 3; k++) {
      const a = s.theta - Math.PI / 2 + (k * 2 * Math.PI) / 3;
      pts.push([s.cx + s.r * Math.cos(a), s.cy + s.r * Math.sin(a)]);
    }
  } else {
    for (let k = 0; k < 10; k++) {
      const a = s.theta - Math.PI / 2 + (k * Math.PI) / 5;
      const rr = k % 2 === 0 ? s.r : s.r * 0.45;
      pts.push([s.cx + rr * Math.cos(a), s.cy + rr * Math.sin(a)]);
    }
  }
  return pts;
}

function insidePolygon(pts: [number, number][], x: number, y: number): boolean {
  let inside = false;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    const [xi, yi] = pts[i] as [number, number];
    const [xj, yj] = pts[j] as [number, number];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function insideTest(s: Shape): (x: number, y: number) => boolean {
  if (s.classId === 1) return (x, y) => (x - s.cx) ** 2 + (y - s.cy) ** 2 <= s.r * s.r;
  const pts = polygon(s);
  return (x, y) => insidePolygon(pts, x, y);
}

function randomColor(rng: Rng): [number, number, number] {
  return [rng.int(20, 235), rng.int(20, 235), rng.int(20, 235)];
}

function randomShape(rng: Rng, classId: number, w: number, h: number, scale: number): Shape {
  const m = Math.min(w, h);
  const r = m * scale * (0.8 + 0.4 * rng.float());
  return {
    classId,
    cx: r * 0.7 + rng.float() * Math.max(1, w - 1.4 * r),
    cy: r * 0.7 + rng.float() * Math.max(1, h - 1.4 * r),
    r,
    theta: rng.float() * 2 * Math.PI,
    color: randomColor(rng),
    color2: randomColor(rng),
    gradAngle: rng.float() * 2 * Math.PI,
    stripeFreq: rng.float() < 0.5 ? 0 : 0.15 + 0.35 * rng.float(),
    stripeAngle: rng.float() * Math.PI,
  };
}

function shapeColor(s: Shape, x: number, y: number, c: number): number {
  const t = 0.5 + ((x - s.cx) * Math.cos(s.gradAngle) + (y - s.cy) * Math.sin(s.gradAngle)) / (2 * s.r);
  let v = (s.color[c] as number) * (1 - t) + (s.color2[c] as number) * t;
  if (s.stripeFreq > 0) v += 18 * Math.sin(s.stripeFreq * (x * Math.cos(s.stripeAngle) + y * Math.sin(s.stripeAngle)));
  return v;
}

/** Smooth background: a colour gradient plus a few low-frequency waves per channel. */
function backgroundField(rng: Rng, w: number, h: number): (x: number, y: number, c: number) => number {
  const base = randomColor(rng);
  const base2 = randomColor(rng);
  const ga = rng.float() * 2 * Math.PI;
  const waves = Array.from({ length: 4 }, () => ({
    fx: (rng.float() - 0.5) * 0.25,
    fy: (rng.float() - 0.5) * 0.25,
    phase: rng.float() * 2 * Math.PI,
    amp: [6 + 14 * rng.float(), 6 + 14 * rng.float(), 6 + 14 * rng.float()],
  }));
  const diag = Math.hypot(w, h);
  return (x, y, c) => {
    const t = 0.5 + ((x - w / 2) * Math.cos(ga) + (y - h / 2) * Math.sin(ga)) / diag;
    let v = (base[c] as number) * (1 - t) + (base2[c] as number) * t;
    for (const wv of waves) v += (wv.amp[c] as number) * Math.sin(wv.fx * x + wv.fy * y + wv.phase);
    return v;
  };
}

const SS = 4; // supersampling factor per axis

/**
 * Image number `n` (0-based within its class) of class `classId` (1-based). `seed` picks the stream:
 * BUNDLED_SEED gives the committed data/bundled/ images; the training data of the shipped small model
 * (train/) uses other seeds, so the bundled images stay held out.
 */
export function generateBundledImage(classId: number, n: number, seed = BUNDLED_SEED): BundledImage {
  if (!Number.isInteger(classId) || classId < 1 || classId > BUNDLED_CLASSES.length) throw new Error(`generateBundledImage: bad class ${classId}`);
  const rng = Rng.fromSeed(seed).fork(`${classId}/${n}`);
  const w = 8 * rng.int(14, 22);
  const h = 8 * rng.int(12, 18);
  const bg = backgroundField(rng, w, h);
  const shapes: Shape[] = [];
  if (rng.float() < 0.5) {
    let other = rng.int(1, BUNDLED_CLASSES.length - 1);
    if (other >= classId) other++;
    shapes.push(randomShape(rng, other, w, h, 0.18));
  }
  const main = randomShape(rng, classId, w, h, 0.32);
  shapes.push(main);
  const tests = shapes.map(insideTest);
  const image = makeImage(w, h, 3);
  const labels = makeImage(w, h, 1);
  const cover = new Float64Array(shapes.length);
  const acc = [0, 0, 0];
  const mainIndex = shapes.length - 1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      cover.fill(0);
      acc[0] = acc[1] = acc[2] = 0;
      for (let sy = 0; sy < SS; sy++) {
        for (let sx = 0; sx < SS; sx++) {
          const px = x + (sx + 0.5) / SS;
          const py = y + (sy + 0.5) / SS;
          let top = -1;
          for (let k = shapes.length - 1; k >= 0; k--) {
            if ((tests[k] as (x: number, y: number) => boolean)(px, py)) {
              top = k;
              break;
            }
          }
          if (top >= 0) cover[top] = (cover[top] as number) + 1;
          for (let c = 0; c < 3; c++) acc[c] = (acc[c] as number) + (top >= 0 ? shapeColor(shapes[top] as Shape, px, py, c) : bg(px, py, c));
        }
      }
      const i = y * w + x;
      for (let c = 0; c < 3; c++) {
        const v = Math.round((acc[c] as number) / (SS * SS));
        image.data[3 * i + c] = v < 0 ? 0 : Math.min(v, 255);
      }
      let label = 0;
      for (let k = shapes.length - 1; k >= 0; k--) {
        if ((cover[k] as number) * 2 >= SS * SS) {
          label = (shapes[k] as Shape).classId;
          break;
        }
      }
      const mainCover = cover[mainIndex] as number;
      if (mainCover > 0 && mainCover < SS * SS) label = BOUNDARY;
      labels.data[i] = label;
    }
  }
  const id = `${BUNDLED_CLASSES[classId - 1]}_${String(n).padStart(2, '0')}`;
  return { id, classId, image, labels };
}

/** The split lists: trn/fold<k> and val/fold<k> = the trn and val images of class k+1 (as Pascal-5i's files). */
export function bundledSplitLists(): Record<'trn' | 'val', ListEntry[][]> {
  const out: Record<'trn' | 'val', ListEntry[][]> = { trn: [], val: [] };
  for (let fold = 0; fold < BUNDLED_CLASSES.length; fold++) {
    const trn: ListEntry[] = [];
    const val: ListEntry[] = [];
    for (let classId = 1; classId <= BUNDLED_CLASSES.length; classId++) {
      for (let n = 0; n < IMAGES_PER_CLASS; n++) {
        const e = { id: `${BUNDLED_CLASSES[classId - 1]}_${String(n).padStart(2, '0')}`, classId };
        if (classId !== fold + 1) continue;
        (n < TRAIN_PER_CLASS ? trn : val).push(e);
      }
    }
    out.trn.push(trn);
    out.val.push(val);
  }
  return out;
}
