// `vtv apply`: a task vector on the user's own images (zero-shot, the task vector patched in), from a
// run (--run R --task T) or from an exported file (--task-vector FILE --weights W); `vtv export` writes
// that file.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { CELL, preset } from '../config.js';
import { encodePng, type Image8, readImageFile } from '../data/image.js';
import { resolveRunTask } from '../method/pairs-task.js';
import { type ApplyResult, applyTaskVector, TASK_VECTOR_EXT, TaskVector, weightsChecksum } from '../method/task-vector.js';
import { Raster, textHeight, textWidth } from '../report/raster.js';
import {
  checkWeights,
  type Deps,
  defaultDeps,
  type OpenedEngine,
  openDataset,
  openEngine,
  openRun,
  parseIntArg,
  parseList,
  progressBar,
  type RunOptions,
  UsageError,
} from './common.js';
import { addRunOptions } from './run-options.js';

export interface ApplyCliOptions extends RunOptions {
  task?: string;
  taskVector?: string;
  out?: string;
  compare?: boolean;
  example?: string[];
  batch?: number;
}

/** The task vector of a run's task (weights checksum not computed: the run's own weights are used). */
function runTaskVector(o: RunOptions & { task?: string }): { tv: TaskVector; ctx: ReturnType<typeof openRun> } {
  if (!o.task) throw new UsageError('--task <name> is required with a run');
  const ctx = openRun(o, false);
  const task = resolveRunTask(ctx.paths, o.task).id;
  return { tv: TaskVector.fromRun(ctx.paths, ctx.config, task, { weights: ctx.run.weights, dataset: () => openDataset(ctx.run) }, false), ctx };
}

/** A name for each image's output, unique in the output folder. */
function outputNames(paths: string[]): string[] {
  const seen = new Set<string>();
  return paths.map((p) => {
    const stem = basename(p, extname(p));
    let name = stem;
    for (let k = 2; seen.has(name); k++) name = `${stem}-${k}`;
    seen.add(name);
    return name;
  });
}

/** input | one-shot | zero-shot | task vector, side by side with their labels. */
export function comparePng(r: ApplyResult): Uint8Array {
  const panels: [string, Image8][] = [
    ['input', r.input],
    ['one-shot', r.oneShot!],
    ['zero-shot', r.zeroShot!],
    ['task vector', r.taskVector],
  ];
  const gap = 4;
  const top = textHeight() + 8;
  const raster = new Raster(panels.length * (CELL + gap) + gap, CELL + top + gap);
  panels.forEach(([label, img], k) => {
    const x0 = gap + k * (CELL + gap);
    raster.text(label, x0 + Math.max(0, Math.floor((CELL - textWidth(label)) / 2)), 4);
    for (let y = 0; y < CELL; y++)
      for (let x = 0; x < CELL; x++) {
        const i = (y * CELL + x) * 3;
        raster.fillRect(x0 + x, top + y, 1, 1, [img.data[i]!, img.data[i + 1]!, img.data[i + 2]!]);
      }
  });
  return raster.png();
}

export async function applyCommand(images: string[], o: ApplyCliOptions, deps: Deps = defaultDeps): Promise<string[]> {
  if (images.length === 0) throw new UsageError('give one or more images: vtv apply [options] img1.png img2.jpg ...');
  if (!o.out) throw new UsageError('--out <dir> is required: the folder the outputs are written to');
  if (o.batch !== undefined && (!Number.isInteger(o.batch) || o.batch < 1)) throw new UsageError(`--batch must be a positive integer, got ${o.batch}`);
  let tv: TaskVector;
  let engine: OpenedEngine;
  if (o.taskVector) {
    if (o.run || o.task) throw new UsageError('--task-vector FILE replaces --run/--task: give one or the other');
    if (!o.weights?.length) throw new UsageError('--task-vector needs --weights <file.safetensors>: the weights it was made for');
    tv = TaskVector.load(resolve(o.taskVector));
    if (o.model && o.model !== tv.config.name) throw new UsageError(`${o.taskVector} was made for model '${tv.config.name}', not --model '${o.model}'`);
    const config = o.model ? preset(o.model) : tv.config;
    const weights = o.weights.map((w) => resolve(w));
    checkWeights(config, weights);
    tv.checkWeights(weightsChecksum(weights), weights, o.taskVector);
    engine = await deps.openEngine(config, weights, o.backend ?? 'auto', o.threads ?? 0, {}, o.precision ?? 'fp32');
  } else {
    const r = runTaskVector(o);
    tv = r.tv;
    engine = await openEngine(r.ctx, deps, o.threads);
  }
  let example: { input: Image8; output: Image8 } | undefined;
  if (o.example) {
    if (o.example.length !== 2) throw new UsageError(`--example takes two files, input,output; got ${o.example.length}`);
    example = { input: readImageFile(resolve(o.example[0]!)), output: readImageFile(resolve(o.example[1]!)) };
  }
  if (o.compare && !example && !tv.data.example) {
    throw new UsageError(`--compare needs an example: task vector '${tv.task}' carries none, pass --example input.png,output.png`);
  }
  const out = resolve(o.out);
  mkdirSync(out, { recursive: true });
  const names = outputNames(images);
  const written: string[] = [];
  const failed: string[] = [];
  const batch = o.batch ?? 16;
  const bar = progressBar(deps, 'apply', images.length);
  try {
    for (let off = 0; off < images.length; off += batch) {
      // Unreadable files are reported one by one and skipped; the rest go through the engine in one batch.
      const ok: { k: number; img: Image8 }[] = [];
      for (let k = off; k < Math.min(images.length, off + batch); k++) {
        try {
          ok.push({ k, img: readImageFile(resolve(images[k]!)) });
        } catch (e) {
          failed.push(images[k]!);
          deps.log(`apply: skipped ${(e as Error).message}`);
        }
      }
      if (ok.length) {
        const res = await applyTaskVector(
          engine,
          tv,
          ok.map((x) => x.img),
          { batch, compare: o.compare, example },
        );
        res.forEach((r, i) => {
          const base = join(out, names[ok[i]!.k]!);
          writeFileSync(`${base}.png`, encodePng(r.taskVector));
          written.push(`${base}.png`);
          if (o.compare) {
            writeFileSync(`${base}.compare.png`, comparePng(r));
            written.push(`${base}.compare.png`);
          }
        });
      }
      bar.update(Math.min(images.length, off + batch));
    }
  } finally {
    bar.stop();
    await engine.close?.();
  }
  deps.log(`apply: task vector '${tv.task}' (${tv.size} patched head positions) on ${images.length - failed.length} image(s) -> ${out}`);
  if (failed.length) throw new UsageError(`${failed.length} of ${images.length} image(s) could not be read: ${failed.join(', ')}`);
  return written;
}

