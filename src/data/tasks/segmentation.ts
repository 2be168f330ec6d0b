// Task 0: foreground segmentation. Photo -> its class mask (white object on black).
import type { Task } from './task.js';

export const segmentation: Task = {
  id: 'segmentation',
  index: 0,
  description: 'foreground segmentation: image -> binary mask of the episode class',
  metric: 'iou',
  evaluated: true,
  cells: ({ support, query }) => ({
    exampleInput: support.imageCell,
    exampleOutput: support.maskCell,
    queryInput: query.imageCell,
    queryOutput: query.maskCell,
  }),
};
