// `vtv eval` (docs/method.md#evaluation): on the same validation episodes per task and fold, compare one-shot prompting,
// zero-shot without patching, zero-shot patched with the task vector (the searched subset), and
// zero-shot patched with a random subset of the same size (drawn afresh per fold, seeded).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CELL, CELL_START, IMAGE } from '../config.js';
import { canvasToPixels, planarToImage } from '../data/canvas.js';
import type { SegmentationDataset } from '../data/dataset.js';
import { buildTaskCanvas, type TaskCanvas } from '../data/episode-canvas.js';
import { writePngFile } from '../data/image.js';
import { Rng } from '../data/rng.js';
import { getTask } from '../data/tasks/index.js';
import { CANVAS_FLOATS, type ForwardRequest, type TaskMeans } from '../engine.js';
import { InputError } from '../errors.js';
import { psnr } from '../metrics/psnr.js';
import { ssim } from '../metrics/ssim.js';
import type { ForwardEngine } from './forward-engine.js';
import { probabilities, sampleChoices } from './policy.js';
import type { VariableSpace } from './variables.js';

export const CONDITIONS = ['oneShot', 'zeroShot', 'taskVector', 'random'] as const;
export type Condition = (typeof CONDITIONS)[number];
export const CONDITION_LABEL: Record<Condition, string> = {
  oneShot: 'one-shot',
  zeroShot: 'zero-shot',
  taskVector: 'task vector',
  random: 'random subset',
};

const FILE_LABEL: Record<Condition, string> = { oneShot: 'one-shot', zeroShot: 'zero-shot', taskVector: 'task-vector', random: 'random' };

/**
 * Where a task's evaluation episodes come from when it is not a built-in task over the dataset (a task
 * given by example pairs): its metric, its folds and seeded episodes that build their canvases.
 */
export interface EpisodeSource {
  metric: 'iou' | 'mse';
  folds: number[];
  episodes(fold: number, seed: number, count: number): { index: number; build: () => TaskCanvas }[];
}

export interface EvalTask {
  name: string;
  /** Default: the built-in task `name` over the dataset's validation folds. */
  source?: EpisodeSource;
  means: TaskMeans;
  space: VariableSpace;
  /** The searched subset (used for every fold unless drawPerFold). */
  choice: Uint8Array;
  /** The search's selected logits, for drawPerFold. */
  logits?: Float64Array;
}

export interface EvalOptions {
  folds: number[]; // reference: all 4 val folds
  episodes: number; // per fold; reference 1000
  seed: number;
  batch: number;
  examples: number; // episodes per (task, fold) saved as PNGs
  /** The reference's reinforce_evaluate: a fresh Bernoulli draw from the logits for each fold (seeded). */
  drawPerFold?: boolean;
  examplesDir?: (task: string) => string;
}

export interface EvalRow {
  task: string;
  fold: number;
  metric: 'iou' | 'mse';
  episodes: number;
  subsetSize: number;
  oneShot: number;
  zeroShot: number;
  taskVector: number;
  random: number;
  /** Image tasks (MSE metric) only: mean PSNR (dB, on 0..255) and SSIM of the output cell per condition. */
  psnr?: Record<Condition, number>;
  ssim?: Record<Condition, number>;
}

export interface EvalResults {
  format: 'vtv-eval';
  version: 1;
  model: string;
  dataset: string;
  seed: number;
  episodesPerFold: number;
  rows: EvalRow[];
  /** Per task: the mean over folds of each condition. */
  summary: EvalRow[];
}

/** One 111x111 cell, [3][111][111], of an 8-bit canvas [3][224][224] at (y0, x0). */
export function cropCell(planar: Uint8Array, y0: number, x0: number): Uint8Array {
  const out = new Uint8Array(3 * CELL * CELL);
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < CELL; y++) for (let x = 0; x < CELL; x++) out[(c * CELL + y) * CELL + x] = planar[c * IMAGE * IMAGE + (y0 + y) * IMAGE + x0 + x]!;
  return out;
}

