// `vtv tune`: time every registered kernel variant (native/src/cuda/variants.h) on each hot shape of the
// model on this machine's GPU, print the table, and store the fastest variant per shape for this device
// in the kernel tuning cache (src/kernel-tuning.ts), which engines on the cuda backend load at open.
// Also `vtv bench --kernels` (kernelBench): the same table with the tensor-core ceiling, stored nowhere.
import { Command, Option } from 'commander';
import type { NativeAddon, NativeTuneResult } from '../../bindings/addon.js';
import { UsageError, VtvError } from '../errors.js';
import { defaultShapes, formatTflops, formatVariantTable, kernelTuningPath, writeKernelTuning } from '../kernel-tuning.js';
import { loadAddon } from '../native.js';
import { intInRange } from './common.js';

export interface KernelRunOptions {
  shapes?: 'model' | 'tiny';
  batch: number;
  reps: number;
  json: boolean;
}

/** The device, or a VtvError saying why there is none (no GPU, or no CUDA backend in this build). */
function device(addon: NativeAddon, command: string) {
  try {
    return addon.kernelDevice();
  } catch (e) {
    throw new VtvError(`${command}: ${(e as Error).message}`);
  }
}

async function timeVariants(addon: NativeAddon, command: string, o: KernelRunOptions, log: (m: string) => void): Promise<NativeTuneResult> {
  const d = device(addon, command);
  const shapes = o.shapes ?? defaultShapes(d);
  if (d.emulated && shapes === 'model') {
    throw new UsageError(`${command}: --shapes model is far too large for the CPU CUDA emulator (${d.name}); use --shapes tiny`);
  }
  log(
    `${command}: ${d.name} ${d.computeCapability}${d.emulated ? ' (CPU CUDA emulator: correctness only, the times mean nothing)' : ''}, ` +
      `${shapes} shapes${shapes === 'model' ? ` at batch ${o.batch}` : ''}, ${o.reps} timed run(s) per variant`,
  );
  return addon.tuneKernels({ shapes, batch: o.batch, reps: o.reps, peak: true });
}

export async function tuneCommand(
  o: KernelRunOptions & { tuningFile?: string },
  log: (m: string) => void = (m) => console.error(m),
  addon: NativeAddon = loadAddon(),
): Promise<NativeTuneResult> {
  const result = await timeVariants(addon, 'vtv tune', o, log);
  const path = o.tuningFile ?? kernelTuningPath();
  writeKernelTuning(path, result);
  addon.setKernelTuning(result.winners);
  if (o.json) console.log(JSON.stringify(result, null, 1));
  else {
    console.log(formatVariantTable(result.rows, result.peakTflops, result.winners));
    console.log(`\nwinners for ${result.device.name} ${result.device.computeCapability} written to ${path}`);
  }
  return result;
}

export async function kernelBench(
  o: KernelRunOptions,
  log: (m: string) => void = (m) => console.error(m),
  addon: NativeAddon = loadAddon(),
): Promise<NativeTuneResult> {
  const result = await timeVariants(addon, 'vtv bench --kernels', o, log);
  if (o.json) console.log(JSON.stringify(result, null, 1));
  else {
    console.log(formatVariantTable(result.rows, result.peakTflops, result.winners));
    if (result.peakTflops) console.log(`\nceiling: ${formatTflops(result.peakTflops)} TFLOP/s bf16 (mma.sync peak micro-kernel, measured)`);
  }
  return result;
}

/** The options `vtv tune` and `vtv bench --kernels` share. */
export function kernelShapeOptions(c: Command): Command {
  return c
    .addOption(
      new Option('--shapes <set>', 'shapes to time: the model at --batch, or tiny ones (default: model; tiny on the emulator)').choices(['model', 'tiny']),
    )
    .option('--batch <n>', 'search batch the model shapes are taken at (1 to 4096)', intInRange('--batch', 1, 4096), 320)
    .option('--reps <n>', 'timed runs per variant and shape (median)', intInRange('--reps', 1, 1000), 20);
}

export function tuneProgram(): Command {
  return kernelShapeOptions(
    new Command('tune').description(
      'time every kernel variant per shape on this GPU and store the fastest per shape for this device (the engine loads them at open)',
    ),
  )
    .option('--tuning-file <path>', 'the kernel tuning cache (default: $VTV_KERNEL_TUNING_FILE or the user cache dir)')
    .option('--json', 'print the result as JSON', false)
    .action(async (o: KernelRunOptions & { tuningFile?: string }) => {
      await tuneCommand(o);
    });
}
