// From a loaded sample to the 111x111 pieces the tasks combine, as the reference's transforms do:
// Resize((111,111), bicubic) of the photo, and of the 0/255 class mask made at FULL size (so the
// resized mask has soft edges, not 0/255 only), each then ToTensor'ed into a float cell.
import { CELL } from '../config.js';
import { type Cell, cellFromImage } from './canvas.js';
import type { Episode, Sample } from './dataset.js';
import { type GrayImage, makeImage, type RgbImage } from './image.js';
import { resizeBicubic } from './resize.js';

export interface PreparedSample {
  id: string;
  /** The photo resized to 111x111. */
  image: RgbImage;
  /** ToTensor of `image`. */
  imageCell: Cell;
  /** Class mask (value == classId -> 255, else 0, incl. boundary 255) resized to 111x111. */
  mask: GrayImage;
  /** ToTensor of `mask`, broadcast to 3 channels. */
  maskCell: Cell;
}

export interface PreparedEpisode {
  classId: number;
  support: PreparedSample;
  query: PreparedSample;
}

/** The full-size binary mask of one class: 255 where the label equals classId, else 0. */
export function classMask(labels: GrayImage, classId: number): GrayImage {
  const out = makeImage(labels.width, labels.height, 1);
  for (let i = 0; i < labels.data.length; i++) out.data[i] = labels.data[i] === classId ? 255 : 0;
  return out;
}

export function prepareSample(sample: Sample, classId: number): PreparedSample {
  const image = resizeBicubic(sample.image, CELL, CELL) as RgbImage;
  const mask = resizeBicubic(classMask(sample.labels, classId), CELL, CELL) as GrayImage;
  return { id: sample.id, image, imageCell: cellFromImage(image), mask, maskCell: cellFromImage(mask) };
}

export function prepareEpisode(ep: Episode): PreparedEpisode {
  return { classId: ep.classId, support: prepareSample(ep.support, ep.classId), query: prepareSample(ep.query, ep.classId) };
}