function randomChoice(space: VariableSpace, size: number, rng: Rng): Uint8Array {
  const idx = rng.shuffle(Array.from({ length: space.count }, (_, i) => i));
  const c = new Uint8Array(space.count);
  for (const v of idx.slice(0, size)) c[v] = 1;
  return c;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const meanPerCondition = (v: Record<Condition, number[]>): Record<Condition, number> =>
  Object.fromEntries(CONDITIONS.map((c) => [c, mean(v[c])])) as Record<Condition, number>;

export async function evaluateTaskVectors(
  engine: ForwardEngine,
  ds: SegmentationDataset | undefined,
  tasks: EvalTask[],
  opt: EvalOptions,
  onProgress?: (done: number, total: number) => void,
): Promise<EvalResults> {
  const rows: EvalRow[] = [];
  const perFold = (t: EvalTask, fold: number) => (t.source ? t.source.episodes(fold, opt.seed, opt.episodes).length : opt.episodes);
  const total = tasks.reduce((a, t) => a + (t.source?.folds ?? opt.folds).reduce((b, f) => b + perFold(t, f), 0), 0);
  let done = 0;
  for (const t of tasks) {
    const task = t.source ? { metric: t.source.metric } : getTask(t.name);
    // Checked once per task and kept where the engine reads them, for every fold and batch.
    const means = await engine.bindTaskMeans(t.means);
    for (const fold of t.source?.folds ?? opt.folds) {
      let choice = t.choice;
      if (opt.drawPerFold) {
        if (!t.logits) throw new InputError(`eval: drawing per fold needs the search logits of '${t.name}'`);
        choice = sampleChoices(probabilities(t.logits), 1, Rng.fromSeed(opt.seed).fork(`subset/${t.name}/${fold}`));
      }
      const size = choice.reduce((a, b) => a + b, 0);
      let refs: { index: number; build: () => TaskCanvas }[];
      if (t.source) refs = t.source.episodes(fold, opt.seed, opt.episodes);
      else {
        if (!ds) throw new InputError(`eval: task '${t.name}' needs a dataset`);
        const spec = { split: 'val' as const, fold };
        if (ds.entries(spec).length === 0) throw new InputError(`eval: ${ds.name} val fold ${fold} is empty`);
        const builtIn = getTask(t.name);
        refs = ds.episodeRefs(spec, opt.seed, opt.episodes).map((r) => ({ index: r.index, build: () => buildTaskCanvas(builtIn, ds.loadEpisode(r)) }));
      }
      const rng = Rng.fromSeed(opt.seed).fork(`random-subset/${t.name}/${fold}`);
      const rnd = randomChoice(t.space, size, rng);
      const masks = { taskVector: t.space.masks(choice, 1), random: t.space.masks(rnd, 1) };
      const scores: Record<Condition, number[]> = { oneShot: [], zeroShot: [], taskVector: [], random: [] };
      // Image tasks are also scored with PSNR and SSIM, which users compare with (VTV itself reports MSE).
      const imageTask = task.metric === 'mse';
      const psnrs: Record<Condition, number[]> = { oneShot: [], zeroShot: [], taskVector: [], random: [] };
      const ssims: Record<Condition, number[]> = { oneShot: [], zeroShot: [], taskVector: [], random: [] };
      for (let off = 0; off < refs.length; off += opt.batch) {
        const chunk = refs.slice(off, off + opt.batch);
        const built = chunk.map((r) => r.build());
        const canvases = new Float32Array(built.length * CANVAS_FLOATS);
        built.forEach((b, i) => canvases.set(b.canvas, i * CANVAS_FLOATS));
        const wantImages = opt.examplesDir !== undefined && off < opt.examples;
        const images: Partial<Record<Condition, Uint8Array>> = {};
        for (const cond of CONDITIONS) {
          const req: ForwardRequest = {
            mode: cond === 'oneShot' ? 'one-shot' : t.space.mode,
            canvases,
            loss: task.metric,
            outputs: { images: wantImages || imageTask },
          };
          if (cond === 'zeroShot') req.mode = 'zero-shot';
          if (cond === 'taskVector' || cond === 'random') {
            const one = masks[cond];
            const m = new Uint8Array(built.length * one.length);
            for (let i = 0; i < built.length; i++) m.set(one, i * one.length);
            req.patch = { means, masks: m };
          }
          const r = await engine.forward(req);
          scores[cond].push(...r.metrics!);
          if (r.images) images[cond] = r.images;
          if (imageTask) {
            for (let i = 0; i < built.length; i++) {
              const cell = cropCell(r.images!.subarray(i * CANVAS_FLOATS, (i + 1) * CANVAS_FLOATS), CELL_START, CELL_START);
              // PSNR of identical cells is Infinity; cap at 100 dB so means stay finite.
              psnrs[cond].push(Math.min(100, psnr(built[i]!.target, cell)));
              ssims[cond].push(ssim(built[i]!.target, cell));
            }
          }
        }
        if (wantImages) {
          const dir = opt.examplesDir!(t.name);
          mkdirSync(dir, { recursive: true });
          for (let i = 0; i < Math.min(built.length, opt.examples - off); i++) {
            const name = (what: string) => join(dir, `fold${fold}_${String(chunk[i]!.index).padStart(4, '0')}_${what}.png`);
            const px = canvasToPixels(built[i]!.canvas);
            writePngFile(name('example-input'), planarToImage(cropCell(px, 0, 0), CELL, CELL));
            writePngFile(name('example-output'), planarToImage(cropCell(px, 0, CELL_START), CELL, CELL));
            writePngFile(name('query'), planarToImage(cropCell(px, CELL_START, 0), CELL, CELL));
            writePngFile(name('target'), planarToImage(built[i]!.target, CELL, CELL));
            for (const cond of CONDITIONS) {
              const img = images[cond]!.subarray(i * CANVAS_FLOATS, (i + 1) * CANVAS_FLOATS);
              writePngFile(name(FILE_LABEL[cond]), planarToImage(cropCell(img, CELL_START, CELL_START), CELL, CELL));
            }
          }
        }
        done += chunk.length;
        onProgress?.(done, total);
      }
      rows.push({
        task: t.name,
        fold,
        metric: task.metric,
        episodes: refs.length,
        subsetSize: size,
        oneShot: mean(scores.oneShot),
        zeroShot: mean(scores.zeroShot),
        taskVector: mean(scores.taskVector),
        random: mean(scores.random),
        ...(imageTask ? { psnr: meanPerCondition(psnrs), ssim: meanPerCondition(ssims) } : {}),
      });
    }
  }
  const summary: EvalRow[] = tasks.map((t) => {
    const rs = rows.filter((r) => r.task === t.name);
    return {
      task: t.name,
      fold: -1,
      metric: rs[0]!.metric,
      episodes: rs.reduce((a, r) => a + r.episodes, 0),
      subsetSize: Math.round(mean(rs.map((r) => r.subsetSize))),
      oneShot: mean(rs.map((r) => r.oneShot)),
      zeroShot: mean(rs.map((r) => r.zeroShot)),
      taskVector: mean(rs.map((r) => r.taskVector)),
      random: mean(rs.map((r) => r.random)),
      ...(rs[0]!.psnr
        ? {
            psnr: meanPerCondition(Object.fromEntries(CONDITIONS.map((c) => [c, rs.map((r) => r.psnr![c])])) as Record<Condition, number[]>),
            ssim: meanPerCondition(Object.fromEntries(CONDITIONS.map((c) => [c, rs.map((r) => r.ssim![c])])) as Record<Condition, number[]>),
          }
        : {}),
    };
  });
  const dataset = [...new Set(tasks.map((t) => (t.source ? `pairs:${t.name}` : ds!.name)))].join(', ');
  return { format: 'vtv-eval', version: 1, model: engine.config.name, dataset, seed: opt.seed, episodesPerFold: opt.episodes, rows, summary };
}

/** The results as a Markdown table: IoU in percent (higher is better), MSE as is (lower is better). */
export function resultsMarkdown(r: EvalResults): string {
  const fmt = (row: EvalRow, v: number) => (row.metric === 'iou' ? (100 * v).toFixed(2) : v.toFixed(4));
  const lines = [
    `# vtv eval: ${r.model} on ${r.dataset} (${r.episodesPerFold} episodes per fold, seed ${r.seed})`,
    '',
    'mIoU in % for segmentation (higher is better), MSE for the other tasks (lower is better).',
    '',
    '| task | fold | metric | one-shot | zero-shot | task vector | random subset | subset size |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const row of [...r.rows, ...r.summary]) {
    lines.push(
      `| ${row.task} | ${row.fold < 0 ? 'mean' : row.fold} | ${row.metric === 'iou' ? 'mIoU' : 'MSE'} | ${fmt(row, row.oneShot)} | ${fmt(row, row.zeroShot)} | ${fmt(row, row.taskVector)} | ${fmt(row, row.random)} | ${row.subsetSize} |`,
    );
  }
  const imageRows = [...r.rows, ...r.summary].filter((row) => row.psnr && row.ssim);
  if (imageRows.length) {
    lines.push('', 'Image tasks, also as PSNR (dB, higher is better) / SSIM (higher is better) of the output cell:', '');
    lines.push('| task | fold | one-shot | zero-shot | task vector | random subset |', '|---|---|---|---|---|---|');
    for (const row of imageRows) {
      const cell = (c: Condition) => `${row.psnr![c].toFixed(2)} / ${row.ssim![c].toFixed(4)}`;
      lines.push(
        `| ${row.task} | ${row.fold < 0 ? 'mean' : row.fold} | ${cell('oneShot')} | ${cell('zeroShot')} | ${cell('taskVector')} | ${cell('random')} |`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}
