// The task registry, in the reference's task order (docs/method.md#metrics).

import { UsageError } from '../../errors.js';
import { colorization } from './colorization.js';
import { identity } from './identity.js';
import { inpaint } from './inpaint.js';
import { inpaintLowlight } from './inpaint-lowlight.js';
import { lowlightEnhance } from './lowlight-enhance.js';
import { segmentation } from './segmentation.js';
import { segmentationInpaint } from './segmentation-inpaint.js';
import type { Task, TaskId } from './task.js';

export type { MetricName, Task, TaskId } from './task.js';

export const TASKS: readonly Task[] = [segmentation, lowlightEnhance, identity, inpaint, colorization, inpaintLowlight, segmentationInpaint];
export const TASK_IDS: readonly TaskId[] = TASKS.map((t) => t.id);

/** A task by id ('inpaint') or reference index (3). */
export function getTask(key: TaskId | string | number): Task {
  const t = typeof key === 'number' ? TASKS.find((x) => x.index === key) : TASKS.find((x) => x.id === key);
  if (!t) throw new UsageError(`unknown task '${key}' (known: ${TASKS.map((x) => `${x.index}=${x.id}`).join(', ')})`);
  return t;
}
