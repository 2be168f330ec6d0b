// Task 5 (composition, for task arithmetic): 0.5 x (image with a black square) -> image, as the
// reference's inpaint_black_grid_and_lowlight.
import { blackSquare, drawSquare, lowLight } from './ops.js';
import type { Task } from './task.js';

export const inpaintLowlight: Task = {
  id: 'inpaint_lowlight',
  index: 5,
  description: 'inpainting + low-light: 0.5 x image with a black square -> image',
  metric: 'mse',
  evaluated: true,
  cells: ({ support, query }, rng) => {
    const sq = drawSquare(rng);
    return {
      exampleInput: lowLight(blackSquare(support.imageCell, sq)),
      exampleOutput: support.imageCell,
      queryInput: lowLight(blackSquare(query.imageCell, sq)),
      queryOutput: query.imageCell,
    };
  },
};
