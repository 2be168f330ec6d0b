// The REINFORCE search (docs/method.md#search): Bernoulli logits over the variables, 320 patched zero-shot forwards
// per step over the training canvases, z-scored advantages, Adam, periodic validation with
// best-so-far selection. The policy maths is in policy.ts; the forwards run as engine batches (one call
// per task per step, the engine computes identical (canvas, mask) samples once).
//
// Reproducibility: every random draw comes from one seeded Rng whose state is part of the checkpoint,
// the logits and Adam moments are float64 and round-trip exactly through JSON, and the log is cut back
// to the checkpoint's step on resume, so an interrupted and resumed search writes the same bytes as an
// uninterrupted one (given the same engine).
//
// Objective (docs/method.md#token-objective): 'pixel' (the reference) scores each training sample on its decoded image (-IoU
// or MSE); 'token' scores it in VQGAN token space, the MAE's logits at the 49 output-quadrant positions
// against the VQGAN encoder's tokens of the ground truth (cross-entropy, or minus the token accuracy),
// so a training step runs the MAE only and never decodes. Validation and selection stay in pixel space
// for both, so the two objectives are compared on the same footing.
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { Rng, type RngState } from '../data/rng.js';
import { CANVAS_FLOATS, type ForwardBuffers, QUADRANT_TOKENS, type TaskMeans } from '../engine.js';
import { InputError, UsageError } from '../errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../run/atomic-file.js';
import { parseJsonText, readJsonFile } from '../run/json-file.js';
import type { ForwardEngine } from './forward-engine.js';
import {
  type AdamState,
  adamStep,
  advantages,
  DISABLED_LOGIT,
  newAdamState,
  probabilities,
  sampleChoices,
  surrogateGradient,
  thresholdChoices,
} from './policy.js';
import type { VariableSpace } from './variables.js';

export type TaskLoss = 'iou' | 'mse';
export type Objective = (typeof OBJECTIVES)[number];
export type TokenLoss = (typeof TOKEN_LOSSES)[number];

/** One task the search patches with: its means and how its samples are scored. */
export interface SearchTask {
  name: string;
  loss: TaskLoss;
  means: TaskMeans;
}

/** Canvases of one task, ImageNet-normalised [count][3][224][224], with optional override targets. */
export interface CanvasSet {
  canvases: Float32Array;
  count: number;
  /** [count][3][111][111] uint8; default: each canvas's own bottom-right cell. */
  targets?: Uint8Array;
  /** [count][49] VQGAN tokens of the ground-truth output quadrant; needed by training sets of the token objective (target-tokens.ts). */
  targetTokens?: Int32Array;
}

/** The choices of the search's enumerated options (the CLI offers exactly these). */
export const RESTRICTS = ['none', 'encoder-only', 'decoder-only'] as const;
export type Restrict = (typeof RESTRICTS)[number];
export const SELECTS = ['best', 'last'] as const;
export const FINAL_SUBSETS = ['sample', 'threshold'] as const;
export const OBJECTIVES = ['pixel', 'token'] as const;
export const TOKEN_LOSSES = ['ce', 'accuracy'] as const;

export interface SearchOptions {
  steps: number; // 500 in the reference
  samplesPerStep: number; // 320
  trainImages: number; // 10: sample i uses training item i mod trainImages
  lr: number; // 0.1
  init: number; // -1
  sparsity: number; // regularization_strength λ, 0
  restrict: Restrict;
  validateEvery: number; // 50; 0 = never
  select: (typeof SELECTS)[number];
  finalSubset: (typeof FINAL_SUBSETS)[number];
  seed: number;
  checkpointEvery: number; // steps between state writes (also written at the end and on stop)
  snapshotEvery: number; // steps between probability snapshots in the log; 0 = only with validation
  /** Most samples per engine call (the step is split when larger; work sharing is per call). */
  engineBatch: number;
  /** How training samples are scored: 'pixel' (the reference) or 'token' (VQGAN token space, no decode). */
  objective: Objective;
  /** The token objective's per-sample loss: mean cross-entropy ('ce') or minus the token accuracy. */
  tokenLoss: TokenLoss;
}

