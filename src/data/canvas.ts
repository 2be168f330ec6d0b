// The 2x2 prompt canvas (docs/method.md#canvas): 3x224x224, white, example input top-left, example output
// top-right, query bottom-left, query target bottom-right, a 2-px white gap at rows/columns 111-112.
//
// Float arithmetic follows the reference step by step so that canvases and targets agree bit for bit:
// - a cell is ToTensor's float32 v/255 (lowlight's 0.5x is exact in float32);
// - the reference normalises the float32 canvas with float64 numpy mean/std, so (x - mean)/std is
//   computed in double and rounded to float32 only when the model casts it (`.float()`);
// - its ground truth is clip((x*std + mean)*255, 0, 255).int() on that float64 canvas, with the same
//   float64 mean/std: double arithmetic and truncation. For a cell value v/255 this round trip gives v
//   back exactly (checked for every v and channel in test/data-canvas.test.ts), so the target is the
//   output cell's 8-bit pixels. Truncating the FLOAT32 canvas instead would give v-1 for ~16% of the
//   values (the float32 rounding lands below v), so gtQuadrant rounds to nearest; cellsTarget computes
//   the reference's double-precision truncation from the cells for any cell values.
import { CELL, CELL_START, IMAGE, IMAGENET_MEAN, IMAGENET_STD } from '../config.js';
import type { Image8 } from './image.js';
import { makeImage } from './image.js';

export const CANVAS = IMAGE; // 224
export const CELL_SIZE = CELL; // 111
/** Row/column where the second row/column of cells starts (111 + 2-px gap). */
export const CELL_OFFSET = CELL_START; // 113
export { IMAGENET_MEAN, IMAGENET_STD };
export const CELL_FLOATS = 3 * CELL * CELL;
export const CANVAS_FLOATS = 3 * CANVAS * CANVAS;
/** Bytes of one target quadrant, [3][111][111]. */
export const QUADRANT_BYTES = 3 * CELL * CELL;

/** One canvas cell: float32 [3][111][111] (channel-major) with values in [0, 1], as ToTensor gives. */
export type Cell = Float32Array;

/** The four cells of a prompt. */
export interface CanvasCells {
  exampleInput: Cell;
  exampleOutput: Cell;
  queryInput: Cell;
  queryOutput: Cell;
}

/** Top-left corner (row, col) of each cell on the canvas. */
export const CELL_ORIGIN = {
  exampleInput: [0, 0],
  exampleOutput: [0, CELL_OFFSET],
  queryInput: [CELL_OFFSET, 0],
  queryOutput: [CELL_OFFSET, CELL_OFFSET],
} as const satisfies Record<keyof CanvasCells, readonly [number, number]>;

/**
 * ToTensor of a 111x111 8-bit image: float32 v/255, channel-major. A 1-channel image (a resized mask)
 * is broadcast to 3 channels, as assigning a (1,111,111) tensor into canvas[:, ...] does.
 */
export function cellFromImage(img: Image8): Cell {
  if (img.width !== CELL || img.height !== CELL) throw new Error(`cellFromImage: a cell must be ${CELL}x${CELL}, got ${img.width}x${img.height}`);
  const out = new Float32Array(CELL_FLOATS);
  const n = CELL * CELL;
  for (let c = 0; c < 3; c++) {
    const src = img.channels === 1 ? 0 : c;
    for (let i = 0; i < n; i++) out[c * n + i] = (img.data[i * img.channels + src] as number) / 255;
  }
  return out;
}

function asCell(x: Cell | Image8, name: string): Cell {
  if (x instanceof Float32Array) {
    if (x.length !== CELL_FLOATS) throw new Error(`buildCanvas: ${name} must hold 3x${CELL}x${CELL} floats, got ${x.length}`);
    return x;
  }
  return cellFromImage(x);
}

/** The cells laid out on a white canvas, [0,1] values (float32 cell values held in doubles). */
function layoutCells(cells: CanvasCells | readonly (Cell | Image8)[]): Float64Array {
  const list = Array.isArray(cells)
    ? (cells as readonly (Cell | Image8)[])
    : [(cells as CanvasCells).exampleInput, (cells as CanvasCells).exampleOutput, (cells as CanvasCells).queryInput, (cells as CanvasCells).queryOutput];
  if (list.length !== 4) throw new Error(`buildCanvas: need 4 cells, got ${list.length}`);
  const names = ['exampleInput', 'exampleOutput', 'queryInput', 'queryOutput'] as const;
  const raw = new Float64Array(CANVAS_FLOATS).fill(1);
  names.forEach((name, k) => {
    const cell = asCell(list[k] as Cell | Image8, name);
    const [r0, c0] = CELL_ORIGIN[name];
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < CELL; y++) {
        const dst = c * CANVAS * CANVAS + (r0 + y) * CANVAS + c0;
        const src = c * CELL * CELL + y * CELL;
        for (let x = 0; x < CELL; x++) raw[dst + x] = cell[src + x] as number;
      }
    }
  });
  return raw;
}

