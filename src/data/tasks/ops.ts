// Cell operations shared by the tasks, each the reference's tensor operation on a [0,1] cell.
import { CELL } from '../../config.js';
import { type Cell, cellFromImage } from '../canvas.js';
import { type GrayImage, makeImage, type RgbImage } from '../image.js';
import type { Rng } from '../rng.js';

/** 0.5 * img (exact in float32). */
export function lowLight(cell: Cell): Cell {
  return cell.map((v) => 0.5 * v);
}

/** Side of the inpainting square: min(h, w) // 4 = 27. */
export const SQUARE = Math.floor(CELL / 4);

export interface Square {
  y: number;
  x: number;
  size: number;
}

/** A square's top-left drawn as random.randint(0, h - size) for y, then for x. */
export function drawSquare(rng: Rng): Square {
  const y = rng.int(0, CELL - SQUARE);
  const x = rng.int(0, CELL - SQUARE);
  return { y, x, size: SQUARE };
}

/** A copy of the cell with the square set to 0 (black) in every channel. */
export function blackSquare(cell: Cell, sq: Square): Cell {
  const out = cell.slice();
  for (let c = 0; c < 3; c++) {
    for (let y = sq.y; y < sq.y + sq.size; y++) out.fill(0, c * CELL * CELL + y * CELL + sq.x, c * CELL * CELL + y * CELL + sq.x + sq.size);
  }
  return out;
}

/** PIL's convert('L'): L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16 (0.299/0.587/0.114 in 16-bit fixed point). */
export function luma(img: RgbImage): GrayImage {
  const out = makeImage(img.width, img.height, 1);
  for (let i = 0; i < out.data.length; i++) {
    const r = img.data[3 * i] as number;
    const g = img.data[3 * i + 1] as number;
    const b = img.data[3 * i + 2] as number;
    out.data[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16;
  }
  return out;
}

/** torchvision Grayscale(3) + ToTensor of a resized image: luma replicated to 3 channels. */
export const grayscaleCell = (img: RgbImage): Cell => cellFromImage(luma(img));