export const REFERENCE_SEARCH: SearchOptions = {
  steps: 500,
  samplesPerStep: 320,
  trainImages: 10,
  lr: 0.1,
  init: -1,
  sparsity: 0,
  restrict: 'none',
  validateEvery: 50,
  select: 'best',
  finalSubset: 'sample',
  seed: 0,
  checkpointEvery: 10,
  snapshotEvery: 50,
  engineBatch: 320,
  objective: 'pixel',
  tokenLoss: 'ce',
};

export interface SearchInputs {
  engine: ForwardEngine;
  space: VariableSpace;
  /** One task (the reference's --task k) or several (multi-task mode, --task None). */
  tasks: SearchTask[];
  /** Training canvases per task (same order as tasks). */
  train: CanvasSet[];
  /** Validation canvases per task; selection uses the first task's metric, as the reference does. */
  validation?: CanvasSet[];
}

export interface SearchState {
  format: 'vtv-search-state';
  version: 1;
  fingerprint: Record<string, unknown>;
  step: number; // completed steps
  logits: number[];
  adam: { m: number[]; v: number[]; t: number };
  rng: RngState;
  best: { step: number; metric: number; logits: number[] } | null;
}

export interface ValidationResult {
  metric: number; // mean IoU (higher is better) or mean MSE (lower is better) of tasks[0]
  perTask: Record<string, number>;
  subsetSize: number;
}

export interface StepRecord {
  step: number;
  loss: number; // mean training loss over the step's samples: -IoU or MSE (pixel), token CE or -accuracy (token)
  perTask: Record<string, number>; // mean training metric per task: IoU or MSE (pixel), token accuracy (token)
  expectedSize: number; // sum of probabilities after the step
  meanSampledSize: number;
  nonFinite: number; // samples whose loss was NaN (both masks empty, docs/method.md#metrics), given zero advantage
  uniqueForwards: number;
  /** VQGAN decodes of the step's training forwards (0 for the token objective; validation not counted). */
  uniqueDecodes: number;
  seconds: number;
  validation?: ValidationResult & { best: boolean };
  probabilities?: number[];
}

export interface SearchResult {
  state: SearchState;
  completed: boolean; // false when stopped early
  /** Final variable choice (0/1 per variable) from the selected logits. */
  choice: Uint8Array;
  selectedStep: number;
  selectedLogits: Float64Array;
}

export interface SearchRunOptions {
  statePath?: string;
  logPath?: string;
  resume?: boolean;
  onStep?: (rec: StepRecord) => void;
  shouldStop?: () => boolean;
  /** Told when resume repaired the log (dropped a torn last line). */
  onRepair?: (message: string) => void;
}

const higherIsBetter = (loss: TaskLoss) => loss === 'iou';

/** The objective as recorded in the fingerprint: 'pixel', 'token-ce' or 'token-accuracy'. */
export function objectiveName(opt: Pick<SearchOptions, 'objective' | 'tokenLoss'>): string {
  return opt.objective === 'pixel' ? 'pixel' : `token-${opt.tokenLoss}`;
}

/** The identity of a search: a resume must match it exactly (steps may grow). */
export function searchFingerprint(inp: SearchInputs, opt: SearchOptions): Record<string, unknown> {
  const h = createHash('sha256');
  const feed = (a: ArrayBufferView) => h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  for (let t = 0; t < inp.tasks.length; t++) {
    feed(inp.tasks[t]!.means.enc);
    feed(inp.tasks[t]!.means.dec);
    feed(inp.train[t]!.canvases);
    if (inp.train[t]!.targets) feed(inp.train[t]!.targets!);
    // The target tokens depend on the VQGAN encoder's weights as well as the canvases.
    if (opt.objective === 'token') feed(inp.train[t]!.targetTokens!);
    const v = inp.validation?.[t];
    if (v) {
      feed(v.canvases);
      if (v.targets) feed(v.targets);
    }
  }
  const { steps: _steps, checkpointEvery: _c, engineBatch: _b, objective: _o, tokenLoss: _l, ...rest } = opt;
  return {
    objective: objectiveName(opt),
    model: inp.engine.config,
    granularity: inp.space.granularity,
    mode: inp.space.mode,
    variables: inp.space.count,
    tasks: inp.tasks.map((t) => `${t.name}:${t.loss}`),
    options: rest,
    data: h.digest('hex'),
  };
}

