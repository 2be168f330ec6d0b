// Task 1: low-light enhancement. 0.5 x image -> image.
import { lowLight } from './ops.js';
import type { Task } from './task.js';

export const lowlightEnhance: Task = {
  id: 'lowlight_enhance',
  index: 1,
  description: 'low-light enhancement: 0.5 x image -> image',
  metric: 'mse',
  evaluated: true,
  cells: ({ support, query }) => ({
    exampleInput: lowLight(support.imageCell),
    exampleOutput: support.imageCell,
    queryInput: lowLight(query.imageCell),
    queryOutput: query.imageCell,
  }),
};
