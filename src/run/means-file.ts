// The task-vector file: per task, the mean pre-projection head outputs at every (layer, one-shot
// position, channel) (docs/method.md#patching, the engine's TaskMeans layout), as a versioned safetensors file:
//   <task>.enc  F32 [encDepth][148][encDim]     (channel = head * headDim + j)
//   <task>.dec  F32 [decDepth][197][decDim]
//   <task>.count I32 [1]                        prompts averaged
// metadata: vtv_means_format "1", vtv_config (the model config JSON), tasks (JSON list).
import { existsSync } from 'node:fs';
import { readSafetensors, readSafetensorsHeader, type SafeTensor, writeSafetensors } from '../checkpoint/safetensors.js';
import { type ModelConfig, ONE_SHOT_DEC_TOKENS, ONE_SHOT_ENC_TOKENS } from '../config.js';
import type { TaskMeans } from '../engine.js';
import { InputError } from '../errors.js';
import { parseJsonText } from './json-file.js';

export const MEANS_FORMAT = '1';

export interface TaskMeansEntry {
  means: TaskMeans;
  count: number;
}

export function writeMeansFile(path: string, config: ModelConfig, tasks: Map<string, TaskMeansEntry>): void {
  const t = new Map<string, SafeTensor>();
  for (const [name, e] of tasks) {
    t.set(`${name}.enc`, { dtype: 'F32', shape: [config.encDepth, ONE_SHOT_ENC_TOKENS, config.encDim], data: e.means.enc });
    t.set(`${name}.dec`, { dtype: 'F32', shape: [config.decDepth, ONE_SHOT_DEC_TOKENS, config.decDim], data: e.means.dec });
    t.set(`${name}.count`, { dtype: 'I32', shape: [1], data: Int32Array.of(e.count) });
  }
  writeSafetensors(path, t, { vtv_means_format: MEANS_FORMAT, vtv_config: JSON.stringify(config), tasks: JSON.stringify([...tasks.keys()]) });
}

/** Whether two model configs have the same layer, head and width shapes (task means fit both). */
export function sameShapes(a: ModelConfig, b: ModelConfig): boolean {
  return (
    a.encDim === b.encDim &&
    a.encDepth === b.encDepth &&
    a.encHeads === b.encHeads &&
    a.decDim === b.decDim &&
    a.decDepth === b.decDepth &&
    a.decHeads === b.decHeads
  );
}

/** Tasks stored in a means file (without reading the tensors). */
export function meansFileTasks(path: string): string[] {
  if (!existsSync(path)) throw new InputError(`task-vector file ${path} does not exist: run \`vtv collect\` for this run first`);
  const h = readSafetensorsHeader(path);
  if (h.metadata.vtv_means_format !== MEANS_FORMAT) {
    throw new InputError(`${path} is not a vtv task-vector file (format ${MEANS_FORMAT}); was it written by \`vtv collect\`?`);
  }
  const tasks = parseJsonText(h.metadata.tasks ?? '[]', `${path}: metadata 'tasks'`);
  if (!Array.isArray(tasks) || !tasks.every((t) => typeof t === 'string')) throw new InputError(`${path}: metadata 'tasks' is not a list of task names`);
  return tasks;
}

/** Reads the means of some tasks, checking that they were collected with a model of these shapes. */
export function readMeansFile(path: string, config: ModelConfig, taskNames: string[]): Map<string, TaskMeansEntry> {
  const available = meansFileTasks(path);
  const h = readSafetensorsHeader(path);
  const stored = (h.metadata.vtv_config ? parseJsonText(h.metadata.vtv_config, `${path}: metadata 'vtv_config'`) : null) as ModelConfig | null;
  if (!stored || typeof stored !== 'object' || !sameShapes(stored, config)) {
    throw new InputError(`${path} was collected with model '${stored?.name ?? '?'}', whose shapes differ from '${config.name}': collect again with this model`);
  }
  for (const t of taskNames) {
    if (!available.includes(t)) throw new InputError(`${path} has no task vector for '${t}' (it has: ${available.join(', ') || 'none'})`);
  }
  const keys = taskNames.flatMap((t) => [`${t}.enc`, `${t}.dec`, `${t}.count`]);
  const { tensors } = readSafetensors(path, keys);
  const out = new Map<string, TaskMeansEntry>();
  const want: Record<string, [string, number[]]> = {
    enc: ['F32', [config.encDepth, ONE_SHOT_ENC_TOKENS, config.encDim]],
    dec: ['F32', [config.decDepth, ONE_SHOT_DEC_TOKENS, config.decDim]],
    count: ['I32', [1]],
  };
  for (const k of keys) {
    const tensor = tensors.get(k)!;
    const [dtype, shape] = want[k.slice(k.lastIndexOf('.') + 1)]!;
    if (tensor.dtype !== dtype || tensor.shape.join(',') !== shape.join(',')) {
      throw new InputError(`${path}: tensor '${k}' is ${tensor.dtype} [${tensor.shape}], expected ${dtype} [${shape}]`);
    }
  }
  for (const t of taskNames) {
    out.set(t, {
      means: { enc: tensors.get(`${t}.enc`)!.data as Float32Array, dec: tensors.get(`${t}.dec`)!.data as Float32Array },
      count: (tensors.get(`${t}.count`)!.data as Int32Array)[0]!,
    });
  }
  return out;
}
