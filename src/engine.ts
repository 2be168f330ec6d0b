// The typed engine API over the native addon. Buffers are allocated here and filled in place by the
// engine's worker thread; nothing is copied across N-API.

import type { NativeEngine, NativeForwardRequest, NativeTaskMeans } from '../bindings/addon.js';
import { decTokens, encTokens, type Mode, type ModelConfig, meansDecFloats, meansEncFloats, patchBytes } from './config.js';
import type { Image8 } from './data/image.js';
import type { ApplyOptions, ApplyResult, TaskVector } from './method/task-vector.js';
import { loadAddon } from './native.js';

export const CANVAS_FLOATS = 3 * 224 * 224;
export const TARGET_BYTES = 3 * 111 * 111;
/** Tokens of the output quadrant (rows 7..13, columns 7..13 of the 14x14 grid). */
export const QUADRANT_TOKENS = 49;

/** Raster patch ids of the output quadrant, in the order target tokens are given. */
export const QUADRANT_PATCH_IDS: readonly number[] = Array.from({ length: QUADRANT_TOKENS }, (_, i) => (7 + Math.floor(i / 7)) * 14 + 7 + (i % 7));

/** The output-quadrant tokens [N][49] of token grids [N][196] (e.g. from `Engine.encodeTokens`). */
export function quadrantTokens(grids: Int32Array): Int32Array {
  if (grids.length % 196 !== 0) throw new Error(`quadrantTokens: ${grids.length} tokens is not a multiple of 196`);
  const n = grids.length / 196;
  const out = new Int32Array(n * QUADRANT_TOKENS);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < QUADRANT_TOKENS; i++) out[b * QUADRANT_TOKENS + i] = grids[b * 196 + QUADRANT_PATCH_IDS[i]!]!;
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
  loss?: 'iou' | 'mse' | 'token-ce' | 'token-accuracy';
  targets?: Uint8Array;
  /** Token losses: [N][49] target tokens per canvas, e.g. `quadrantTokens(await engine.encodeTokens(targetCanvases))`. */
  targetTokens?: Int32Array;
  outputs?: { encoderOut?: boolean; decoderOut?: boolean; logits?: boolean; tokens?: boolean; pixels?: boolean; images?: boolean };
  /** Exact work sharing (default true). */
  dedupe?: boolean;
}

export interface ForwardResult {
  batch: number;
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
  uniqueForwards: number;
  uniqueDecodes: number;
  seconds: number;
}

export interface EngineOptions {
  config: ModelConfig;
  weights: string | string[];
  backend?: 'auto' | 'cpu' | 'cuda';
  precision?: 'fp32' | 'bf16';
  threads?: number;
  needVqgan?: boolean;
  /** Bind the VQGAN encoder (encoder.*, quant_conv.*) for `encodeTokens`; default false. */
  needVqganEncoder?: boolean;
}

export class Engine {
  private weightsSha?: string;

  private constructor(
    private readonly native: NativeEngine,
    readonly config: ModelConfig,
    /** The weights files the engine was opened with. */
    readonly weights: readonly string[],
  ) {}

  static async open(options: EngineOptions): Promise<Engine> {
    const addon = loadAddon();
    const weights = Array.isArray(options.weights) ? options.weights : [options.weights];
    const native = await addon.createEngine({
      config: options.config,
      weights,
      backend: options.backend ?? 'auto',
      precision: options.precision ?? 'fp32',
      threads: options.threads ?? 0,
      needVqgan: options.needVqgan ?? true,
      needVqganEncoder: options.needVqganEncoder ?? false,
    });
    return new Engine(native, options.config, weights);
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
    const native = await this.native.bindTaskMeans(means.enc, means.dec);
    return new BoundTaskMeans(means.enc, means.dec, this, native);
  }

  patchBytes(mode: Mode): number {
    return patchBytes(this.config, mode);
  }

  async forward(req: ForwardRequest): Promise<ForwardResult> {
    const c = this.config;
    if (req.canvases.length % CANVAS_FLOATS !== 0) {
      throw new Error(`forward: canvases has ${req.canvases.length} floats, not a multiple of 3x224x224 = ${CANVAS_FLOATS}`);
    }
    const numCanvases = req.canvases.length / CANVAS_FLOATS;
    const batch = req.canvasIndex ? req.canvasIndex.length : numCanvases;
    const o = req.outputs ?? {};
    const ne = encTokens(req.mode);
    const nd = decTokens(req.mode);
    const np = req.mode === 'one-shot' ? 196 : 98;
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
    if (req.capture) {
      n.captureEnc = new Float32Array(c.encDepth * ne * c.encDim);
      n.captureDec = new Float32Array(c.decDepth * nd * c.decDim);
    }
    if (o.encoderOut) n.encoderOut = new Float32Array(batch * ne * c.encDim);
    if (o.decoderOut) n.decoderOut = new Float32Array(batch * nd * c.decDim);
    if (o.logits) n.logits = new Float32Array(batch * np * c.vq.nEmbed);
    if (o.tokens) n.tokens = new Int32Array(batch * 196);
    if (o.pixels) n.pixels = new Float32Array(batch * CANVAS_FLOATS);
    if (o.images) n.images = new Uint8Array(batch * CANVAS_FLOATS);
    if (req.loss) {
      n.losses = new Float32Array(batch);
      n.metrics = new Float32Array(batch);
    }
    const stats = await this.native.forward(n);
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
      throw new Error(`encodeTokens: canvases has ${canvases.length} floats, not a positive multiple of 3x224x224 = ${CANVAS_FLOATS}`);
    }
    return this.native.encodeTokens(canvases);
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

  close(): void {
    this.native.close();
  }
}
