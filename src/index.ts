// The library API: the engine, model configs, data (images, canvases, tasks, datasets), metrics,
// checkpoint conversion, and the method (variables, collection, search, evaluation, reports), tasks of
// the user's own from example pairs, and task vectors as portable files applied to any images.

export { convertCheckpoints, readSafetensors, writeSafetensors } from './checkpoint/index.js';
export * from './config.js';
export * as data from './data/index.js';
export {
  BoundTaskMeans,
  CANVAS_FLOATS,
  Engine,
  type EngineOptions,
  type ForwardBuffers,
  type ForwardRequest,
  type ForwardResult,
  type OutputBufferRequest,
  resolveConfig,
  type TaskMeans,
} from './engine.js';
export { ConflictError, EngineError, InputError, InterruptedError, UsageError, VtvError } from './errors.js';
export { collectTaskVectors } from './method/collect.js';
export { evaluateTaskVectors } from './method/evaluate.js';
export { collectPairsTask, type PairsCollectOptions, PairsTask, type PairsTaskFile } from './method/pairs-task.js';
export { REFERENCE_SEARCH, runSearch, type SearchOptions } from './method/reinforce.js';
export { type ApplyOptions, type ApplyResult, applyTaskVector, TaskVector, weightsChecksum } from './method/task-vector.js';
export * as variables from './method/variables.js';
export * as metrics from './metrics/index.js';
export { writeRandomWeights } from './model/random-weights.js';
export { loadAddon } from './native.js';
export { writeReport } from './report/report.js';
export { packageVersion } from './version.js';
