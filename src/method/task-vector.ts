// A task vector as one portable file (`vtv export`), and its use on the user's own images (`vtv apply`).
//
// The file (<task>.vtv.safetensors) holds only what a patched zero-shot forward reads:
//   patches      I32 [n][3]                (layer, head, position) patched, positions in the mode's
//                                          sequence; layers 0..encDepth-1 encoder, then decoder
//   enc_means    F32 [n_enc][encDim/encHeads]  the head's task mean at each encoder patch, in patch order
//   dec_means    F32 [n_dec][decDim/decHeads]  the same for the decoder patches
//   example.input, example.output  U8 [3][111][111]   the best kept prompt's example (for --compare)
// metadata: vtv_task_vector "1", task, metric, granularity, mode, chosen (the search's variables, JSON),
// vtv_config (the model config JSON), model (its preset name), weights_sha256 and weights_files (the
// weights it was found with: a file made for other weights is refused).
//
// A zero-shot position p >= 1 reads the one-shot row p+98 of the mean table, as the engine does, so the
// table rebuilt from the file (zero outside the patched heads' rows) gives the run's outputs bit for bit.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { basename } from 'node:path';
import { readSafetensors, type SafeTensor, writeSafetensors } from '../checkpoint/safetensors.js';
import {
  CELL,
  CELL_START,
  type Mode,
  type ModelConfig,
  ModelConfigSchema,
  meansDecFloats,
  meansEncFloats,
  ONE_SHOT_DEC_TOKENS,
  ONE_SHOT_ENC_TOKENS,
  patchBitIndex,
  patchBytes,
  ZERO_SHOT_DEC_TOKENS,
  ZERO_SHOT_ENC_TOKENS,
  ZERO_SHOT_SHIFT,
} from '../config.js';
import { buildCanvas, CELL_FLOATS, type Cell, planarToImage } from '../data/canvas.js';
import type { SegmentationDataset } from '../data/dataset.js';
import { buildTaskCanvas } from '../data/episode-canvas.js';
import type { Image8, RgbImage } from '../data/image.js';
import { imageCell } from '../data/pairs.js';
import { getTask, type MetricName } from '../data/tasks/index.js';
import { CANVAS_FLOATS, type TaskMeans } from '../engine.js';
import { InputError } from '../errors.js';
import { MULTITASK, type RunPaths } from '../run/layout.js';
import { readMeansFile, sameShapes } from '../run/means-file.js';
import { readSubsetFile } from '../run/subset-file.js';
import { cropCell } from './evaluate.js';
import type { ForwardEngine } from './forward-engine.js';
import { PairsTask } from './pairs-task.js';
import type { Granularity } from './variables.js';

export const TASK_VECTOR_FORMAT = '1';
export const TASK_VECTOR_EXT = '.vtv.safetensors';

/** The weights' identity: the sha256 of the file, or of the files' digests joined by '+' for several. */
export function weightsChecksum(paths: readonly string[]): string {
  const digests = paths.map((p) => {
    if (!existsSync(p)) throw new InputError(`weights file ${p} does not exist`);
    const h = createHash('sha256');
    const fd = openSync(p, 'r');
    try {
      const buf = Buffer.allocUnsafe(16 << 20);
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, null);
        if (n === 0) break;
        h.update(buf.subarray(0, n));
      }
    } finally {
      closeSync(fd);
    }
    return h.digest('hex');
  });
  return digests.length === 1 ? digests[0]! : createHash('sha256').update(digests.join('+')).digest('hex');
}

/** An example pair as 8-bit cells [3][111][111] (the cell values v/255 back to v). */
export interface ExampleCells {
  input: Uint8Array;
  output: Uint8Array;
}

const cellBytes = (c: Cell) => Uint8Array.from(c, (v) => Math.round(v * 255));
const bytesCell = (b: Uint8Array) => Float32Array.from(b, (v) => v / 255);

export interface TaskVectorData {
  task: string;
  metric?: MetricName;
  config: ModelConfig;
  granularity: Granularity;
  mode: Mode;
  /** The search's chosen variables (for information; the patches are what is applied). */
  chosen: number[];
  /** (layer, head, position) triples, flat [n][3]. */
  patches: Int32Array;
  /** The full task-mean tables; only the patched heads' rows are read. */
  means: TaskMeans;
  weights: { sha256?: string; files: string[] };
  example?: ExampleCells;
}

function meanOffset(c: ModelConfig, mode: Mode, layer: number, head: number, pos: number): { enc: boolean; at: number; len: number } {
  const row = mode === 'zero-shot' && pos > 0 ? pos + ZERO_SHOT_SHIFT : pos;
  if (layer < c.encDepth) {
    const hd = c.encDim / c.encHeads;
    return { enc: true, at: (layer * ONE_SHOT_ENC_TOKENS + row) * c.encDim + head * hd, len: hd };
  }
  const hd = c.decDim / c.decHeads;
  return { enc: false, at: ((layer - c.encDepth) * ONE_SHOT_DEC_TOKENS + row) * c.decDim + head * hd, len: hd };
}