type CellsArg = CanvasCells | readonly [Cell | Image8, Cell | Image8, Cell | Image8, Cell | Image8];

/** A normalised value back to the reference's 8-bit pixel: trunc(clip((x*std + mean)*255, 0, 255)). */
function denormalise(x: number, c: number): number {
  const v = (x * (IMAGENET_STD[c] as number) + (IMAGENET_MEAN[c] as number)) * 255;
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v);
}

/** The 8-bit value nearest to (x*std + mean)*255, clipped: undoes the float32 rounding of the canvas. */
function denormaliseRounded(x: number, c: number): number {
  const v = (x * (IMAGENET_STD[c] as number) + (IMAGENET_MEAN[c] as number)) * 255;
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
}

/** (x - mean)/std in double, as the reference's float32-tensor-minus-float64-numpy normalisation. */
const normalise = (x: number, c: number) => (x - (IMAGENET_MEAN[c] as number)) / (IMAGENET_STD[c] as number);

/**
 * The normalised canvas, float32 [3][224][224] (the model's input after the reference's `.float()`).
 * Cells are float [0,1] Cells or 8-bit 111x111 images; given as {exampleInput, exampleOutput,
 * queryInput, queryOutput} or as [TL, TR, BL, BR].
 */
export function buildCanvas(cells: CellsArg): Float32Array {
  const raw = layoutCells(cells);
  const out = new Float32Array(CANVAS_FLOATS);
  const plane = CANVAS * CANVAS;
  for (let c = 0; c < 3; c++) for (let i = 0; i < plane; i++) out[c * plane + i] = normalise(raw[c * plane + i] as number, c);
  return out;
}

/**
 * The reference's exact metric target for these cells: it denormalises the float64 normalised canvas
 * (before the model's float32 cast), so this is computed from the cells in double. gtQuadrant of the
 * float32 canvas equals it except at rare pixels where the float32 rounding crosses an integer.
 */
export function cellsTarget(cells: CellsArg): Uint8Array {
  const raw = layoutCells(cells);
  const out = new Uint8Array(QUADRANT_BYTES);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < CELL; y++) {
      const src = c * CANVAS * CANVAS + (CELL_OFFSET + y) * CANVAS + CELL_OFFSET;
      const dst = c * CELL * CELL + y * CELL;
      for (let x = 0; x < CELL; x++) out[dst + x] = denormalise(normalise(raw[src + x] as number, c), c);
    }
  }
  return out;
}

/** The 8-bit canvas [3][224][224] (rounded as gtQuadrant), e.g. to save it as a picture. */
export function canvasToPixels(canvas: Float32Array): Uint8Array {
  if (canvas.length !== CANVAS_FLOATS) throw new Error(`canvasToPixels: expected ${CANVAS_FLOATS} floats, got ${canvas.length}`);
  const out = new Uint8Array(CANVAS_FLOATS);
  const plane = CANVAS * CANVAS;
  for (let c = 0; c < 3; c++) for (let i = 0; i < plane; i++) out[c * plane + i] = denormaliseRounded(canvas[c * plane + i] as number, c);
  return out;
}

/**
 * The loss target from a float32 canvas: the bottom-right quadrant as 8-bit pixels, Uint8Array
 * [3][111][111] (channel-major, the engine's target layout). Rounds clip((x*std + mean)*255) to the
 * nearest integer: for 8-bit output cells (every task's) that equals the reference's target exactly,
 * while truncating the float32 value would not (see the header). cellsTarget is the general form.
 */
export function gtQuadrant(canvas: Float32Array): Uint8Array {
  if (canvas.length !== CANVAS_FLOATS) throw new Error(`gtQuadrant: expected ${CANVAS_FLOATS} floats, got ${canvas.length}`);
  const out = new Uint8Array(QUADRANT_BYTES);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < CELL; y++) {
      const src = c * CANVAS * CANVAS + (CELL_OFFSET + y) * CANVAS + CELL_OFFSET;
      const dst = c * CELL * CELL + y * CELL;
      for (let x = 0; x < CELL; x++) out[dst + x] = denormaliseRounded(canvas[src + x] as number, c);
    }
  }
  return out;
}

/** Channel-major [3][h][w] bytes to an HWC RGB image (for writing PNGs). */
export function planarToImage(planar: Uint8Array, width: number, height: number): Image8 {
  if (planar.length !== 3 * width * height) throw new Error(`planarToImage: ${planar.length} bytes is not 3x${height}x${width}`);
  const img = makeImage(width, height, 3);
  const n = width * height;
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) img.data[3 * i + c] = planar[c * n + i] as number;
  return img;
}

/** HWC RGB image to channel-major [3][h][w] bytes (the metric/engine layout). */
export function imageToPlanar(img: Image8): Uint8Array {
  if (img.channels !== 3) throw new Error('imageToPlanar: need an RGB image');
  const n = img.width * img.height;
  const out = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) out[c * n + i] = img.data[3 * i + c] as number;
  return out;
}