export async function exportCommand(o: RunOptions & { task?: string; out?: string }, deps: Deps = defaultDeps): Promise<string> {
  if (!o.task) throw new UsageError('--task <name> is required');
  const ctx = openRun(o, false);
  const task = resolveRunTask(ctx.paths, o.task).id;
  const tv = TaskVector.fromRun(ctx.paths, ctx.config, task, { weights: ctx.run.weights, dataset: () => openDataset(ctx.run) });
  const out = resolve(o.out ?? `${task}${TASK_VECTOR_EXT}`);
  if (existsSync(out) && !(o as { force?: boolean }).force) throw new UsageError(`${out} exists: pass --force to replace it`);
  const bytes = tv.save(out);
  deps.log(
    `export: task vector '${task}' (${tv.size} (layer, head, position) patches, granularity ${tv.data.granularity}, model ${tv.config.name}, ` +
      `weights sha256 ${tv.data.weights.sha256}) -> ${out} (${(bytes / 1024).toFixed(1)} KiB)`,
  );
  return out;
}

/** Apply's own copy of the run options: --weights takes one file per flag, so images can follow it. */
function addApplyRunOptions(c: Command): Command {
  return c
    .option('--run <dir>', 'run directory (default runs/<name>)')
    .option('--name <name>', 'run name, for the default run directory', 'default')
    .option('--model <preset>', 'model preset (default: from the run or the task-vector file)')
    .option('--weights <file>', 'with --task-vector: the safetensors weights (repeat the flag for several files)', (v: string, prev: string[] = []) => [
      ...prev,
      v,
    ])
    .addOption(new Option('--backend <name>', 'compute backend').choices(['auto', 'cpu', 'cuda']))
    .addOption(new Option('--precision <p>', 'bf16: tensor cores, the cuda backend only (default fp32)').choices(['fp32', 'bf16']))
    .option('--threads <n>', 'CPU threads (0: all cores)', parseIntArg('--threads'), 0);
}

export function applyProgram(deps: Deps = defaultDeps): Command {
  const c = new Command('apply')
    .description("run a task vector on your own images: per image the zero-shot output with the task vector patched in, as a PNG (111x111, the model's cell)")
    .argument('<images...>', 'PNG or JPEG images, any size');
  addApplyRunOptions(c)
    .option('--task <name>', 'with --run: the task (built-in or from pairs) whose searched subset and means are applied')
    .option('--task-vector <file>', `an exported task vector (${TASK_VECTOR_EXT}, from \`vtv export\`), instead of --run/--task; needs --weights`)
    .requiredOption('--out <dir>', 'output folder: <image>.png, and <image>.compare.png with --compare')
    .option('--compare', 'also write input | one-shot | zero-shot | task vector side by side in <image>.compare.png', false)
    .option('--example <input,output>', "the one-shot example for --compare (default: the run's best kept prompt)", parseList)
    .option('--batch <n>', 'images per engine call', parseIntArg('--batch'), 16)
    .action(async (images: string[], opts: ApplyCliOptions) => {
      await applyCommand(images, opts, deps);
    });
  return c;
}

export function exportProgram(deps: Deps = defaultDeps): Command {
  const c = new Command('export').description(
    "write a task vector as one portable file: the patched (layer, head, position) set, only the means it needs, the granularity, the model and the weights' checksum",
  );
  addRunOptions(c)
    .requiredOption('--task <name>', 'the task (built-in or from pairs) with a searched subset')
    .option('--out <file>', `output file (default <task>${TASK_VECTOR_EXT})`)
    .option('--force', 'replace an existing file', false)
    .action(async (opts: RunOptions & { task?: string; out?: string }) => {
      await exportCommand(opts, deps);
    });
  return c;
}
