// The kernel tuning cache: which registered variant (native/src/cuda/variants.h) runs each hot kernel
// shape, per device. `vtv tune` times the variants on the GPU and writes the winners here; an engine on
// the cuda backend loads its device's entry at open (Engine.open), and on a device with no entry tunes
// first (or keeps the defaults when told not to: VTV_KERNEL_TUNING=defaults).
//
// The file (JSON, written atomically): { format: 'vtv-kernel-tuning', version: 1, devices: { "<device
// name> sm_XY": { device, tunedAt, shapes, batch, peakTflops, winners: { "<shape key>": "<variant>" },
// rows } } }. Default path: $VTV_KERNEL_TUNING_FILE, else <user cache dir>/vtv/kernel-tuning.json
// ($XDG_CACHE_HOME or ~/.cache on Linux, ~/Library/Caches on macOS, %LOCALAPPDATA% on Windows).
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import type { NativeAddon, NativeKernelDevice, NativeTuneResult, NativeVariantTiming } from '../bindings/addon.js';
import { VtvError } from './errors.js';
import { writeJsonAtomic } from './run/atomic-file.js';

export const KERNEL_TUNING_FORMAT = 'vtv-kernel-tuning';
export const KERNEL_TUNING_VERSION = 1;

/** What an engine does about kernel tuning at open: see the file comment. */
export type KernelTuningMode = 'auto' | 'defaults' | 'tune';

const Timing = z.object({
  family: z.string(),
  shape: z.string(),
  variant: z.string(),
  ms: z.number(),
  tflops: z.number(),
  skipped: z.string(),
});
const DeviceEntry = z.object({
  device: z.object({ name: z.string(), computeCapability: z.string(), emulated: z.boolean() }),
  tunedAt: z.string(),
  shapes: z.string(),
  batch: z.number(),
  peakTflops: z.number().nullable(),
  winners: z.record(z.string(), z.string()),
  rows: z.array(Timing),
});
const TuningFile = z.object({
  format: z.literal(KERNEL_TUNING_FORMAT),
  version: z.literal(KERNEL_TUNING_VERSION),
  devices: z.record(z.string(), DeviceEntry),
});
export type KernelTuningEntry = z.infer<typeof DeviceEntry>;
export type KernelTuningFile = z.infer<typeof TuningFile>;

/** The user's cache directory for vtv. */
export function userCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (process.platform === 'win32') return join(env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local'), 'vtv', 'Cache');
  if (process.platform === 'darwin') return join(homedir(), 'Library', 'Caches', 'vtv');
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'vtv');
}

/** Where the tuning cache lives: $VTV_KERNEL_TUNING_FILE, else kernel-tuning.json in the user cache dir. */
export function kernelTuningPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.VTV_KERNEL_TUNING_FILE || join(userCacheDir(env), 'kernel-tuning.json');
}

/** The cache's key of a device: its name and compute capability. */
export function deviceKey(d: NativeKernelDevice): string {
  return `${d.name} ${d.computeCapability}`;
}

/** The cache file, or an empty one when it does not exist; a malformed file is an error naming it. */
export function readKernelTuning(path: string): KernelTuningFile {
  if (!existsSync(path)) return { format: KERNEL_TUNING_FORMAT, version: KERNEL_TUNING_VERSION, devices: {} };
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new VtvError(`kernel tuning cache ${path}: not valid JSON (${(e as Error).message}); delete it or run vtv tune`);
  }
  const parsed = TuningFile.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new VtvError(`kernel tuning cache ${path}: ${issue.path.join('.') || '(top level)'}: ${issue.message}; delete it or run vtv tune`);
  }
  return parsed.data;
}

/** Adds (or replaces) one device's entry from a tuning run and writes the file atomically. */
export function writeKernelTuning(path: string, result: NativeTuneResult, now = new Date()): KernelTuningEntry {
  const file = readKernelTuning(path);
  const entry: KernelTuningEntry = {
    device: result.device,
    tunedAt: now.toISOString(),
    shapes: result.shapes,
    batch: result.batch,
    peakTflops: result.peakTflops,
    winners: result.winners,
    rows: result.rows,
  };
  file.devices[deviceKey(result.device)] = entry;
  writeJsonAtomic(path, file);
  return entry;
}