export class TaskVector {
  private constructor(readonly data: TaskVectorData) {}

  static fromData(d: TaskVectorData): TaskVector {
    return new TaskVector(d);
  }

  get task(): string {
    return this.data.task;
  }
  get config(): ModelConfig {
    return this.data.config;
  }
  /** Number of patched (layer, head, position) triples. */
  get size(): number {
    return this.data.patches.length / 3;
  }

  /**
   * The task vector of `task` in a run: its searched subset (its own, or the multi-task one that holds
   * it), its means and, for --compare, the best kept prompt's example. `weightsSha256` is computed from
   * the run's weights unless given (or false: not computed).
   */
  static fromRun(
    paths: RunPaths,
    config: ModelConfig,
    task: string,
    run: { weights: string[]; dataset?: () => SegmentationDataset },
    weightsSha256?: string | false,
  ): TaskVector {
    const own = paths.subset(task);
    const subsetPath = existsSync(own) ? own : paths.subset(MULTITASK);
    if (!existsSync(subsetPath)) throw new InputError(`task '${task}' has no searched subset: run \`vtv search --task ${task}\` first (${own} does not exist)`);
    const s = readSubsetFile(subsetPath, config);
    if (subsetPath !== own && !s.file.tasks.includes(task)) {
      throw new InputError(`task '${task}' has no searched subset: ${own} does not exist and the multi-task search covers ${s.file.tasks.join(', ')}`);
    }
    const means = readMeansFile(paths.means, config, [task]).get(task)!.means;
    const triples = s.space.triples(s.choice);
    const pairsPath = paths.pairsTask(task);
    let example: ExampleCells | undefined;
    let metric: MetricName | undefined;
    if (existsSync(pairsPath)) {
      const pt = PairsTask.read(pairsPath);
      metric = pt.metric;
      const ex = pt.bestExample();
      example = { input: cellBytes(ex.inputCell), output: cellBytes(ex.outputCell) };
    } else {
      metric = getTask(task).metric;
      example = builtInExample(paths, task, run.dataset);
    }
    return TaskVector.fromData({
      task,
      metric,
      config,
      granularity: s.space.granularity,
      mode: s.space.mode,
      chosen: s.file.chosen,
      patches: Int32Array.from(triples.flat()),
      means,
      weights: { sha256: weightsSha256 === false ? undefined : (weightsSha256 ?? weightsChecksum(run.weights)), files: run.weights.map((w) => basename(w)) },
      example,
    });
  }

  /** Reads a file written by `save` (or `vtv export`). */
  static load(path: string): TaskVector {
    if (!existsSync(path)) throw new InputError(`task-vector file ${path} does not exist`);
    let file: ReturnType<typeof readSafetensors>;
    try {
      file = readSafetensors(path);
    } catch (e) {
      throw new InputError(`${path} is not a readable task-vector file: ${(e as Error).message}`);
    }
    const m = file.metadata;
    if (m.vtv_task_vector !== TASK_VECTOR_FORMAT) {
      throw new InputError(`${path} is not a vtv task-vector file (format ${TASK_VECTOR_FORMAT}); make one with \`vtv export --run R --task T\``);
    }
    const config = ModelConfigSchema.parse(JSON.parse(m.vtv_config ?? 'null'));
    const get = (k: string) => {
      const t = file.tensors.get(k);
      if (!t) throw new InputError(`${path}: tensor '${k}' is missing`);
      return t;
    };
    const patches = Int32Array.from(get('patches').data as Int32Array);
    const mode = m.mode as Mode;
    if (mode !== 'zero-shot' && mode !== 'one-shot') throw new InputError(`${path}: mode '${m.mode}' is not zero-shot or one-shot`);
    const means: TaskMeans = { enc: new Float32Array(meansEncFloats(config)), dec: new Float32Array(meansDecFloats(config)) };
    const encMeans = get('enc_means').data as Float32Array;
    const decMeans = get('dec_means').data as Float32Array;
    let ei = 0;
    let di = 0;
    const layers = config.encDepth + config.decDepth;
    const tokens = mode === 'zero-shot' ? [ZERO_SHOT_ENC_TOKENS, ZERO_SHOT_DEC_TOKENS] : [ONE_SHOT_ENC_TOKENS, ONE_SHOT_DEC_TOKENS];
    for (let k = 0; k < patches.length; k += 3) {
      const [l, h, p] = [patches[k]!, patches[k + 1]!, patches[k + 2]!];
      const enc = l < config.encDepth;
      if (l < 0 || l >= layers || h < 0 || h >= (enc ? config.encHeads : config.decHeads) || p < 0 || p >= tokens[enc ? 0 : 1]!) {
        throw new InputError(`${path}: patch (${l}, ${h}, ${p}) is outside model '${config.name}'`);
      }
      const o = meanOffset(config, mode, l, h, p);
      const src = enc ? encMeans : decMeans;
      const i = enc ? ei++ : di++;
      if ((i + 1) * o.len > src.length) throw new InputError(`${path}: ${enc ? 'enc' : 'dec'}_means is too short for its patches`);
      (enc ? means.enc : means.dec).set(src.subarray(i * o.len, (i + 1) * o.len), o.at);
    }
    const example = file.tensors.has('example.input')
      ? { input: get('example.input').data as Uint8Array, output: get('example.output').data as Uint8Array }
      : undefined;
    return TaskVector.fromData({
      task: m.task ?? '?',
      metric: (m.metric as MetricName | undefined) || undefined,
      config,
      granularity: Number(m.granularity) as Granularity,
      mode,
      chosen: JSON.parse(m.chosen ?? '[]') as number[],
      patches,
      means,
      weights: { sha256: m.weights_sha256 || undefined, files: JSON.parse(m.weights_files ?? '[]') as string[] },
      example,
    });
  }

