// The typed engine API over the native addon. Outputs are written in place by the engine's worker
// thread, into arrays the caller passes (`into`, reused across calls) or allocated here; nothing is
// copied across N-API.

import type { NativeEngine, NativeForwardRequest, NativeTaskMeans } from '../bindings/addon.js';
import { configInWeights } from './checkpoint/safetensors.js';
import {
  type Backend,
  CELL,
  decTokens,
  encTokens,
  GRID,
  HALF,
  IMAGE,
  type Loss,
  type Mode,
  type ModelConfig,
  meansDecFloats,
  meansEncFloats,
  type Precision,
  patchBytes,
} from './config.js';
import type { Image8 } from './data/image.js';
import { EngineError, InputError, UsageError, VtvError } from './errors.js';
import { applyKernelTuning, type KernelTuningMode, kernelTuningModeFromEnv, kernelTuningPath } from './kernel-tuning.js';
import type { ApplyOptions, ApplyResult, TaskVector } from './method/task-vector.js';
import { loadAddon } from './native.js';

export const CANVAS_FLOATS = 3 * IMAGE * IMAGE;
export const TARGET_BYTES = 3 * CELL * CELL;
/** Patches of the 14x14 grid (one token each). */
export const PATCHES = GRID * GRID;
/** Tokens of the output quadrant (rows 7..13, columns 7..13 of the 14x14 grid). */
export const QUADRANT_TOKENS = HALF * HALF;

/** Raster patch ids of the output quadrant, in the order target tokens are given. */
export const QUADRANT_PATCH_IDS: readonly number[] = Array.from(
  { length: QUADRANT_TOKENS },
  (_, i) => (HALF + Math.floor(i / HALF)) * GRID + HALF + (i % HALF),
);

/** The output-quadrant tokens [N][49] of token grids [N][196] (e.g. from `Engine.encodeTokens`). */
export function quadrantTokens(grids: Int32Array): Int32Array {
  if (grids.length % PATCHES !== 0) throw new InputError(`quadrantTokens: ${grids.length} tokens is not a multiple of ${PATCHES}`);
  const n = grids.length / PATCHES;
  const out = new Int32Array(n * QUADRANT_TOKENS);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < QUADRANT_TOKENS; i++) out[b * QUADRANT_TOKENS + i] = grids[b * PATCHES + QUADRANT_PATCH_IDS[i]!]!;
  }
  return out;
}

/** Per-task means of the pre-projection head outputs, one-shot positions (docs/method.md#patching). */
export interface TaskMeans {
  enc: Float32Array; // [encDepth][148][encDim]
  dec: Float32Array; // [decDepth][197][decDim]
}

/**
 * Task means bound to one engine by `Engine.bindTaskMeans`: checked once (every value finite) and kept
 * where the engine's backend reads them (a copy in host memory, or device memory on cuda), so the forwards
 * of a search pass them every step without their being scanned or uploaded again. Still a `TaskMeans`:
 * `enc` and `dec` are the tables it was made from (the engine keeps its own copy, so later changes to them
 * do not reach it). Passed as `patch.means` to another engine, it is sent as plain tables.
 */
export class BoundTaskMeans implements TaskMeans {
  /** Made by `Engine.bindTaskMeans`. */
  constructor(
    readonly enc: Float32Array,
    readonly dec: Float32Array,
    /** The engine that bound them. */
    readonly engine: Engine,
    /** The addon's handle. */
    readonly native: NativeTaskMeans,
  ) {}
}

export interface ForwardRequest {
  mode: Mode;
  /** Distinct canvases, ImageNet-normalised, [N][3][224][224]. */
  canvases: Float32Array;
  /** Sample b runs canvas canvasIndex[b]; default: one sample per canvas. */
  canvasIndex?: Int32Array;
  /** Per-sample patch masks (batch x patchBytes(config, mode)) over the task means (bound once with `bindTaskMeans`, or plain tables checked on every call). */
  patch?: { means: TaskMeans | BoundTaskMeans; masks: Uint8Array };
  /** Accumulate per-(layer, position, channel) sums of the head outputs over the batch. */
  capture?: boolean;
  /**
   * Per-sample loss. 'iou' | 'mse': the decoded image's bottom-right cell against each canvas's own
   * (or `targets`, [N][3][111][111]). 'token-ce' | 'token-accuracy': the logits of the 49 output-quadrant
   * positions against `targetTokens` (mean cross-entropy, or minus the token accuracy); no VQGAN decode.
   */
  loss?: Loss;
  targets?: Uint8Array;
  /** Token losses: [N][49] target tokens per canvas, e.g. `quadrantTokens(await engine.encodeTokens(targetCanvases))`. */
  targetTokens?: Int32Array;
  outputs?: { encoderOut?: boolean; decoderOut?: boolean; logits?: boolean; tokens?: boolean; pixels?: boolean; images?: boolean };
  /**
   * Arrays to write the outputs into instead of new ones, e.g. made once by `engine.outputBuffers()` and
   * passed to every forward of a loop. Each one given is also requested (as if set in `outputs`); its
   * type and length are checked before the call. `losses`/`metrics` need `loss`; `captureEnc`/`captureDec`
   * are zeroed and accumulated into when `capture` is set.
   */
  into?: ForwardBuffers;
  /** Exact work sharing (default true). */
  dedupe?: boolean;
}

