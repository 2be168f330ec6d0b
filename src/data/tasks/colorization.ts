// Task 4: colorization. PIL-luma grayscale of the resized image -> image.
import { grayscaleCell } from './ops.js';
import type { Task } from './task.js';

export const colorization: Task = {
  id: 'colorization',
  index: 4,
  description: 'colorization: grayscale image -> colour image',
  metric: 'mse',
  evaluated: true,
  cells: ({ support, query }) => ({
    exampleInput: grayscaleCell(support.image),
    exampleOutput: support.imageCell,
    queryInput: grayscaleCell(query.image),
    queryOutput: query.imageCell,
  }),
};
