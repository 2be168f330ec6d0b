// The part of the engine the method needs. The real Engine (src/engine.ts) satisfies it; tests use a
// small fake with the same contract so the method is testable without the native addon.
import type { ModelConfig } from '../config.js';
import type { ForwardRequest, ForwardResult, TaskMeans } from '../engine.js';

export interface ForwardEngine {
  readonly config: ModelConfig;
  forward(req: ForwardRequest): Promise<ForwardResult>;
  /**
   * Task means checked once and kept where the engine reads them: what a loop over many forwards with
   * the same means (a search, an evaluation) passes as `patch.means`.
   */
  bindTaskMeans(means: TaskMeans): Promise<TaskMeans>;
}