/** Caller-owned output arrays of a forward (see `ForwardRequest.into`, `Engine.outputBuffers`). */
export interface ForwardBuffers {
  encoderOut?: Float32Array;
  decoderOut?: Float32Array;
  logits?: Float32Array;
  tokens?: Int32Array;
  pixels?: Float32Array;
  images?: Uint8Array;
  /** -IoU, MSE, token cross-entropy or -token accuracy per sample (what the search minimises). */
  losses?: Float32Array;
  /** IoU, MSE or token accuracy per sample (the reported metric). */
  metrics?: Float32Array;
  captureEnc?: Float32Array;
  captureDec?: Float32Array;
}

/** What `Engine.outputBuffers` allocates: the outputs of `ForwardRequest.outputs`, plus losses and metrics with `loss`. */
export interface OutputBufferRequest {
  outputs?: ForwardRequest['outputs'];
  loss?: boolean;
  capture?: boolean;
}

/** A forward's outputs (the ones requested, in `into`'s arrays when given) and its work counts. */
export interface ForwardResult extends ForwardBuffers {
  batch: number;
  uniqueForwards: number;
  uniqueDecodes: number;
  seconds: number;
}

export interface EngineOptions {
  /**
   * The model's shapes. Default: the `vtv_config` metadata of the weights (written by `vtv convert`);
   * when both are there they must agree (an error names the file).
   */
  config?: ModelConfig;
  weights: string | string[];
  backend?: Backend;
  precision?: Precision;
  threads?: number;
  needVqgan?: boolean;
  /** Bind the VQGAN encoder (encoder.*, quant_conv.*) for `encodeTokens`; default false. */
  needVqganEncoder?: boolean;
  /**
   * cuda backend: the kernel variant table (src/kernel-tuning.ts): 'auto' (default, or $VTV_KERNEL_TUNING)
   * loads this device's entry from the tuning cache and tunes first on a GPU that has none; 'defaults'
   * keeps every family's default; 'tune' tunes again. kernelTuningFile overrides the cache's path.
   */
  kernelTuning?: KernelTuningMode;
  kernelTuningFile?: string;
  /** Where a line about a first-run tuning goes (default: nowhere). */
  log?: (msg: string) => void;
}

export class Engine implements AsyncDisposable {
  private weightsSha?: string;
  private closed?: Promise<void>;

  private constructor(
    private readonly native: NativeEngine,
    readonly config: ModelConfig,
    /** The weights files the engine was opened with. */
    readonly weights: readonly string[],
  ) {}

  static async open(options: EngineOptions): Promise<Engine> {
    const addon = loadAddon();
    const weights = Array.isArray(options.weights) ? options.weights : [options.weights];
    const config = resolveConfig(options.config, weights);
    const native = await engineCall(
      addon.createEngine({
        config,
        weights,
        backend: options.backend ?? 'auto',
        precision: options.precision ?? 'fp32',
        threads: options.threads ?? 0,
        needVqgan: options.needVqgan ?? true,
        needVqganEncoder: options.needVqganEncoder ?? false,
      }),
    );
    if (native.backend().name === 'cuda') {
      const mode = options.kernelTuning ?? kernelTuningModeFromEnv();
      await applyKernelTuning(addon, mode, options.kernelTuningFile ?? kernelTuningPath(), options.log);
    }
    return new Engine(native, config, weights);
  }

  get backend(): { name: string; precision: string; reason: string; threads: number } {
    return this.native.backend();
  }

  /**
   * Checks task means once (sizes, every value finite) and keeps them where this engine's backend reads
   * them; pass the result as `patch.means` of every forward that patches with them.
   */
  async bindTaskMeans(means: TaskMeans): Promise<BoundTaskMeans> {
    if (means instanceof BoundTaskMeans && means.engine === this) return means;
    const native = await engineCall(this.native.bindTaskMeans(means.enc, means.dec));
    return new BoundTaskMeans(means.enc, means.dec, this, native);
  }

