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
import { getTask, type TaskId } from '../src/data/tasks/index.js';

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: join('train', 'data') },
    'scenes-per-class': { type: 'string', default: '600' },
    canvases: { type: 'string', default: '12000' },
    seed: { type: 'string', default: '1' },
    tasks: { type: 'string', default: 'segmentation,lowlight_enhance,identity,inpaint,colorization' },
  },
});
const seed = Number(values.seed);
if (seed === BUNDLED_SEED) throw new Error(`make_data: seed ${seed} is the bundled (evaluation) data's seed; pick another`);
const perClass = Number(values['scenes-per-class']);
const count = Number(values.canvases);
const tasks = (values.tasks as string).split(',') as TaskId[];
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
  const task = getTask(tasks[taskIndex] as TaskId);
  const cells = task.cells({ classId, support: pool[s] as PreparedSample, query: pool[q] as PreparedSample }, rng.fork(`task/${i}`));
  writeSync(fd, canvasBytes(cells));
  meta.push({ task: taskIndex, classId });
}
closeSync(fd);
writeFileSync(join(out, 'canvases.json'), JSON.stringify({ format: 'vtv-train-canvases', seed, scenesPerClass: perClass, count, tasks, layout: '[N][224][224][3] uint8', canvases: meta }));
console.log(`make_data: ${count} canvases -> ${out}/canvases.u8 in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