/** The shape set a tuning run on this device uses: the model's on a GPU, tiny ones on the emulator. */
export function defaultShapes(device: NativeKernelDevice): 'model' | 'tiny' {
  return device.emulated ? 'tiny' : 'model';
}

/**
 * Sets the process's tuning table for the current device (called by Engine.open on the cuda backend):
 * 'defaults' clears it; 'auto' loads the device's entry from the cache and, on a GPU with no entry,
 * tunes the model's shapes first and stores them (the CPU CUDA emulator never tunes by itself: its
 * timings mean nothing); 'tune' always tunes and stores. Returns what it did, for a log line.
 */
export async function applyKernelTuning(
  addon: NativeAddon,
  mode: KernelTuningMode,
  path = kernelTuningPath(),
  log: (msg: string) => void = () => {},
): Promise<string> {
  if (mode === 'defaults') {
    addon.setKernelTuning({});
    return 'kernel variants: defaults (VTV_KERNEL_TUNING=defaults)';
  }
  const device = addon.kernelDevice();
  const key = deviceKey(device);
  const cached = mode === 'auto' ? readKernelTuning(path).devices[key] : undefined;
  if (cached) {
    addon.setKernelTuning(cached.winners);
    return `kernel variants: tuned for ${key} (${path}, ${cached.tunedAt})`;
  }
  if (mode === 'auto' && device.emulated) {
    addon.setKernelTuning({});
    return `kernel variants: defaults (${key} is the CPU CUDA emulator; vtv tune times tiny shapes there)`;
  }
  log(`vtv: timing the kernel variants on ${key} (first run on this device; VTV_KERNEL_TUNING=defaults skips it)`);
  const result = await addon.tuneKernels({ shapes: defaultShapes(device), batch: 320, reps: 10, peak: true });
  addon.setKernelTuning(result.winners);
  try {
    writeKernelTuning(path, result);
  } catch (e) {
    // The table is in use either way; only the next process would have to tune again.
    log(`vtv: could not store the kernel tuning in ${path}: ${(e as Error).message}`);
    return `kernel variants: tuned now for ${key} (not stored)`;
  }
  return `kernel variants: tuned now for ${key} (${path})`;
}

/** The engine's tuning mode from $VTV_KERNEL_TUNING (auto, defaults or tune; default auto). */
export function kernelTuningModeFromEnv(env: NodeJS.ProcessEnv = process.env): KernelTuningMode {
  const v = env.VTV_KERNEL_TUNING;
  if (v === undefined || v === '') return 'auto';
  if (v === 'auto' || v === 'defaults' || v === 'tune') return v;
  throw new VtvError(`VTV_KERNEL_TUNING=${v}: expected auto, defaults or tune`);
}

/** TFLOP/s with one decimal, or three significant digits below 1 (the emulator's tiny shapes). */
export function formatTflops(v: number): string {
  return v >= 1 ? v.toFixed(1) : v.toPrecision(3);
}

/** The rows of `vtv bench --kernels` / `vtv tune` as a text table; ceiling in TFLOP/s (null: no % column). */
export function formatVariantTable(rows: NativeVariantTiming[], ceiling: number | null, winners: Record<string, string> = {}): string {
  const head = ['family', 'shape', 'variant', 'ms', 'TFLOP/s', '% of ceiling', ''];
  const body = rows.map((r) => {
    if (r.skipped) return [r.family, r.shape, r.variant, '-', '-', '-', `not run: ${r.skipped}`];
    const hasFlops = r.tflops > 0;
    return [
      r.family,
      r.shape,
      r.variant,
      r.ms.toFixed(3),
      hasFlops ? formatTflops(r.tflops) : '-',
      hasFlops && ceiling ? `${((100 * r.tflops) / ceiling).toFixed(1)}%` : '-',
      winners[r.shape] === r.variant ? 'fastest' : '',
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i >= 3 && i <= 5 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), ...body.map(line)].join('\n');
}
