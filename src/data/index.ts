// The data layer in one import: image files, PIL-exact resizing, canvases, tasks, datasets, RNG.
export * from './bundled.js';
export * from './canvas.js';
export * from './dataset.js';
export * from './episode-canvas.js';
export * from './image.js';
export * from './list-dataset.js';
export * from './pairs.js';
export * from './pascal5i.js';
export * from './prepare.js';
export * from './resize.js';
export * from './rng.js';
export * from './tasks/index.js';
export { blackSquare, drawSquare, grayscaleCell, lowLight, luma, SQUARE, type Square } from './tasks/ops.js';