  patchBytes(mode: Mode): number {
    return patchBytes(this.config, mode);
  }

  /**
   * Output arrays for forwards of `batch` samples in `mode`, to pass as `into` to every call of a loop
   * (the engine then allocates nothing per call).
   */
  outputBuffers(batch: number, mode: Mode, what: OutputBufferRequest): ForwardBuffers {
    if (!Number.isInteger(batch) || batch < 1) throw new InputError(`outputBuffers: batch must be a positive integer, got ${batch}`);
    const s = outputSizes(this.config, mode, batch);
    const o = what.outputs ?? {};
    const b: ForwardBuffers = {};
    if (o.encoderOut) b.encoderOut = new Float32Array(s.encoderOut);
    if (o.decoderOut) b.decoderOut = new Float32Array(s.decoderOut);
    if (o.logits) b.logits = new Float32Array(s.logits);
    if (o.tokens) b.tokens = new Int32Array(s.tokens);
    if (o.pixels) b.pixels = new Float32Array(s.pixels);
    if (o.images) b.images = new Uint8Array(s.images);
    if (what.loss) {
      b.losses = new Float32Array(batch);
      b.metrics = new Float32Array(batch);
    }
    if (what.capture) {
      b.captureEnc = new Float32Array(s.captureEnc);
      b.captureDec = new Float32Array(s.captureDec);
    }
    return b;
  }

  async forward(req: ForwardRequest): Promise<ForwardResult> {
    const c = this.config;
    if (req.canvases.length % CANVAS_FLOATS !== 0) {
      throw new InputError(`forward: canvases has ${req.canvases.length} floats, not a multiple of 3x224x224 = ${CANVAS_FLOATS}`);
    }
    const numCanvases = req.canvases.length / CANVAS_FLOATS;
    const batch = req.canvasIndex ? req.canvasIndex.length : numCanvases;
    const o = req.outputs ?? {};
    const n: NativeForwardRequest = {
      mode: req.mode,
      canvases: req.canvases,
      numCanvases,
      canvasIndex: req.canvasIndex,
      dedupe: req.dedupe ?? true,
      loss: req.loss ?? 'none',
      targets: req.targets,
      targetTokens: req.targetTokens,
    };
    if (req.patch) {
      const means = req.patch.means;
      if (means instanceof BoundTaskMeans && means.engine === this) {
        n.taskMeans = means.native;
      } else {
        n.meansEnc = means.enc;
        n.meansDec = means.dec;
      }
      n.patchMask = req.patch.masks;
    }
    const s = outputSizes(c, req.mode, batch);
    const into = req.into ?? {};
    if ((into.losses || into.metrics) && !req.loss) throw new InputError('forward: into.losses and into.metrics need a loss');
    if ((into.captureEnc || into.captureDec) && !req.capture) throw new InputError('forward: into.captureEnc and into.captureDec need capture: true');
    // Each output: the caller's array (checked: type and length) or a new one when requested.
    const out = <K extends keyof ForwardBuffers>(key: K, wanted: boolean | undefined, make: (n: number) => NonNullable<ForwardBuffers[K]>) => {
      const given = into[key];
      if (given === undefined) return wanted ? make(s[key]) : undefined;
      const expected = make(0).constructor as { name: string };
      if (given.constructor !== expected) throw new InputError(`forward: into.${key} must be a ${expected.name}`);
      if (given.length !== s[key]) throw new InputError(`forward: into.${key} has ${given.length} elements, expected ${s[key]} (batch ${batch}, ${req.mode})`);
      return given;
    };
    n.captureEnc = out('captureEnc', req.capture, (k) => new Float32Array(k));
    n.captureDec = out('captureDec', req.capture, (k) => new Float32Array(k));
    // The engine adds the head outputs into these: a reused pair starts again from zero.
    into.captureEnc?.fill(0);
    into.captureDec?.fill(0);
    n.encoderOut = out('encoderOut', o.encoderOut, (k) => new Float32Array(k));
    n.decoderOut = out('decoderOut', o.decoderOut, (k) => new Float32Array(k));
    n.logits = out('logits', o.logits, (k) => new Float32Array(k));
    n.tokens = out('tokens', o.tokens, (k) => new Int32Array(k));
    n.pixels = out('pixels', o.pixels, (k) => new Float32Array(k));
    n.images = out('images', o.images, (k) => new Uint8Array(k));
    n.losses = out('losses', req.loss !== undefined, (k) => new Float32Array(k));
    n.metrics = out('metrics', req.loss !== undefined, (k) => new Float32Array(k));
    const stats = await engineCall(this.native.forward(n));
    return {
      batch,
      encoderOut: n.encoderOut,
      decoderOut: n.decoderOut,
      logits: n.logits,
      tokens: n.tokens,
      pixels: n.pixels,
      images: n.images,
      losses: n.losses,
      metrics: n.metrics,
      captureEnc: n.captureEnc,
      captureDec: n.captureDec,
      uniqueForwards: stats.uniqueForwards,
      uniqueDecodes: stats.uniqueDecodes,
      seconds: stats.seconds,
    };
  }