/** Where two fingerprints differ, as "key: a vs b" lines (empty when equal). */
export function fingerprintDiff(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const out: string[] = [];
  const flat = (o: unknown, prefix: string, into: Map<string, string>) => {
    if (o !== null && typeof o === 'object' && !Array.isArray(o)) {
      for (const [k, v] of Object.entries(o)) flat(v, prefix ? `${prefix}.${k}` : k, into);
    } else into.set(prefix, JSON.stringify(o));
  };
  const fa = new Map<string, string>();
  const fb = new Map<string, string>();
  flat(a, '', fa);
  flat(b, '', fb);
  for (const k of new Set([...fa.keys(), ...fb.keys()])) {
    if (fa.get(k) !== fb.get(k)) out.push(`${k}: ${fa.get(k) ?? '(absent)'} vs ${fb.get(k) ?? '(absent)'}`);
  }
  return out;
}

function initialLogits(space: VariableSpace, opt: SearchOptions): Float64Array {
  const logits = new Float64Array(space.count).fill(opt.init);
  if (opt.restrict === 'decoder-only') logits.fill(DISABLED_LOGIT, 0, space.encoderCount);
  if (opt.restrict === 'encoder-only') logits.fill(DISABLED_LOGIT, space.encoderCount);
  return logits;
}

/** The training items in the reference's order: tasks interleaved per image, first trainImages kept. */
function trainingItems(inp: SearchInputs, trainImages: number): { task: number; canvas: number }[] {
  const items: { task: number; canvas: number }[] = [];
  const most = Math.max(...inp.train.map((s) => s.count));
  for (let c = 0; c < most && items.length < trainImages; c++) {
    for (let t = 0; t < inp.tasks.length && items.length < trainImages; t++) {
      if (c < inp.train[t]!.count) items.push({ task: t, canvas: c });
    }
  }
  return items;
}

/** The command-line flag of each option, for messages. */
const FLAG: Record<keyof SearchOptions, string> = {
  steps: '--steps',
  samplesPerStep: '--samples-per-step',
  trainImages: '--train-images',
  lr: '--lr',
  init: '--init',
  sparsity: '--sparsity',
  restrict: '--restrict',
  validateEvery: '--validate-every',
  select: '--select',
  finalSubset: '--final-subset',
  seed: '--seed',
  checkpointEvery: '--checkpoint-every',
  snapshotEvery: '--snapshot-every',
  engineBatch: '--engine-batch',
  objective: '--objective',
  tokenLoss: '--token-loss',
};

/**
 * Checks every option's type and range; an error names the option (and its flag). A search with no
 * steps, or a selection rule it does not know, would otherwise write a "finished" subset of nothing.
 */
export function checkSearchOptions(opt: SearchOptions): void {
  const int = (k: keyof SearchOptions, min: number, max = Number.MAX_SAFE_INTEGER) => {
    const v = opt[k] as unknown;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new UsageError(`search: ${FLAG[k]} (${k}) must be an integer from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ''}, got ${String(v)}`);
    }
  };
  const num = (k: keyof SearchOptions, min: number, max: number, open = false) => {
    const v = opt[k] as unknown;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (open && v === min)) {
      throw new UsageError(`search: ${FLAG[k]} (${k}) must be a number ${open ? 'above' : 'from'} ${min} to ${max}, got ${String(v)}`);
    }
  };
  const oneOf = (k: keyof SearchOptions, allowed: readonly string[]) => {
    if (!allowed.includes(opt[k] as string)) throw new UsageError(`${FLAG[k]} must be ${allowed.join(' or ')}, got '${String(opt[k])}'`);
  };
  int('steps', 1);
  int('samplesPerStep', 2);
  int('trainImages', 1);
  num('lr', 0, 1e6, true);
  num('init', -100, 100);
  num('sparsity', 0, 1e6);
  oneOf('restrict', RESTRICTS);
  int('validateEvery', 0);
  oneOf('select', SELECTS);
  oneOf('finalSubset', FINAL_SUBSETS);
  int('seed', 0);
  int('checkpointEvery', 1);
  int('snapshotEvery', 0);
  int('engineBatch', 1);
  oneOf('objective', OBJECTIVES);
  oneOf('tokenLoss', TOKEN_LOSSES);
}

