// What a task is: a rule turning a prepared episode (support = example, query) into the four cells.
// A new task is one file exporting a Task, added to the registry in index.ts.
import type { CanvasCells } from '../canvas.js';
import type { PreparedEpisode } from '../prepare.js';
import type { Rng } from '../rng.js';

export type TaskId = 'segmentation' | 'lowlight_enhance' | 'identity' | 'inpaint' | 'colorization' | 'inpaint_lowlight' | 'segmentation_inpaint';

export type MetricName = 'iou' | 'mse';

export interface Task {
  id: TaskId;
  /** The reference's task number (docs/method.md#metrics). */
  index: number;
  description: string;
  /** IoU (higher is better) for segmentation outputs, MSE (lower is better) otherwise. */
  metric: MetricName;
  /** False for identity: collected, never evaluated. */
  evaluated: boolean;
  /**
   * The cells of one prompt. Any randomness (the inpainting square) is drawn from `rng` once, and
   * shared by example and query.
   */
  cells(ep: PreparedEpisode, rng: Rng): CanvasCells;
}
