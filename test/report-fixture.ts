// Synthetic run directories for the report tests, written with the method's own writers and types
// (run/layout.ts paths, writeMeansFile, makeSubsetFile/writeSubsetFile, writeJsonAtomic, resultsMarkdown,
// writePngFile, StepRecord/SearchState/EvalResults/Taskness): a finished run on the ViT-L shapes, and an
// interrupted one on the tiny model (search stopped half-way with a cut-off log line, no subset, no eval).
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { type ModelConfig, ONE_SHOT_DEC_TOKENS, ONE_SHOT_ENC_TOKENS, preset } from '../src/config.js';
import { makeImage, writePngFile } from '../src/data/image.js';
import { Rng } from '../src/data/rng.js';
import { type EvalResults, type EvalRow, resultsMarkdown } from '../src/method/evaluate.js';
import { probabilities } from '../src/method/policy.js';
import type { SearchState, StepRecord } from '../src/method/reinforce.js';
import type { Taskness } from '../src/method/taskness.js';
import { VariableSpace } from '../src/method/variables.js';
import { writeJsonAtomic } from '../src/run/atomic-file.js';
import { RUN_FORMAT_VERSION, type RunConfig, runPaths } from '../src/run/layout.js';
import { type TaskMeansEntry, writeMeansFile } from '../src/run/means-file.js';
import { makeSubsetFile, writeSubsetFile } from '../src/run/subset-file.js';

