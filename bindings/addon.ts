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
}
