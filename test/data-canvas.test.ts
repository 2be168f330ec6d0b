// The 2x2 canvas: layout, normalisation and the metric target, against the reference's own torch code
// (test/reference/pil_image_ops.py 'canvas': torch.ones, paste, float64 numpy normalisation, .float()).
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildCanvas,
  CANVAS,
  CANVAS_FLOATS,
  CELL_FLOATS,
  type Cell,
  cellFromImage,
  cellsTarget,
  gtQuadrant,
  IMAGENET_MEAN,
  IMAGENET_STD,
  imageToPlanar,
  planarToImage,
} from '../src/data/canvas.js';
import { makeImage } from '../src/data/image.js';
import { lowLight } from '../src/data/tasks/ops.js';
import { noiseImage, PyRef, Rng } from './data-helpers.js';

const py = new PyRef();
afterAll(() => py.dispose());

function randomCells(rng: Rng): [Cell, Cell, Cell, Cell] {
  const img = () => cellFromImage(noiseImage(rng, 111, 111, 3));
  return [img(), lowLight(img()), img(), img()];
}

const at = (canvas: Float32Array, c: number, y: number, x: number) => canvas[c * CANVAS * CANVAS + y * CANVAS + x] as number;

describe('canvas', () => {
  it('places the cells TL/TR/BL/BR with a white 2-px gap', () => {
    const values = [10, 60, 120, 200];
    const cells = values.map((v) => {
      const im = makeImage(111, 111, 3);
      im.data.fill(v);
      return im;
    }) as [ReturnType<typeof makeImage>, ReturnType<typeof makeImage>, ReturnType<typeof makeImage>, ReturnType<typeof makeImage>];
    const canvas = buildCanvas(cells);
    expect(canvas.length).toBe(CANVAS_FLOATS);
    const norm = (v: number, c: number) => Math.fround((Math.fround(v / 255) - (IMAGENET_MEAN[c] as number)) / (IMAGENET_STD[c] as number));
    for (let c = 0; c < 3; c++) {
      expect(at(canvas, c, 0, 0)).toBe(norm(10, c));
      expect(at(canvas, c, 110, 110)).toBe(norm(10, c));
      expect(at(canvas, c, 0, 113)).toBe(norm(60, c));
      expect(at(canvas, c, 110, 223)).toBe(norm(60, c));
      expect(at(canvas, c, 113, 0)).toBe(norm(120, c));
      expect(at(canvas, c, 223, 110)).toBe(norm(120, c));
      expect(at(canvas, c, 113, 113)).toBe(norm(200, c));
      expect(at(canvas, c, 223, 223)).toBe(norm(200, c));
      for (const [y, x] of [
        [111, 0],
        [112, 50],
        [0, 111],
        [50, 112],
        [111, 111],
        [112, 223],
        [223, 112],
      ] as const) {
        expect(at(canvas, c, y, x)).toBe(norm(255, c));
      }
    }
  });

  it('broadcasts a 1-channel cell (a resized mask) to 3 channels', () => {
    const m = makeImage(111, 111, 1);
    m.data.fill(128);
    const cell = cellFromImage(m);
    expect(cell.length).toBe(CELL_FLOATS);
    expect(cell.every((v) => v === Math.fround(128 / 255))).toBe(true);
    expect(() => cellFromImage(makeImage(110, 111, 3))).toThrow(/111x111/);
  });

  it('equals the reference canvas bit for bit, and cellsTarget equals its ground truth', () => {
    const rng = Rng.fromSeed(11);
    const sets = [randomCells(rng), randomCells(rng), randomCells(rng)];
    const outs = sets.map((cells) => {
      const flat = new Float32Array(4 * CELL_FLOATS);
      cells.forEach((c, k) => {
        flat.set(c, k * CELL_FLOATS);
      });
      const job = { op: 'canvas', in: py.file(flat), out_canvas: py.file(), out_target: py.file() };
      py.add(job);
      return job;
    });
    py.run();
    sets.forEach((cells, k) => {
      const job = outs[k] as { out_canvas: string; out_target: string };
      const refBytes = py.read(job.out_canvas);
      const ref = new Float32Array(refBytes.buffer, refBytes.byteOffset, CANVAS_FLOATS);
      const ours = buildCanvas(cells);
      expect(ours).toEqual(ref);
      const target = py.read(job.out_target);
      expect(cellsTarget(cells)).toEqual(target);
      // For 8-bit output cells the reference target is the cell's own pixels, and gtQuadrant of the
      // float32 canvas recovers it exactly.
      expect(gtQuadrant(ours)).toEqual(target);
      const q = cells[3] as Cell;
      expect(target).toEqual(Uint8Array.from(q, (v) => Math.round(v * 255)));
    });
  });

  it('recovers every 8-bit value in every channel, where truncating float32 would not', () => {
    const cells = [0, 1, 2, 3].map(() => new Float32Array(CELL_FLOATS)) as [Cell, Cell, Cell, Cell];
    for (let c = 0; c < 3; c++) for (let i = 0; i < 111 * 111; i++) cells[3][c * 111 * 111 + i] = (i % 256) / 255;
    const expected = Uint8Array.from(cells[3], (v) => Math.round(v * 255));
    expect(cellsTarget(cells)).toEqual(expected);
    const canvas = buildCanvas(cells);
    expect(gtQuadrant(canvas)).toEqual(expected);
    // The naive float32 truncation loses a level on a sizeable fraction of values (why gtQuadrant rounds).
    let low = 0;
    for (let c = 0; c < 3; c++) {
      for (let v = 0; v < 256; v++) {
        const n = canvas[c * CANVAS * CANVAS + (113 + Math.floor(v / 111)) * CANVAS + 113 + (v % 111)] as number;
        if (Math.trunc((n * (IMAGENET_STD[c] as number) + (IMAGENET_MEAN[c] as number)) * 255) !== v) low++;
      }
    }
    expect(low).toBeGreaterThan(50);
  });

  it('converts between planar crops and HWC images', () => {
    const img = noiseImage(Rng.fromSeed(2), 111, 111, 3);
    const planar = imageToPlanar(img);
    expect(planar[111 * 111 + 5]).toBe(img.data[3 * 5 + 1]);
    expect(planarToImage(planar, 111, 111).data).toEqual(img.data);
  });
});