function validateInputs(inp: SearchInputs, opt: SearchOptions): void {
  if (inp.tasks.length === 0) throw new InputError('search: no tasks given');
  if (inp.train.length !== inp.tasks.length) throw new InputError(`search: ${inp.train.length} training sets for ${inp.tasks.length} tasks`);
  for (let t = 0; t < inp.tasks.length; t++) {
    const s = inp.train[t]!;
    if (s.count === 0) throw new InputError(`search: task '${inp.tasks[t]!.name}' has no training canvases (empty dataset?)`);
    if (s.canvases.length !== s.count * CANVAS_FLOATS) throw new InputError(`search: training canvases of '${inp.tasks[t]!.name}' have the wrong size`);
  }
  if (inp.validation && inp.validation.length !== inp.tasks.length) throw new InputError('search: validation sets must match the tasks');
  checkSearchOptions(opt);
  if (opt.objective === 'token') {
    for (let t = 0; t < inp.tasks.length; t++) {
      const s = inp.train[t]!;
      if (!s.targetTokens || s.targetTokens.length !== s.count * QUADRANT_TOKENS) {
        throw new InputError(
          `search: the token objective needs [${s.count}][${QUADRANT_TOKENS}] target tokens for the training canvases of '${inp.tasks[t]!.name}' (see target-tokens.ts)`,
        );
      }
    }
  }
}

/** How a batch of patched forwards is scored: the task's pixel loss, or a token loss. */
type Scoring = { kind: 'pixel' } | { kind: 'token'; loss: 'token-ce' | 'token-accuracy' };
const PIXEL: Scoring = { kind: 'pixel' };
const trainingScoring = (opt: SearchOptions): Scoring =>
  opt.objective === 'token' ? { kind: 'token', loss: opt.tokenLoss === 'ce' ? 'token-ce' : 'token-accuracy' } : PIXEL;

/** Each task's means bound to the engine once: checked there and kept where it reads them, for every step. */
async function bindMeans(inp: SearchInputs): Promise<TaskMeans[]> {
  const bound: TaskMeans[] = [];
  for (const t of inp.tasks) bound.push(await inp.engine.bindTaskMeans(t.means));
  return bound;
}

/**
 * Per engine, free losses/metrics arrays of each chunk size: every step's forwards write into the same
 * ones (taken for one call, given back once read, so concurrent searches on one engine never share one).
 */
const scoreBuffers = new WeakMap<ForwardEngine, Map<number, ForwardBuffers[]>>();

function takeScoreBuffers(engine: ForwardEngine, batch: number): ForwardBuffers {
  return scoreBuffers.get(engine)?.get(batch)?.pop() ?? { losses: new Float32Array(batch), metrics: new Float32Array(batch) };
}

function giveBackScoreBuffers(engine: ForwardEngine, batch: number, b: ForwardBuffers): void {
  let bySize = scoreBuffers.get(engine);
  if (!bySize) scoreBuffers.set(engine, (bySize = new Map()));
  const free = bySize.get(batch) ?? [];
  free.push(b);
  bySize.set(batch, free);
}

/**
 * Runs a set of patched forwards, one engine call per task (chunked by engineBatch) with that task's
 * bound means; returns losses and metrics.
 */