/** A small seeded generator (mulberry32) so the fixtures are the same on every run. */
function rand(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function writeConfig(root: string, model: string): void {
  const run: RunConfig = {
    format: 'vtv-run',
    version: RUN_FORMAT_VERSION,
    model,
    weights: [],
    dataset: 'bundled',
    backend: 'cpu',
    created: '2026-01-01T00:00:00.000Z',
  };
  writeJsonAtomic(runPaths(root).config, run);
}

function writeMeans(root: string, c: ModelConfig, tasks: string[]): void {
  const m = new Map<string, TaskMeansEntry>();
  for (const t of tasks) {
    m.set(t, {
      means: { enc: new Float32Array(c.encDepth * ONE_SHOT_ENC_TOKENS * c.encDim), dec: new Float32Array(c.decDepth * ONE_SHOT_DEC_TOKENS * c.decDim) },
      count: 10,
    });
  }
  writeMeansFile(runPaths(root).means, c, m);
}

function writeCollectOutputs(root: string, c: ModelConfig, tasks: string[], r: () => number): void {
  writeJsonAtomic(runPaths(root).prompts, {
    format: 'vtv-prompts',
    version: 1,
    scored: 30,
    tasks: Object.fromEntries(
      tasks.map((t) => [
        t,
        Array.from({ length: 5 }, (_, i) => ({
          fold: 1,
          index: i,
          query: `q${i}`,
          support: `s${i}`,
          classId: 3,
          metric: t === 'segmentation' ? 0.5 + 0.1 * r() : 0.05 * r(),
        })),
      ]),
    ),
  });
  // Taskness rising with depth (as the paper reports for the task-encoding heads), plus noise.
  const perHead: Taskness['perHead'] = [];
  const grid = (depth: number, heads: number, tokens: number, layer0: number) =>
    Array.from({ length: depth }, (_, l) =>
      Array.from({ length: heads }, (_, h) => {
        const rho = 0.2 + (1.5 * (layer0 + l)) / (c.encDepth + c.decDepth) + 0.4 * r();
        perHead.push({ layer: layer0 + l, head: h, rho: Math.round(rho * 1e4) / 1e4 });
        return Array.from({ length: tokens }, () => Math.round(rho * (0.8 + 0.4 * r()) * 1e3) / 1e3);
      }),
    );
  const taskness: Taskness = {
    perHead,
    perPositionEnc: grid(c.encDepth, c.encHeads, ONE_SHOT_ENC_TOKENS, 0),
    perPositionDec: grid(c.decDepth, c.decHeads, ONE_SHOT_DEC_TOKENS, c.encDepth),
    tasks: tasks.length,
    prompts: 5 * tasks.length,
  };
  // perHead lists encoder then decoder heads, as tasknessScores writes them.
  taskness.perHead.sort((a, b) => a.layer - b.layer || a.head - b.head);
  writeJsonAtomic(runPaths(root).taskness, {
    format: 'vtv-taskness',
    version: 1,
    formula: 'sum_e Var_all / (n * sum_j sum_e Var_task_j), population variances',
    ...taskness,
  });
}

/** Logits of a plausible search: a few decoder and late-encoder query heads go up, the rest down. */
function searchLogits(space: VariableSpace, progress: number, r: () => number): Float64Array {
  const c = space.config;
  return Float64Array.from(space.info, (v) => {
    const favoured =
      (v.layer >= c.encDepth && v.slot !== 'cls' && (v.head * 7 + v.layer) % 5 === 0) || (v.layer === c.encDepth - 2 && v.slot === 'query' && v.head % 4 === 1);
    return -1 + progress * (favoured ? 4 : -1.5) + 0.5 * (r() - 0.5);
  });
}

/** Writes search/<key>/: log.jsonl (steps [0, loggedSteps)), state.json (after stateStep steps), subset.json if finished. */
function writeSearch(
  root: string,
  key: string,
  tasks: { name: string; loss: 'iou' | 'mse' }[],
  space: VariableSpace,
  opt: { loggedSteps: number; stateStep?: number; finished: boolean; cutLastLine?: boolean },
  r: () => number,
): void {
  const p = runPaths(root);
  mkdirSync(p.searchDir(key), { recursive: true });
  const total = opt.finished ? opt.loggedSteps : opt.loggedSteps * 2;
  let best: SearchState['best'] = null;
  const lines: string[] = [];
  for (let step = 0; step < opt.loggedSteps; step++) {
    const progress = step / total;
    const logits = searchLogits(space, progress, r);
    const probs = probabilities(logits);
    const perTask = Object.fromEntries(tasks.map((t) => [t.name, t.loss === 'iou' ? 0.2 + 0.3 * progress + 0.05 * r() : 0.09 - 0.04 * progress + 0.01 * r()]));
    const first = perTask[tasks[0]!.name]!;
    const rec: StepRecord = {
      step,
      loss: tasks[0]!.loss === 'iou' ? -first : first,
      perTask,
      expectedSize: probs.reduce((a, b) => a + b, 0),
      meanSampledSize: probs.reduce((a, b) => a + b, 0) + 3 * (r() - 0.5),
      nonFinite: 0,
      uniqueForwards: 10,
      uniqueDecodes: 10,
      seconds: 0.5,
    };
    if (step % 10 === 0 || (opt.finished && step === opt.loggedSteps - 1)) {
      const metric = first + 0.02 * (r() - 0.5);
      const isBest = best === null || (tasks[0]!.loss === 'iou' ? metric > best.metric : metric < best.metric);
      if (isBest) best = { step, metric, logits: Array.from(logits) };
      rec.validation = { metric, perTask, subsetSize: Math.round(rec.expectedSize), best: isBest };
      rec.probabilities = Array.from(probs, (x) => Math.round(x * 1e4) / 1e4);
    }
    lines.push(JSON.stringify(rec));
  }
  writeFileSync(p.searchLog(key), `${lines.join('\n')}\n`);
  if (opt.cutLastLine) appendFileSync(p.searchLog(key), lines[lines.length - 1]!.slice(0, 40));
  if (opt.stateStep !== undefined) {
    const logits = searchLogits(space, opt.stateStep / total, r);
    const state: SearchState = {
      format: 'vtv-search-state',
      version: 1,
      fingerprint: {
        model: space.config,
        granularity: space.granularity,
        mode: space.mode,
        variables: space.count,
        tasks: tasks.map((t) => `${t.name}:${t.loss}`),
        options: {},
        data: 'fixture',
      },
      step: opt.stateStep,
      logits: Array.from(logits),
      adam: { m: new Array(space.count).fill(0), v: new Array(space.count).fill(0), t: opt.stateStep },
      rng: Rng.fromSeed(opt.stateStep).getState(),
      best,
    };
    writeJsonAtomic(p.searchState(key), state);
  }
  if (opt.finished) {
    const sel = Float64Array.from(best!.logits);
    const choice = Uint8Array.from(probabilities(sel), (x) => (x > 0.5 ? 1 : 0));
    writeSubsetFile(
      p.subset(key),
      makeSubsetFile(
        space,
        tasks.map((t) => t.name),
        'threshold',
        best!.step,
        sel,
        choice,
      ),
    );
  }
}

/** A 111x111 picture: a smooth colour field with a bright disc at (cx, cy). */
function picture(cx: number, cy: number, rad: number, tint: number, mask: boolean, noise: number, r: () => number) {
  const img = makeImage(111, 111, 3);
  for (let y = 0; y < 111; y++)
    for (let x = 0; x < 111; x++) {
      const inside = (x - cx) ** 2 + (y - cy) ** 2 < rad * rad;
      for (let ch = 0; ch < 3; ch++) {
        let v = mask ? (inside ? 255 : 0) : inside ? 200 + 40 * ch : 40 + ((x + y * tint + ch * 50) % 120);
        if (noise) v += noise * (r() - 0.5);
        img.data[(y * 111 + x) * 3 + ch] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  return img;
}

function writeExamples(root: string, task: string, r: () => number): void {
  const dir = runPaths(root).examples(task);
  mkdirSync(dir, { recursive: true });
  const seg = task === 'segmentation';
  for (const fold of [0, 1]) {
    for (const ep of [3, 17]) {
      const cx = 30 + 50 * r();
      const cy = 30 + 50 * r();
      const rad = 15 + 15 * r();
      const name = (what: string) => `${dir}/fold${fold}_${String(ep).padStart(4, '0')}_${what}.png`;
      writePngFile(name('example-input'), picture(60, 50, 25, 2, false, 0, r));
      writePngFile(name('example-output'), picture(60, 50, 25, 2, seg, 0, r));
      writePngFile(name('query'), picture(cx, cy, rad, 3, false, 0, r));
      writePngFile(name('target'), picture(cx, cy, rad, 3, seg, 0, r));
      writePngFile(name('one-shot'), picture(cx + 3, cy, rad, 3, seg, 30, r));
      writePngFile(name('zero-shot'), picture(55, 55, 10, 1, seg, 60, r));
      writePngFile(name('task-vector'), picture(cx + 6, cy - 4, rad * 0.9, 3, seg, 40, r));
      writePngFile(name('random'), picture(50, 60, 8, 1, seg, 80, r));
    }
  }
}

function writeEval(root: string, model: string, tasks: { name: string; loss: 'iou' | 'mse' }[], size: number): EvalResults {
  const rows: EvalRow[] = [];
  for (const t of tasks)
    for (const fold of [0, 1]) {
      const iou = t.loss === 'iou';
      rows.push({
        task: t.name,
        fold,
        metric: t.loss,
        episodes: 4,
        subsetSize: size,
        oneShot: iou ? 0.42 + 0.01 * fold : 0.031,
        zeroShot: iou ? 0.12 : 0.12,
        taskVector: iou ? 0.35 - 0.01 * fold : 0.05,
        random: iou ? 0.11 : 0.14,
      });
    }
  const summary = tasks.map((t) => {
    const rs = rows.filter((x) => x.task === t.name);
    const m = (k: 'oneShot' | 'zeroShot' | 'taskVector' | 'random') => rs.reduce((a, x) => a + x[k], 0) / rs.length;
    return { ...rs[0]!, fold: -1, episodes: 8, oneShot: m('oneShot'), zeroShot: m('zeroShot'), taskVector: m('taskVector'), random: m('random') };
  });
  const res: EvalResults = { format: 'vtv-eval', version: 1, model, dataset: 'bundled', seed: 0, episodesPerFold: 4, rows, summary };
  writeJsonAtomic(runPaths(root).evalJson, res);
  writeFileSync(runPaths(root).evalMd, resultsMarkdown(res));
  return res;
}

const TASKS = [
  { name: 'segmentation', loss: 'iou' as const },
  { name: 'colorization', loss: 'mse' as const },
];

/** A finished run on the ViT-L shapes: collect, two finished searches (granularity 1), eval with examples. */
export function makeCompleteRun(root: string): void {
  const r = rand(1);
  const c = preset('mae-vqgan-vit-large');
  writeConfig(root, c.name);
  writeMeans(
    root,
    preset('tiny'),
    TASKS.map((t) => t.name),
  ); // tiny tensors: the report reads only the header
  writeCollectOutputs(
    root,
    c,
    TASKS.map((t) => t.name),
    r,
  );
  const space = new VariableSpace(c, 1, 'zero-shot');
  for (const t of TASKS) writeSearch(root, t.name, [t], space, { loggedSteps: 60, stateStep: 60, finished: true }, r);
  writeEval(root, c.name, TASKS, 40);
  for (const t of TASKS) writeExamples(root, t.name, r);
}

/**
 * A run interrupted half-way on the tiny model: collect done; the segmentation search stopped at a
 * checkpoint (step 20) with 25 steps logged and a cut-off last log line, no subset; a colorization
 * search that logged 3 steps before any checkpoint; no eval.
 */
export function makeInterruptedRun(root: string): void {
  const r = rand(2);
  const c = preset('tiny');
  writeConfig(root, c.name);
  writeMeans(
    root,
    c,
    TASKS.map((t) => t.name),
  );
  writeCollectOutputs(
    root,
    c,
    TASKS.map((t) => t.name),
    r,
  );
  const space = new VariableSpace(c, 1, 'zero-shot');
  writeSearch(root, 'segmentation', [TASKS[0]!], space, { loggedSteps: 25, stateStep: 20, finished: false, cutLastLine: true }, r);
  writeSearch(root, 'colorization', [TASKS[1]!], space, { loggedSteps: 3, finished: false }, r);
}

/** The relative paths of every image a report page references. */
export function referencedImages(htmlPath: string): string[] {
  const html = readFileSync(htmlPath, 'utf8');
  return [...html.matchAll(/<img src="([^"]+)"/g)].map((m) => m[1]!);
}
