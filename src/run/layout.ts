// The files of one run directory (default runs/<name>), written by the vtv commands and read by later
// ones (and by reports). Every JSON file carries a "format" and "version".
//
// runs/<name>/
//   config.json                 RunConfig: model preset/config, weights path, dataset, seeds; written by
//                               the first command, later commands take their defaults from it
//   weights.safetensors         only for `vtv demo` (random tiny weights)
//   means.safetensors           task vectors: per task <task>.enc [encDepth][148][encDim],
//                               <task>.dec [decDepth][197][decDim], <task>.count [1] (means-file.ts)
//   prompts.json                per task, the kept (query, support) prompts and their one-shot scores
//   taskness.json               rho per (layer, head) and per (layer, head, one-shot position) (taskness.ts)
//   tasks/<name>/               only for a task given by example pairs (`vtv collect --pairs DIR --task-name
//                               <name>`); its means and kept prompts go to means.safetensors and prompts.json
//     task.json                 PairsTaskFile: the pairs (absolute paths), the seeded train/validation
//                               split, the metric, the kept prompts best first (pairs-task.ts)
//     taskness.json             rho of the task against the identity copy of its own inputs
//   search/<task>/              one search (<task> is a task id, or "multitask")
//     state.json                SearchState: logits, Adam moments, RNG state, step, best (reinforce.ts);
//                               rewritten atomically every --checkpoint-every steps; --resume reads it
//     log.jsonl                 one StepRecord per step: loss, per-task training metric, expected
//                               subset size, validation metric (every --validate-every steps),
//                               probability snapshots (with validation and every --snapshot-every)
//     target_tokens.json        only for --objective token: the VQGAN encoder's output-quadrant tokens
//                               of each training canvas's ground truth, under a key hashing the canvases,
//                               targets and weights (target-tokens.ts); reused on --resume
//     subset.json               SubsetFile: the final variable choice, its (layer, head, positions),
//                               the selected logits and probabilities
//   .locks/                     run.lock, search-<task>.lock: who is writing (pid, host, command, start);
//                               see run/lock.ts
//   replaced/<time>-<what>/     old results that --force (or a fresh start over an interrupted one)
//                               moved aside before writing; never read by vtv, delete when done
//   eval/
//     results.json              EvalResults: per task and fold, the metric of each condition
//     results.md                the same as a Markdown table
//     examples/<task>/fold<k>_<episode>_<what>.png   the 111x111 cells; what = example-input,
//                               example-output, query, target (ground truth), and the predictions
//                               one-shot, zero-shot, task-vector, random

import { join } from 'node:path';
import type { DatasetName } from '../data/dataset.js';

export const RUN_FORMAT_VERSION = 1;

export interface RunPaths {
  root: string;
  config: string;
  weights: string;
  means: string;
  prompts: string;
  taskness: string;
  pairsTask: (task: string) => string;
  pairsTaskness: (task: string) => string;
  searchDir: (task: string) => string;
  searchState: (task: string) => string;
  searchLog: (task: string) => string;
  targetTokens: (task: string) => string;
  subset: (task: string) => string;
  evalDir: string;
  evalJson: string;
  evalMd: string;
  examples: (task: string) => string;
}

export const MULTITASK = 'multitask';

export function runPaths(root: string): RunPaths {
  const s = (task: string) => join(root, 'search', task);
  return {
    root,
    config: join(root, 'config.json'),
    weights: join(root, 'weights.safetensors'),
    means: join(root, 'means.safetensors'),
    prompts: join(root, 'prompts.json'),
    taskness: join(root, 'taskness.json'),
    pairsTask: (t) => join(root, 'tasks', t, 'task.json'),
    pairsTaskness: (t) => join(root, 'tasks', t, 'taskness.json'),
    searchDir: s,
    searchState: (t) => join(s(t), 'state.json'),
    searchLog: (t) => join(s(t), 'log.jsonl'),
    targetTokens: (t) => join(s(t), 'target_tokens.json'),
    subset: (t) => join(s(t), 'subset.json'),
    evalDir: join(root, 'eval'),
    evalJson: join(root, 'eval', 'results.json'),
    evalMd: join(root, 'eval', 'results.md'),
    examples: (t) => join(root, 'eval', 'examples', t),
  };
}

/** What a run was made with; later commands default to it. */
export interface RunConfig {
  format: 'vtv-run';
  version: number;
  model: string; // preset name
  weights: string[];
  dataset: DatasetName;
  dataDir?: string;
  backend: 'auto' | 'cpu' | 'cuda';
  /** The CUDA backend's precision (absent: fp32); a later command's --precision overrides it, as --backend does. */
  precision?: 'fp32' | 'bf16';
  created: string;
}
