// Task 6 (composition, for task arithmetic): image with a black square -> the class mask of the whole
// image, as the reference's segmentation_and_inpaint_grid (the square hides part of the photo only).
import { blackSquare, drawSquare } from './ops.js';
import type { Task } from './task.js';

export const segmentationInpaint: Task = {
  id: 'segmentation_inpaint',
  index: 6,
  description: 'segmentation + inpainting: image with a black square -> binary mask',
  metric: 'iou',
  evaluated: true,
  cells: ({ support, query }, rng) => {
    const sq = drawSquare(rng);
    return {
      exampleInput: blackSquare(support.imageCell, sq),
      exampleOutput: support.maskCell,
      queryInput: blackSquare(query.imageCell, sq),
      queryOutput: query.maskCell,
    };
  },
};