  /** Writes the portable file: the patches, only the means they read, the model's identity. */
  save(path: string): number {
    const d = this.data;
    const c = d.config;
    const enc: number[] = [];
    const dec: number[] = [];
    for (let k = 0; k < d.patches.length; k += 3) {
      const o = meanOffset(c, d.mode, d.patches[k]!, d.patches[k + 1]!, d.patches[k + 2]!);
      const src = o.enc ? d.means.enc : d.means.dec;
      for (let j = 0; j < o.len; j++) (o.enc ? enc : dec).push(src[o.at + j]!);
    }
    const n = d.patches.length / 3;
    const t = new Map<string, SafeTensor>();
    t.set('patches', { dtype: 'I32', shape: [n, 3], data: d.patches });
    t.set('enc_means', { dtype: 'F32', shape: [enc.length / (c.encDim / c.encHeads), c.encDim / c.encHeads], data: Float32Array.from(enc) });
    t.set('dec_means', { dtype: 'F32', shape: [dec.length / (c.decDim / c.decHeads), c.decDim / c.decHeads], data: Float32Array.from(dec) });
    if (d.example) {
      t.set('example.input', { dtype: 'U8', shape: [3, CELL, CELL], data: d.example.input });
      t.set('example.output', { dtype: 'U8', shape: [3, CELL, CELL], data: d.example.output });
    }
    return writeSafetensors(path, t, {
      vtv_task_vector: TASK_VECTOR_FORMAT,
      task: d.task,
      metric: d.metric ?? '',
      granularity: String(d.granularity),
      mode: d.mode,
      chosen: JSON.stringify(d.chosen),
      vtv_config: JSON.stringify(c),
      model: c.name,
      weights_sha256: d.weights.sha256 ?? '',
      weights_files: JSON.stringify(d.weights.files),
    });
  }

  /** One sample's patch mask for this model. */
  mask(): Uint8Array {
    const d = this.data;
    const m = new Uint8Array(patchBytes(d.config, d.mode));
    for (let k = 0; k < d.patches.length; k += 3) {
      const bit = patchBitIndex(d.config, d.mode, d.patches[k]!, d.patches[k + 1]!, d.patches[k + 2]!);
      m[bit >> 3]! |= 1 << (bit & 7);
    }
    return m;
  }

  /**
   * Refuses weights other than the ones the task vector was found with, naming both. `sha256` is the
   * given weights' checksum (weightsChecksum).
   */
  checkWeights(sha256: string, given: readonly string[], source = `task vector '${this.task}'`): void {
    const want = this.data.weights.sha256;
    if (!want) return;
    if (want !== sha256) {
      throw new InputError(
        `${source} was made for weights ${this.data.weights.files.join(' + ') || '?'} (sha256 ${want}), ` +
          `not for ${given.join(' + ')} (sha256 ${sha256}): apply it with the weights it was found with`,
      );
    }
  }
}

/** The example of a built-in task's best kept prompt, rebuilt from the dataset (undefined if it cannot be). */
function builtInExample(paths: RunPaths, task: string, dataset?: () => SegmentationDataset): ExampleCells | undefined {
  if (!dataset || !existsSync(paths.prompts)) return undefined;
  const prompts = JSON.parse(readFileSync(paths.prompts, 'utf8')) as {
    options?: { seed: number };
    tasks: Record<string, { fold: number; index: number; support: string; classId: number }[]>;
  };
  const best = prompts.tasks[task]?.[0];
  if (!best || !prompts.options) return undefined;
  const ds = dataset();
  const ref = ds.episodeRefs({ split: 'trn', fold: best.fold }, prompts.options.seed, 1, best.index)[0]!;
  const { cells } = buildTaskCanvas(getTask(task), ds.loadEpisode({ ...ref, supportId: best.support, classId: best.classId }));
  return { input: cellBytes(cells.exampleInput), output: cellBytes(cells.exampleOutput) };
}

