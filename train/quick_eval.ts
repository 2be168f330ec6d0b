// A quick look at a trained checkpoint during development: one-shot vs zero-shot metric per task on
// held-out episodes of the bundled data (data/bundled/, never seen in training).
// Run: npx tsx train/quick_eval.ts train/out/mae-vqgan-mini.safetensors [episodesPerFold]   (VTV_THREADS=n: engine threads, default 2)
import { preset } from '../src/config.js';
import { openBundled } from '../src/data/bundled.js';
import { buildTaskCanvas } from '../src/data/episode-canvas.js';
import { getTask } from '../src/data/tasks/index.js';
import { CANVAS_FLOATS, Engine } from '../src/engine.js';

const weights = process.argv[2] ?? 'train/out/mae-vqgan-mini.safetensors';
const perFold = Number(process.argv[3] ?? 6);
const engine = await Engine.open({ config: preset('mini'), weights, backend: 'cpu', threads: Number(process.env.VTV_THREADS ?? 2) });
const ds = openBundled();
for (const taskId of ['segmentation', 'lowlight_enhance', 'inpaint', 'colorization']) {
  const task = getTask(taskId);
  const canvases: Float32Array[] = [];
  for (let fold = 0; fold < ds.folds; fold++)
    for (const ep of ds.episodes({ split: 'val', fold }, 0, perFold)) canvases.push(buildTaskCanvas(task, ep).canvas);
  const all = new Float32Array(canvases.length * CANVAS_FLOATS);
  canvases.forEach((c, i) => all.set(c, i * CANVAS_FLOATS));
  const row: string[] = [];
  for (const mode of ['one-shot', 'zero-shot'] as const) {
    const r = await engine.forward({ mode, canvases: all, loss: task.metric });
    const m = r.metrics as Float32Array;
    row.push(`${mode} ${(m.reduce((a, b) => a + b, 0) / m.length).toFixed(4)}`);
  }
  console.log(`${taskId} (${task.metric}, ${canvases.length} episodes): ${row.join('  ')}`);
}
engine.close();
