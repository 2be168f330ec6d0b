// The method as a library (`import ... from 'vtv/method'`): search variables, the REINFORCE policy and
// loop, collection of task means, taskness, evaluation, tasks from example pairs and task-vector files.
// docs/method.md explains each step.

export { readMeansFile, type TaskMeansEntry, writeMeansFile } from '../run/means-file.js';
export { type CollectOptions, collectTaskVectors, REFERENCE_COLLECT } from './collect.js';
export { CONDITIONS, type Condition, type EvalOptions, type EvalRow, evaluateTaskVectors } from './evaluate.js';
export type { ForwardEngine } from './forward-engine.js';
export { collectPairsTask, type PairsCollectOptions, PairsTask, type PairsTaskFile } from './pairs-task.js';
export * as policy from './policy.js';
export {
  type CanvasSet,
  type Objective,
  REFERENCE_SEARCH,
  type Restrict,
  runSearch,
  type SearchInputs,
  type SearchOptions,
  type SearchState,
  type SearchTask,
  type StepRecord,
} from './reinforce.js';
export { type ApplyOptions, type ApplyResult, applyTaskVector, TaskVector, weightsChecksum } from './task-vector.js';
export { type Taskness, tasknessScores } from './taskness.js';
export { type Granularity, type VariableInfo, VariableSpace } from './variables.js';
