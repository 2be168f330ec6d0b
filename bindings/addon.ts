// The whole surface of the native addon (bindings/*.cc). src/engine.ts is the typed API users call;
// this file only describes what crosses N-API. Typed arrays cross without copies.
import type { Backend, Loss, Mode, ModelConfig, Precision } from '../src/config.js';

/** The model config crosses as the same object src/config.ts describes (camelCase fields). */
export type NativeModelConfig = ModelConfig;
export interface NativeBackendInfo { name: string; compiled: boolean; usable: boolean; detail: string }

/** Task means bound by `NativeEngine.bindTaskMeans` (opaque; freed when collected). */
export interface NativeTaskMeans {
  readonly __nativeTaskMeans?: never;
}

export interface NativeForwardRequest {
  mode: Mode;
  canvases: Float32Array;
  numCanvases: number;
  canvasIndex?: Int32Array;
  /** The task means, bound once (taskMeans) or as tables checked on this call (meansEnc, meansDec). */
  taskMeans?: NativeTaskMeans;
  meansEnc?: Float32Array;
  meansDec?: Float32Array;
  patchMask?: Uint8Array;
  captureEnc?: Float32Array;
  captureDec?: Float32Array;
  loss?: 'none' | Loss;
  targets?: Uint8Array;
  /** Token losses: [numCanvases][49] output-quadrant target tokens (rows 7..13, columns 7..13, raster). */
  targetTokens?: Int32Array;
  dedupe?: boolean;
  // Output buffers, allocated by the caller (written in place by the engine thread).
  encoderOut?: Float32Array;
  decoderOut?: Float32Array;
  logits?: Float32Array;
  tokens?: Int32Array;
  pixels?: Float32Array;
  images?: Uint8Array;
  losses?: Float32Array;
  metrics?: Float32Array;
}
export interface NativeForwardStats { uniqueForwards: number; uniqueDecodes: number; batch: number; seconds: number }

export interface NativeEngine {
  /** Runs on a worker thread; rejects with the engine's message on bad input. */
  forward(request: NativeForwardRequest): Promise<NativeForwardStats>;
  /** Checks task-mean tables once (sizes, finite values) and keeps them where the backend reads them. */
  bindTaskMeans(enc: Float32Array, dec: Float32Array): Promise<NativeTaskMeans>;
  /** The VQGAN encoder's tokens [n][196] of n canvases [n][3][224][224]; needs needVqganEncoder. */
  encodeTokens(canvases: Float32Array): Promise<Int32Array>;
  config(): NativeModelConfig;
  backend(): { name: string; precision: string; reason: string; threads: number };
  /** Refuses later calls at once; resolves once the call in flight has returned and the engine is freed. */
  close(): Promise<void>;
}

/** One registered kernel variant (native/src/cuda/variants.h). */
export interface NativeKernelVariant { family: string; name: string; what: string; isDefault: boolean }
export interface NativeKernelDevice { name: string; computeCapability: string; emulated: boolean }
export interface NativeVariantTiming {
  family: string; shape: string; variant: string; ms: number; tflops: number;
  /** Why the variant was not timed on this shape ('' when it was). */
  skipped: string;
}
export interface NativeTuneResult {
  device: NativeKernelDevice; shapes: string; batch: number;
  /** The tensor-core bf16 ceiling measured by the peak micro-kernel, TFLOP/s (null when not asked for). */
  peakTflops: number | null;
  rows: NativeVariantTiming[];
  /** Shape key -> the fastest variant. */
  winners: Record<string, string>;
}

export interface NativeAddon {
  version: string;
  /** The names the addon accepts for each engine enum (src/config.ts lists the same). */
  names: { backends: string[]; precisions: string[]; modes: string[]; losses: string[] };
  /** The canvas geometry compiled into the engine (from src/model-constants.json). */
  canvas: Record<string, number>;
  gemmImplementation: string;
  backends(): NativeBackendInfo[];
  preset(name: string): NativeModelConfig;
  presetNames(): string[];
  /** Opens the weights (mmap) and builds the engine on a worker thread. */
  createEngine(options: {
    config: NativeModelConfig;
    weights: string[];
    backend?: Backend;
    precision?: Precision;
    threads?: number;
    needVqgan?: boolean;
    needVqganEncoder?: boolean;
  }): Promise<NativeEngine>;
  /**
   * The tensors the engine reads from these files for a config (MAE, VQGAN decoder and encoder), sorted;
   * a missing or misshapen one throws as Engine.open does.
   */
  boundTensors(config: NativeModelConfig, paths: string[]): string[];
  /** Lists a safetensors file's tensors (key, dtype, shape) and metadata without loading data. */
  inspectWeights(paths: string[]): { tensors: { key: string; dtype: string; shape: number[] }[]; metadata: Record<string, string> };
  /** The registered kernel variants (empty without the CUDA backend). */
  kernelVariants(): NativeKernelVariant[];
  /** The GPU the variants run on; throws, saying why, without one. */
  kernelDevice(): NativeKernelDevice;
  /** Times every variant on every shape of the set ('model' at `batch`, or 'tiny'); rejects without a GPU. */
  tuneKernels(options: { shapes?: 'model' | 'tiny'; batch?: number; reps?: number; peak?: boolean }): Promise<NativeTuneResult>;
  /** Replaces the process's tuning table (shape key -> variant name); later passes dispatch on it. */
  setKernelTuning(table: Record<string, string>): void;
  kernelTuning(): Record<string, string>;
}