export interface ApplyOptions {
  /** Images per engine call (default 16). */
  batch?: number;
  /** Also the plain zero-shot output and a one-shot output with the example. */
  compare?: boolean;
  /** The one-shot example for compare (default: the task vector's own, from the run's best prompt). */
  example?: { input: Image8; output: Image8 } | ExampleCells;
  onProgress?: (done: number, total: number) => void;
}

export interface ApplyResult {
  /** The query as the model sees it, 111x111. */
  input: RgbImage;
  /** The zero-shot output with the task vector patched in, 111x111. */
  taskVector: RgbImage;
  zeroShot?: RgbImage;
  oneShot?: RgbImage;
}

const WHITE_CELL = new Float32Array(CELL_FLOATS).fill(1);

function exampleCells(ex: NonNullable<ApplyOptions['example']>): [Cell, Cell] {
  if (ex.input instanceof Uint8Array) return [bytesCell(ex.input), bytesCell((ex as ExampleCells).output)];
  const e = ex as { input: Image8; output: Image8 };
  return [imageCell(toRgb(e.input)), imageCell(toRgb(e.output))];
}

/**
 * The task vector on images of any size: each is prepared as a query cell (bicubic to 111x111) and run
 * zero-shot with the task vector patched in, in batches; with `compare`, also plain zero-shot and
 * one-shot with the example. Outputs are the 111x111 output cells.
 */
export async function applyTaskVector(engine: ForwardEngine, tv: TaskVector, images: readonly Image8[], opt: ApplyOptions = {}): Promise<ApplyResult[]> {
  if (!sameShapes(tv.config, engine.config)) {
    throw new InputError(`task vector '${tv.task}' was made for model '${tv.config.name}', whose shapes differ from the engine's '${engine.config.name}'`);
  }
  const batch = opt.batch ?? 16;
  if (!Number.isInteger(batch) || batch < 1) throw new InputError(`apply: batch must be a positive integer, got ${batch}`);
  const example = opt.example ?? tv.data.example;
  if (opt.compare && !example) throw new InputError(`apply: --compare needs an example pair: task vector '${tv.task}' carries none, pass one`);
  const [exIn, exOut] = example ? exampleCells(example) : [WHITE_CELL, WHITE_CELL];
  const mask = tv.mask();
  const means = await engine.bindTaskMeans(tv.data.means);
  const out: ApplyResult[] = [];
  for (let off = 0; off < images.length; off += batch) {
    const chunk = images.slice(off, off + batch);
    // Prepared as the pairs are (src/data/pairs.ts), so an image gives the cell it has in a pairs task.
    const queries = chunk.map((img) => imageCell(toRgb(img)));
    const canvases = new Float32Array(chunk.length * CANVAS_FLOATS);
    queries.forEach((q, i) => canvases.set(buildCanvas([exIn, exOut, q, WHITE_CELL]), i * CANVAS_FLOATS));
    const masks = new Uint8Array(chunk.length * mask.length);
    for (let i = 0; i < chunk.length; i++) masks.set(mask, i * mask.length);
    const run = async (mode: Mode, patched: boolean) =>
      (await engine.forward({ mode, canvases, outputs: { images: true }, ...(patched ? { patch: { means, masks } } : {}) })).images!;
    const cellOf = (images: Uint8Array, i: number) =>
      planarToImage(cropCell(images.subarray(i * CANVAS_FLOATS, (i + 1) * CANVAS_FLOATS), CELL_START, CELL_START), CELL, CELL) as RgbImage;
    const tvImages = await run(tv.data.mode, true);
    const zs = opt.compare ? await run('zero-shot', false) : undefined;
    const os = opt.compare ? await run('one-shot', false) : undefined;
    queries.forEach((q, i) => {
      out.push({
        input: planarToImage(cellBytes(q), CELL, CELL) as RgbImage,
        taskVector: cellOf(tvImages, i),
        ...(zs ? { zeroShot: cellOf(zs, i) } : {}),
        ...(os ? { oneShot: cellOf(os, i) } : {}),
      });
    });
    opt.onProgress?.(out.length, images.length);
  }
  return out;
}

function toRgb(img: Image8): RgbImage {
  if (img.channels === 3) return img as RgbImage;
  const data = new Uint8Array(img.width * img.height * 3);
  for (let i = 0; i < img.width * img.height; i++) data.fill(img.data[i]!, 3 * i, 3 * i + 3);
  return { width: img.width, height: img.height, channels: 3, data };
}