async function runPatched(
  inp: SearchInputs,
  means: TaskMeans[],
  sets: CanvasSet[],
  sampleTask: Int32Array,
  sampleCanvas: Int32Array,
  masks: Uint8Array,
  engineBatch: number,
  scoring: Scoring,
): Promise<{ losses: Float64Array; metrics: Float64Array; uniqueForwards: number; uniqueDecodes: number }> {
  const n = sampleTask.length;
  const mb = inp.space.maskBytes;
  const losses = new Float64Array(n);
  const metrics = new Float64Array(n);
  let uniqueForwards = 0;
  let uniqueDecodes = 0;
  for (let t = 0; t < inp.tasks.length; t++) {
    const idx: number[] = [];
    for (let i = 0; i < n; i++) if (sampleTask[i] === t) idx.push(i);
    for (let off = 0; off < idx.length; off += engineBatch) {
      const chunk = idx.slice(off, off + engineBatch);
      const canvasIndex = Int32Array.from(chunk, (i) => sampleCanvas[i]!);
      // A chunk of consecutive samples (one task) reads its masks in place; interleaved tasks gather theirs.
      const consecutive = chunk.every((i, k) => i === chunk[0]! + k);
      let m: Uint8Array;
      if (consecutive) {
        m = masks.subarray(chunk[0]! * mb, (chunk[0]! + chunk.length) * mb);
      } else {
        m = new Uint8Array(chunk.length * mb);
        chunk.forEach((i, k) => m.set(masks.subarray(i * mb, (i + 1) * mb), k * mb));
      }
      const set = sets[t]!;
      const into = takeScoreBuffers(inp.engine, chunk.length);
      const res = await inp.engine.forward({
        mode: inp.space.mode,
        canvases: set.canvases,
        canvasIndex,
        patch: { means: means[t]!, masks: m },
        into,
        ...(scoring.kind === 'pixel' ? { loss: inp.tasks[t]!.loss, targets: set.targets } : { loss: scoring.loss, targetTokens: set.targetTokens }),
      });
      uniqueForwards += res.uniqueForwards;
      uniqueDecodes += res.uniqueDecodes;
      chunk.forEach((i, k) => {
        losses[i] = res.losses![k]!;
        metrics[i] = res.metrics![k]!;
      });
      giveBackScoreBuffers(inp.engine, chunk.length, into);
    }
  }
  return { losses, metrics, uniqueForwards, uniqueDecodes };
}

/**
 * Mean pixel-space metric (IoU or MSE) of one subset (0/1 per variable) over each task's canvases.
 * `means`: the tasks' means already bound to the engine (runSearch's); bound here when absent.
 */
export async function evaluateSubset(
  inp: SearchInputs,
  sets: CanvasSet[],
  choice: Uint8Array,
  engineBatch: number,
  means?: TaskMeans[],
): Promise<Record<string, number>> {
  const bound = means ?? (await bindMeans(inp));
  const mask = inp.space.masks(choice, 1);
  const out: Record<string, number> = {};
  for (let t = 0; t < inp.tasks.length; t++) {
    const set = sets[t]!;
    const n = set.count;
    const sampleTask = new Int32Array(n).fill(t);
    const sampleCanvas = Int32Array.from({ length: n }, (_, i) => i);
    const masks = new Uint8Array(n * mask.length);
    for (let i = 0; i < n; i++) masks.set(mask, i * mask.length);
    const r = await runPatched(inp, bound, sets, sampleTask, sampleCanvas, masks, engineBatch, PIXEL);
    out[inp.tasks[t]!.name] = meanFinite(r.metrics);
  }
  return out;
}

function meanFinite(a: ArrayLike<number>): number {
  let s = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) if (Number.isFinite(a[i]!)) (s += a[i]!), n++;
  return n ? s / n : Number.NaN;
}

/** Reads a search state for --resume, checking its format and the types of its fields. */
export function readSearchState(path: string): SearchState {
  let s: SearchState;
  try {
    s = readJsonFile<SearchState>(path, 'vtv search state');
  } catch (e) {
    throw new InputError(`--resume: ${(e as Error).message}`);
  }
  if (s?.format !== 'vtv-search-state' || s.version !== 1) throw new InputError(`--resume: ${path} is not a vtv search state (version 1)`);
  const okArray = (a: unknown) => Array.isArray(a) && a.every((x) => typeof x === 'number');
  if (
    !Number.isInteger(s.step) ||
    s.step < 0 ||
    !okArray(s.logits) ||
    !okArray(s.adam?.m) ||
    !okArray(s.adam?.v) ||
    typeof s.adam?.t !== 'number' ||
    typeof s.rng !== 'object' ||
    s.rng === null
  ) {
    throw new InputError(`--resume: ${path} is damaged: step, logits, adam or rng is missing or of the wrong type`);
  }
  return s;
}

/**
 * Cuts the log back to the steps before `step` (the steps after a checkpoint are re-run on resume). A
 * torn last line (a write cut short by a full disk or a kill) is dropped, since its step is re-run;
 * a damaged line before the end, or steps missing before the checkpoint, is an error naming the file
 * and line, because the log would no longer describe the search.
 */