  /**
   * The VQGAN encoder's nearest-code tokens [N][196] (raster order) of canvases [N][3][224][224]: the
   * targets of the token losses. Needs an engine opened with `needVqganEncoder: true`.
   */
  async encodeTokens(canvases: Float32Array): Promise<Int32Array> {
    if (canvases.length === 0 || canvases.length % CANVAS_FLOATS !== 0) {
      throw new InputError(`encodeTokens: canvases has ${canvases.length} floats, not a positive multiple of 3x224x224 = ${CANVAS_FLOATS}`);
    }
    return engineCall(this.native.encodeTokens(canvases));
  }

  /**
   * A task vector (TaskVector.load(file) or TaskVector.fromRun) on images of any size: per image the
   * zero-shot output cell with the task vector patched in (and, with `compare`, plain zero-shot and
   * one-shot). A task vector made for other weights is refused (checked once per engine by checksum).
   */
  async apply(taskVector: TaskVector, images: readonly Image8[], options: ApplyOptions = {}): Promise<ApplyResult[]> {
    const { applyTaskVector, weightsChecksum } = await import('./method/task-vector.js');
    if (taskVector.data.weights.sha256) {
      this.weightsSha ??= weightsChecksum(this.weights);
      taskVector.checkWeights(this.weightsSha, this.weights);
    }
    return applyTaskVector(this, taskVector, images, options);
  }

  /** Sizes of a task-mean table for this model. */
  meansSizes(): { enc: number; dec: number } {
    return { enc: meansEncFloats(this.config), dec: meansDecFloats(this.config) };
  }

  /**
   * Frees the engine (weights, scratch and device memory). Calls made after it are refused at once; the
   * call in flight finishes first, waited for on a worker thread, so the event loop never blocks.
   * Closing twice returns the same promise.
   */
  close(): Promise<void> {
    this.closed ??= this.native.close();
    return this.closed;
  }

  /** `await using engine = await Engine.open(...)` closes the engine when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The addon's rejections (bad input it found, the engine failing) as EngineError, with the same message. */
async function engineCall<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw e instanceof VtvError ? e : new EngineError(e instanceof Error ? e.message : String(e));
  }
}

/** Element counts of every output of a forward of `batch` samples in `mode`. */
function outputSizes(c: ModelConfig, mode: Mode, batch: number): Record<keyof ForwardBuffers, number> {
  const ne = encTokens(mode);
  const nd = decTokens(mode);
  const np = mode === 'one-shot' ? PATCHES : PATCHES / 2;
  return {
    encoderOut: batch * ne * c.encDim,
    decoderOut: batch * nd * c.decDim,
    logits: batch * np * c.vq.nEmbed,
    tokens: batch * PATCHES,
    pixels: batch * CANVAS_FLOATS,
    images: batch * CANVAS_FLOATS,
    losses: batch,
    metrics: batch,
    captureEnc: c.encDepth * ne * c.encDim,
    captureDec: c.decDepth * nd * c.decDim,
  };
}

/** The shape fields of a config (its name is only a label). */
const shapeOf = (c: ModelConfig) => JSON.stringify({ ...c, name: undefined });

/**
 * The config to open weights with: the one given, else the `vtv_config` metadata of the weights. A file
 * whose metadata disagrees with the config given (or with another file's) is refused, naming it.
 */
export function resolveConfig(given: ModelConfig | undefined, weights: readonly string[]): ModelConfig {
  let config = given;
  let from = 'the config given';
  for (const file of weights) {
    const stored = configInWeights(file);
    if (!stored) continue;
    if (!config) {
      config = stored;
      from = `${file}'s metadata`;
    } else if (shapeOf(stored) !== shapeOf(config)) {
      throw new InputError(
        `${file}: its vtv_config metadata describes model '${stored.name}' (${shapeOf(stored)}), which does not match ${from} ('${config.name}', ${shapeOf(config)})`,
      );
    }
  }
  if (!config) {
    throw new UsageError(`no model config: none was given and ${weights.join(', ')} hold no vtv_config metadata (pass config, e.g. preset('tiny'))`);
  }
  return config;
}
