// The seven tasks of docs/method.md#canvas on real (bundled) episodes: each cell is the documented operation.
import { afterAll, describe, expect, it } from 'vitest';
import { openBundled } from '../src/data/bundled.js';
import { CELL_FLOATS, type Cell, cellFromImage } from '../src/data/canvas.js';
import { buildTaskCanvas, buildTaskCanvases } from '../src/data/episode-canvas.js';
import type { RgbImage } from '../src/data/image.js';
import { classMask, prepareEpisode } from '../src/data/prepare.js';
import { resizeBicubic } from '../src/data/resize.js';
import { getTask, TASK_IDS, TASKS } from '../src/data/tasks/index.js';
import { luma, SQUARE } from '../src/data/tasks/ops.js';
import { noiseImage, PyRef, Rng } from './data-helpers.js';

const py = new PyRef();
afterAll(() => py.dispose());
const ds = openBundled();
const [ref] = ds.episodeRefs({ split: 'trn', fold: 0 }, 1, 1, 7);
const ep = ds.loadEpisode(ref!);
const prepared = prepareEpisode(ep);

/** Positions where a cell is exactly 0 in all channels. */
function blackSquareOf(cell: Cell): { y0: number; x0: number; y1: number; x1: number; n: number } {
  let y0 = 111,
    x0 = 111,
    y1 = -1,
    x1 = -1,
    n = 0;
  for (let i = 0; i < 111 * 111; i++) {
    if (cell[i] === 0 && cell[111 * 111 + i] === 0 && cell[2 * 111 * 111 + i] === 0) {
      const y = Math.floor(i / 111),
        x = i % 111;
      y0 = Math.min(y0, y);
      x0 = Math.min(x0, x);
      y1 = Math.max(y1, y);
      x1 = Math.max(x1, x);
      n++;
    }
  }
  return { y0, x0, y1, x1, n };
}

