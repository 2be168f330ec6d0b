// subset.json: the result of a search, the set of (layer, head, positions) a task vector patches.
import { existsSync } from 'node:fs';
import type { Mode, ModelConfig } from '../config.js';
import { InputError } from '../errors.js';
import { probabilities } from '../method/policy.js';
import { type Granularity, VariableSpace } from '../method/variables.js';
import { writeJsonAtomic } from './atomic-file.js';
import { readJsonFile } from './json-file.js';

export interface SubsetFile {
  format: 'vtv-subset';
  version: 1;
  model: string;
  granularity: Granularity;
  mode: Mode;
  tasks: string[];
  rule: 'sample' | 'threshold';
  selectedStep: number;
  variables: number;
  /** Indices of the chosen variables. */
  chosen: number[];
  /** What each chosen variable patches (positions in the mode's sequence). */
  patches: { variable: number; layer: number; head: number; slot: string; positions: number[] }[];
  logits: number[];
  probabilities: number[];
}

export function makeSubsetFile(
  space: VariableSpace,
  tasks: string[],
  rule: SubsetFile['rule'],
  selectedStep: number,
  logits: Float64Array,
  choice: Uint8Array,
): SubsetFile {
  const chosen: number[] = [];
  choice.forEach((c, i) => c && chosen.push(i));
  return {
    format: 'vtv-subset',
    version: 1,
    model: space.config.name,
    granularity: space.granularity,
    mode: space.mode,
    tasks,
    rule,
    selectedStep,
    variables: space.count,
    chosen,
    patches: chosen.map((v) => ({ variable: v, ...space.info[v]! })),
    logits: Array.from(logits),
    probabilities: Array.from(probabilities(logits)),
  };
}

export const writeSubsetFile = (path: string, s: SubsetFile) => writeJsonAtomic(path, s);

/** Reads a subset and returns it with its variable space and 0/1 choice, checked against the model. */
export function readSubsetFile(path: string, config: ModelConfig): { file: SubsetFile; space: VariableSpace; choice: Uint8Array } {
  if (!existsSync(path)) throw new InputError(`task-vector subset ${path} does not exist: run \`vtv search\` for this task first`);
  const file = readJsonFile<SubsetFile>(path, 'vtv subset file');
  if (file?.format !== 'vtv-subset' || file.version !== 1) throw new InputError(`${path} is not a vtv subset file (version 1)`);
  if (!Array.isArray(file.chosen) || !Array.isArray(file.logits) || !Array.isArray(file.tasks) || !file.logits.every((x) => typeof x === 'number')) {
    throw new InputError(`${path} is damaged: chosen, logits or tasks is missing or of the wrong type`);
  }
  if (![0, 1, 2].includes(file.granularity) || !['one-shot', 'zero-shot'].includes(file.mode)) {
    throw new InputError(`${path} is damaged: granularity ${JSON.stringify(file.granularity)} or mode ${JSON.stringify(file.mode)} is not one vtv writes`);
  }
  const space = new VariableSpace(config, file.granularity, file.mode);
  if (space.count !== file.variables || file.logits.length !== space.count) {
    throw new InputError(
      `${path} has ${file.variables} variables but model '${config.name}' at granularity ${file.granularity} has ${space.count}: it was searched with another model`,
    );
  }
  const choice = new Uint8Array(space.count);
  for (const v of file.chosen) {
    if (!Number.isInteger(v) || v < 0 || v >= space.count) throw new InputError(`${path}: chosen variable ${v} out of range`);
    choice[v] = 1;
  }
  return { file, space, choice };
}
