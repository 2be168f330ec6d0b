// Task 2: identity (a neutral copy; its means are collected, it is not evaluated).
import type { Task } from './task.js';

export const identity: Task = {
  id: 'identity',
  index: 2,
  description: 'identity: image -> image',
  metric: 'mse',
  evaluated: false,
  cells: ({ support, query }) => ({
    exampleInput: support.imageCell,
    exampleOutput: support.imageCell,
    queryInput: query.imageCell,
    queryOutput: query.imageCell,
  }),
};
