// One episode + one task -> the model's input canvas and the metric target.
import { buildCanvas, type CanvasCells, cellsTarget } from './canvas.js';
import type { Episode } from './dataset.js';
import { type PreparedEpisode, prepareEpisode } from './prepare.js';
import { Rng } from './rng.js';
import { getTask, type Task, type TaskId } from './tasks/index.js';

export interface TaskCanvas {
  /** Normalised float32 [3][224][224]. */
  canvas: Float32Array;
  /** The reference's 8-bit ground truth of the output quadrant, [3][111][111] (cellsTarget). */
  target: Uint8Array;
  cells: CanvasCells;
}

/**
 * Build the canvas of `task` for an episode. Task randomness comes from the episode's own stream
 * (ep.cellRng) unless `rng` is given, so an episode gives the same canvas everywhere, and tasks that
 * draw a square draw the same square for the same episode.
 */
export function buildTaskCanvas(task: Task | TaskId, ep: Episode, prepared?: PreparedEpisode, rng?: Rng): TaskCanvas {
  const t = typeof task === 'string' ? getTask(task) : task;
  const cells = t.cells(prepared ?? prepareEpisode(ep), rng ?? Rng.fromState(ep.cellRng));
  const canvas = buildCanvas(cells);
  return { canvas, target: cellsTarget(cells), cells };
}

/** The canvases of several tasks for one episode, resizing its images once. */
export function buildTaskCanvases(tasks: readonly (Task | TaskId)[], ep: Episode): TaskCanvas[] {
  const prepared = prepareEpisode(ep);
  return tasks.map((t) => buildTaskCanvas(t, ep, prepared));
}