export function repairLog(path: string, step: number): { kept: number; tornDropped: boolean } {
  if (!existsSync(path)) {
    if (step === 0) return { kept: 0, tornDropped: false };
    throw new InputError(`--resume: ${path} is missing but the state is at step ${step}: the log of steps 0-${step - 1} is lost (start over with --force)`);
  }
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n');
  const endsClean = text.endsWith('\n') || text === '';
  if (endsClean) lines.pop();
  const kept: string[] = [];
  let tornDropped = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    let rec: { step?: unknown };
    try {
      rec = parseJsonText(line, `${path}: line ${i + 1}`) as { step?: unknown };
      if (typeof rec?.step !== 'number') throw new InputError(`${path}: line ${i + 1} is not a step record (no "step")`);
    } catch (e) {
      if (i === lines.length - 1) {
        tornDropped = true; // the torn end of an interrupted write
        break;
      }
      throw new InputError(`--resume: ${(e as Error).message}; the log is damaged before its last line`);
    }
    if ((rec.step as number) >= step) break;
    if (rec.step !== kept.length) throw new InputError(`--resume: ${path}: line ${i + 1} is step ${rec.step}, expected step ${kept.length}`);
    kept.push(line);
  }
  if (kept.length !== step) {
    throw new InputError(
      `--resume: ${path} has ${kept.length} step(s) but the state ${step === 1 ? 'is' : 'is'} at step ${step}: they do not belong together (start over with --force)`,
    );
  }
  writeFileAtomic(path, kept.length ? `${kept.join('\n')}\n` : '');
  return { kept: kept.length, tornDropped };
}