describe('tasks', () => {
  it('has the docs/method.md#canvas ids, indices and metrics', () => {
    expect(TASK_IDS).toEqual(['segmentation', 'lowlight_enhance', 'identity', 'inpaint', 'colorization', 'inpaint_lowlight', 'segmentation_inpaint']);
    TASKS.forEach((t, i) => {
      expect(t.index).toBe(i);
    });
    expect(TASKS.filter((t) => t.metric === 'iou').map((t) => t.id)).toEqual(['segmentation', 'segmentation_inpaint']);
    expect(getTask(3).id).toBe('inpaint');
    expect(getTask('colorization').index).toBe(4);
    expect(getTask('identity').evaluated).toBe(false);
    expect(() => getTask('deblur')).toThrow(/unknown task 'deblur'.*0=segmentation/);
  });

  it('prepares cells as Resize((111,111), bicubic) + ToTensor, the mask made at full size first', () => {
    expect(prepared.query.image.width).toBe(111);
    expect(prepared.query.imageCell).toEqual(cellFromImage(resizeBicubic(ep.query.image, 111, 111)));
    const fullMask = classMask(ep.query.labels, ep.classId);
    expect(new Set(fullMask.data)).toEqual(new Set([0, 255]));
    expect(prepared.query.mask.data).toEqual(resizeBicubic(fullMask, 111, 111).data);
    // Soft edges survive: the resized mask is not binary.
    expect([...prepared.query.mask.data].some((v) => v > 0 && v < 255)).toBe(true);
    // Boundary (255) and other classes are background in the class mask.
    const boundary = ep.query.labels.data.indexOf(255);
    expect(boundary).toBeGreaterThanOrEqual(0);
    expect(fullMask.data[boundary]).toBe(0);
  });

  it('segmentation: image -> mask (1-channel mask broadcast to RGB)', () => {
    const c = getTask('segmentation').cells(prepared, Rng.fromSeed(0));
    expect(c.exampleInput).toEqual(prepared.support.imageCell);
    expect(c.exampleOutput).toEqual(prepared.support.maskCell);
    expect(c.queryInput).toEqual(prepared.query.imageCell);
    expect(c.queryOutput).toEqual(prepared.query.maskCell);
    const m = c.queryOutput;
    for (let i = 0; i < 111 * 111; i += 97) expect(m[i]).toBe(m[2 * 111 * 111 + i]);
  });

  it('low-light: input is exactly 0.5 x image', () => {
    const c = getTask('lowlight_enhance').cells(prepared, Rng.fromSeed(0));
    c.queryInput.forEach((v, i) => {
      expect(v).toBe(0.5 * (prepared.query.imageCell[i] as number));
    });
    expect(c.queryOutput).toEqual(prepared.query.imageCell);
    expect(c.exampleInput[123]).toBe(0.5 * (prepared.support.imageCell[123] as number));
  });

  it('inpainting: one 27-px black square, at the same seeded place in example and query', () => {
    const a = getTask('inpaint').cells(prepared, Rng.fromSeed(5));
    const sq = blackSquareOf(a.queryInput);
    const sqEx = blackSquareOf(a.exampleInput);
    expect(SQUARE).toBe(27);
    expect(sq.y1 - sq.y0 + 1).toBeGreaterThanOrEqual(27);
    expect(sq.n).toBeGreaterThanOrEqual(27 * 27);
    expect([sqEx.y0, sqEx.x0]).toEqual([sq.y0, sq.x0]);
    // Outside the square the image is untouched; the output is the clean image.
    let changed = 0;
    a.queryInput.forEach((v, i) => {
      if (v !== prepared.query.imageCell[i]) changed++;
    });
    expect(changed).toBeLessThanOrEqual(3 * 27 * 27);
    expect(changed).toBeGreaterThan(0);
    expect(a.queryOutput).toEqual(prepared.query.imageCell);
    // Same rng -> same square; the position is uniform over 0..84 in y and x.
    expect(getTask('inpaint').cells(prepared, Rng.fromSeed(5)).queryInput).toEqual(a.queryInput);
    const r = Rng.fromSeed(6);
    const ys = new Set<number>();
    for (let k = 0; k < 400; k++) {
      const s = blackSquareOf(
        getTask('inpaint').cells({ ...prepared, query: { ...prepared.query, imageCell: new Float32Array(CELL_FLOATS).fill(1) } }, r).queryInput,
      );
      expect(s.n).toBe(27 * 27);
      expect(s.y0 >= 0 && s.y0 <= 84 && s.x0 >= 0 && s.x0 <= 84).toBe(true);
      ys.add(s.y0);
    }
    expect(ys.has(0) || ys.has(84) || ys.size > 70).toBe(true);
  });

  it('colorization: input is PIL convert("L") of the resized image, replicated', () => {
    const imgs = [prepared.query.image, noiseImage(Rng.fromSeed(3), 111, 111, 3) as RgbImage];
    const outs = imgs.map((im) => {
      const out = py.file();
      py.add({ op: 'gray', in: py.file(im.data), w: 111, h: 111, out });
      return out;
    });
    py.run();
    imgs.forEach((im, k) => {
      expect(luma(im).data).toEqual(py.read(outs[k] as string));
    });
    const c = getTask('colorization').cells(prepared, Rng.fromSeed(0));
    expect(c.queryInput).toEqual(cellFromImage(luma(prepared.query.image)));
    expect(c.queryOutput).toEqual(prepared.query.imageCell);
  });

  it('compositions: inpaint_lowlight and segmentation_inpaint', () => {
    const il = getTask('inpaint_lowlight').cells(prepared, Rng.fromSeed(5));
    const ip = getTask('inpaint').cells(prepared, Rng.fromSeed(5));
    il.queryInput.forEach((v, i) => {
      expect(v).toBe(0.5 * (ip.queryInput[i] as number));
    });
    expect(il.queryOutput).toEqual(prepared.query.imageCell);
    const si = getTask('segmentation_inpaint').cells(prepared, Rng.fromSeed(5));
    expect(si.queryInput).toEqual(ip.queryInput);
    expect(si.exampleInput).toEqual(ip.exampleInput);
    expect(si.queryOutput).toEqual(prepared.query.maskCell);
  });

  it('builds canvases deterministically per episode, one square per episode across tasks', () => {
    const a = buildTaskCanvas('inpaint', ep);
    const b = buildTaskCanvas('inpaint', ds.loadEpisode(ds.episodeRefs({ split: 'trn', fold: 0 }, 1, 1, 7)[0]!));
    expect(a.canvas).toEqual(b.canvas);
    expect(a.target).toEqual(b.target);
    const [x, y] = buildTaskCanvases(['inpaint', 'segmentation_inpaint'], ep);
    expect(x!.cells.queryInput).toEqual(y!.cells.queryInput);
    // The target is the output cell's pixels.
    expect(a.target).toEqual(Uint8Array.from(prepared.query.imageCell, (v) => Math.round(v * 255)));
    // Another episode index draws another square.
    const other = ds.episodeRefs({ split: 'trn', fold: 0 }, 1, 1, 8)[0]!;
    expect(
      blackSquareOf(
        buildTaskCanvas('inpaint', ds.loadEpisode({ ...other, queryId: ep.queryId, supportId: ep.supportId, classId: ep.classId })).cells.queryInput,
      ),
    ).not.toEqual(blackSquareOf(a.cells.queryInput));
  });
});
