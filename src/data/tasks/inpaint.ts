// Task 3: inpainting. Image with a black 27x27 square (same place in example and query) -> image.
import { blackSquare, drawSquare } from './ops.js';
import type { Task } from './task.js';

export const inpaint: Task = {
  id: 'inpaint',
  index: 3,
  description: 'inpainting: image with a black 27-px square -> image',
  metric: 'mse',
  evaluated: true,
  cells: ({ support, query }, rng) => {
    const sq = drawSquare(rng);
    return {
      exampleInput: blackSquare(support.imageCell, sq),
      exampleOutput: support.imageCell,
      queryInput: blackSquare(query.imageCell, sq),
      queryOutput: query.imageCell,
    };
  },
};