export async function runSearch(inp: SearchInputs, opt: SearchOptions, run: SearchRunOptions = {}): Promise<SearchResult> {
  validateInputs(inp, opt);
  const space = inp.space;
  const V = space.count;
  const fingerprint = searchFingerprint(inp, opt);

  let logits = initialLogits(space, opt);
  let adam: AdamState = newAdamState(V);
  let rng = Rng.fromSeed(opt.seed);
  let best: SearchState['best'] = null;
  let step = 0;

  if (run.resume) {
    if (!run.statePath || !existsSync(run.statePath)) throw new InputError(`--resume: no search state at ${run.statePath ?? '(no path)'}`);
    const s = readSearchState(run.statePath);
    // States written before the token objective existed were all pixel-space searches.
    const diff = fingerprintDiff({ objective: 'pixel', ...s.fingerprint }, fingerprint);
    if (diff.length) {
      throw new InputError(
        `--resume: ${run.statePath} was written by a different search configuration; nothing was changed.\n  ${diff.slice(0, 8).join('\n  ')}`,
      );
    }
    if (s.logits.length !== V) throw new InputError(`--resume: state has ${s.logits.length} logits, this search has ${V} variables`);
    logits = Float64Array.from(s.logits);
    adam = { m: Float64Array.from(s.adam.m), v: Float64Array.from(s.adam.v), t: s.adam.t };
    rng = Rng.fromState(s.rng);
    best = s.best;
    step = s.step;
    if (run.logPath) {
      const r = repairLog(run.logPath, step);
      if (r.tornDropped) run.onRepair?.(`${run.logPath}: dropped a torn last line (an interrupted write); its step is run again`);
    }
  } else if (run.logPath) {
    writeFileSync(run.logPath, '');
  }

  const snapshot = (): SearchState => ({
    format: 'vtv-search-state',
    version: 1,
    fingerprint,
    step,
    logits: Array.from(logits),
    adam: { m: Array.from(adam.m), v: Array.from(adam.v), t: adam.t },
    rng: rng.getState(),
    best,
  });
  const save = () => {
    if (run.statePath) writeJsonAtomic(run.statePath, snapshot());
  };

  const means = await bindMeans(inp);
  const items = trainingItems(inp, opt.trainImages);
  const B = opt.samplesPerStep;
  const sampleTask = Int32Array.from({ length: B }, (_, i) => items[i % items.length]!.task);
  const sampleCanvas = Int32Array.from({ length: B }, (_, i) => items[i % items.length]!.canvas);
  const multiTask = inp.tasks.length > 1;
  const choices = new Uint8Array(B * V);
  const masks = new Uint8Array(B * space.maskBytes);
  const primary = inp.tasks[0]!;
  const scoring = trainingScoring(opt);
  let stopped = false;

  while (step < opt.steps) {
    const t0 = performance.now();
    const probs = probabilities(logits);
    sampleChoices(probs, B, rng, choices);
    space.masks(choices, B, masks);
    const r = await runPatched(inp, means, inp.train, sampleTask, sampleCanvas, masks, opt.engineBatch, scoring);

    // NaN losses (IoU of two empty masks) would poison the whole step as in the reference; they get the
    // mean loss of their task instead, i.e. zero advantage, and are counted in the log.
    let nonFinite = 0;
    const losses = Float64Array.from(r.losses);
    for (let t = 0; t < inp.tasks.length; t++) {
      let s = 0;
      let n = 0;
      for (let i = 0; i < B; i++) if (sampleTask[i] === t && Number.isFinite(losses[i]!)) (s += losses[i]!), n++;
      const fill = n ? s / n : 0;
      for (let i = 0; i < B; i++) if (sampleTask[i] === t && !Number.isFinite(losses[i]!)) (losses[i] = fill), nonFinite++;
    }
    const adv = advantages(losses, multiTask ? sampleTask : undefined);
    const grad = surrogateGradient(logits, choices, B, adv, opt.sparsity);
    adamStep(logits, grad, adam, opt.lr);

    let sampled = 0;
    for (let i = 0; i < choices.length; i++) sampled += choices[i]!;
    const after = probabilities(logits);
    const perTask: Record<string, number> = {};
    for (let t = 0; t < inp.tasks.length; t++) {
      perTask[inp.tasks[t]!.name] = meanFinite(r.metrics.filter((_, i) => sampleTask[i] === t));
    }
    const rec: StepRecord = {
      step,
      loss: losses.reduce((a, b) => a + b, 0) / B,
      perTask,
      expectedSize: after.reduce((a, b) => a + b, 0),
      meanSampledSize: sampled / B,
      nonFinite,
      uniqueForwards: r.uniqueForwards,
      uniqueDecodes: r.uniqueDecodes,
      seconds: 0,
    };

    if (inp.validation && opt.validateEvery > 0 && (step % opt.validateEvery === 0 || step === opt.steps - 1)) {
      const choice = opt.finalSubset === 'threshold' ? thresholdChoices(after) : sampleChoices(after, 1, rng);
      const metrics = await evaluateSubset(inp, inp.validation, choice, opt.engineBatch, means);
      const metric = metrics[primary.name]!;
      const better = best === null || (higherIsBetter(primary.loss) ? metric > best.metric : metric < best.metric);
      if (better && Number.isFinite(metric)) best = { step, metric, logits: Array.from(logits) };
      rec.validation = { metric, perTask: metrics, subsetSize: choice.reduce((a, b) => a + b, 0), best: better };
    }
    if (rec.validation || (opt.snapshotEvery > 0 && step % opt.snapshotEvery === 0)) {
      rec.probabilities = Array.from(after, (p) => Math.round(p * 1e4) / 1e4);
    }
    rec.seconds = (performance.now() - t0) / 1000;
    // The log line goes out before the state that covers it, so a crash never leaves a state ahead of
    // its log. `seconds` is wall time and the one field that differs between runs.
    if (run.logPath) appendFileSync(run.logPath, `${JSON.stringify(rec)}\n`);
    step += 1;
    run.onStep?.(rec);
    const stopNow = run.shouldStop?.() ?? false;
    if (step % opt.checkpointEvery === 0 || step === opt.steps || stopNow) save();
    if (stopNow) {
      stopped = true;
      break;
    }
  }
  if (!stopped) save();

  const useBest = opt.select === 'best' && best !== null;
  const selectedLogits = useBest ? Float64Array.from(best!.logits) : Float64Array.from(logits);
  const selectedStep = useBest ? best!.step : step - 1;
  const selProbs = probabilities(selectedLogits);
  // The final draw has its own stream (seed + label), so it does not depend on where a run was resumed.
  const choice = opt.finalSubset === 'threshold' ? thresholdChoices(selProbs) : sampleChoices(selProbs, 1, Rng.fromSeed(opt.seed).fork('final-subset'));
  return { state: snapshot(), completed: !stopped, choice, selectedStep, selectedLogits };
}
