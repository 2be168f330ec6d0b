// Training data for the shipped small model (train/README.md): prompt canvases of the project's own
// tasks, built with the very code collect/search/eval use (scene generator, bicubic cell preparation,
// task rules, canvas layout), so training and evaluation see the same distribution. Scenes come from
// the bundled-data generator under a training seed, so data/bundled/ (the evaluation images) is held out.
//
// Writes <out>/canvases.u8: N canvases, each 224x224x3 uint8 (HWC; the 8-bit pixels the normalised
// canvas was made from), and <out>/canvases.json: the task and class of each canvas, the seed, counts.
//
// Run: npx tsx train/make_data.ts --out train/data --scenes-per-class 600 --canvases 12000 --seed 1
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CELL, IMAGE } from '../src/config.js';
import { BUNDLED_CLASSES } from '../src/data/bundled.js';
import { BUNDLED_JPEG_QUALITY, BUNDLED_SEED, generateBundledImage } from '../src/data/bundled-generator.js';
import { CELL_ORIGIN, type CanvasCells } from '../src/data/canvas.js';
import type { Sample } from '../src/data/dataset.js';
import { decodeJpeg, encodeJpeg } from '../src/data/image.js';
import { type PreparedSample, prepareSample } from '../src/data/prepare.js';
import { Rng } from '../src/data/rng.js';
import { blackSquare, drawSquare, grayscaleCell, lowLight } from '../src/data/tasks/ops.js';
import { getTask, type Task } from '../src/data/tasks/index.js';

// Training-only tasks. Each shares its query kind with one of the project's tasks but asks for a
// different output, so the query alone no longer tells the model what to do: only the example pair
// does. Without them every task is identified by its query (a dark query is always low-light
// enhancement, a grey one colorization), a zero-shot forward does as well as a one-shot one, and
// there is no gap for a task vector to close.
type TrainTask = { id: string; cells: Task['cells'] };
const TRAIN_ONLY: Record<string, TrainTask> = {
  // photo -> the class mask inverted (black object on white): segmentation's query, opposite output
  segmentation_inverted: {
    id: 'segmentation_inverted',
    cells: ({ support, query }) => ({
      exampleInput: support.imageCell,
      exampleOutput: support.maskCell.map((v) => 1 - v),
      queryInput: query.imageCell,
      queryOutput: query.maskCell.map((v) => 1 - v),
    }),
  },
  // dark photo -> the same dark photo (low-light enhancement's query)
  lowlight_copy: {
    id: 'lowlight_copy',
    cells: ({ support, query }) => ({
      exampleInput: lowLight(support.imageCell),
      exampleOutput: lowLight(support.imageCell),
      queryInput: lowLight(query.imageCell),
      queryOutput: lowLight(query.imageCell),
    }),
  },
  // grey photo -> the same grey photo (colorization's query)
  gray_copy: {
    id: 'gray_copy',
    cells: ({ support, query }) => ({
      exampleInput: grayscaleCell(support.image),
      exampleOutput: grayscaleCell(support.image),
      queryInput: grayscaleCell(query.image),
      queryOutput: grayscaleCell(query.image),
    }),
  },
  // photo with a black square -> the same (inpainting's query)
  inpaint_copy: {
    id: 'inpaint_copy',
    cells: ({ support, query }, rng) => {
      const sq = drawSquare(rng);
      return {
        exampleInput: blackSquare(support.imageCell, sq),
        exampleOutput: blackSquare(support.imageCell, sq),
        queryInput: blackSquare(query.imageCell, sq),
        queryOutput: blackSquare(query.imageCell, sq),
      };
    },
  },
};
const trainTask = (name: string): TrainTask => TRAIN_ONLY[name] ?? getTask(name);

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: join('train', 'data') },
    'scenes-per-class': { type: 'string', default: '600' },
    canvases: { type: 'string', default: '12000' },
    seed: { type: 'string', default: '1' },
    tasks: {
      type: 'string',
      default: 'segmentation,segmentation_inverted,identity,lowlight_enhance,lowlight_copy,colorization,gray_copy,inpaint,inpaint_copy',
    },
  },
});
const seed = Number(values.seed);
if (seed === BUNDLED_SEED) throw new Error(`make_data: seed ${seed} is the bundled (evaluation) data's seed; pick another`);
const perClass = Number(values['scenes-per-class']);
const count = Number(values.canvases);
const tasks = (values.tasks as string).split(',');
for (const t of tasks) trainTask(t); // an unknown name fails here, before any work
const out = values.out as string;
mkdirSync(out, { recursive: true });

// Scenes: generated, then stored as JPEG and decoded, as the bundled images are.
const t0 = performance.now();
const scenes: PreparedSample[][] = [];
for (let classId = 1; classId <= BUNDLED_CLASSES.length; classId++) {
  const list: PreparedSample[] = [];
  for (let n = 0; n < perClass; n++) {
    const b = generateBundledImage(classId, n, seed);
    const sample: Sample = { id: b.id, image: decodeJpeg(encodeJpeg(b.image, BUNDLED_JPEG_QUALITY)), labels: b.labels };
    list.push(prepareSample(sample, classId));
  }
  scenes.push(list);
}
console.log(`make_data: ${perClass * BUNDLED_CLASSES.length} scenes in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

function canvasBytes(cells: CanvasCells): Uint8Array {
  const img = new Uint8Array(IMAGE * IMAGE * 3).fill(255);
  for (const key of Object.keys(CELL_ORIGIN) as (keyof CanvasCells)[]) {
    const [r0, c0] = CELL_ORIGIN[key];
    const cell = cells[key];
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < CELL; y++)
        for (let x = 0; x < CELL; x++) img[((r0 + y) * IMAGE + c0 + x) * 3 + c] = Math.round((cell[c * CELL * CELL + y * CELL + x] as number) * 255);
  }
  return img;
}

const rng = Rng.fromSeed(seed).fork('canvases');
const fd = openSync(join(out, 'canvases.u8'), 'w');
const meta: { task: number; classId: number }[] = [];
for (let i = 0; i < count; i++) {
  const classId = rng.int(1, BUNDLED_CLASSES.length);
  const pool = scenes[classId - 1] as PreparedSample[];
  const q = rng.int(0, pool.length - 1);
  let s = rng.int(0, pool.length - 2);
  if (s >= q) s++;
  const taskIndex = i % tasks.length;
  const task = trainTask(tasks[taskIndex] as string);
  const cells = task.cells({ classId, support: pool[s] as PreparedSample, query: pool[q] as PreparedSample }, rng.fork(`task/${i}`));
  writeSync(fd, canvasBytes(cells));
  meta.push({ task: taskIndex, classId });
}
closeSync(fd);
writeFileSync(join(out, 'canvases.json'), JSON.stringify({ format: 'vtv-train-canvases', seed, scenesPerClass: perClass, count, tasks, layout: '[N][224][224][3] uint8', canvases: meta }));
console.log(`make_data: ${count} canvases -> ${out}/canvases.u8 in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
