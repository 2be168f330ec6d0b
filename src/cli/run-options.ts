// The options every run-based command takes.
import { type Command, Option } from 'commander';
import { BACKENDS, PRECISIONS } from '../config.js';
import { DATASETS } from '../data/dataset.js';
import { intInRange, maxThreads } from './common.js';

/** --threads, capped at a few threads per core. */
export const threadsOption = (help = 'CPU threads (0: all cores)') =>
  new Option('--threads <n>', `${help}; at most ${maxThreads()} here`).argParser(intInRange('--threads', 0, maxThreads())).default(0);

export function addRunOptions(c: Command): Command {
  return c
    .option('--run <dir>', 'run directory (default runs/<name>)')
    .option('--name <name>', 'run name, a folder under runs/ (letters, digits, _ - .)', 'default')
    .option('--model <preset>', 'model preset: mae-vqgan-vit-large or tiny (default: from the weights file)')
    .option('--weights <files...>', 'safetensors weights (from `vtv convert`)')
    .addOption(new Option('--backend <name>', 'compute backend').choices(BACKENDS))
    .addOption(new Option('--precision <p>', 'bf16: tensor cores, the cuda backend only (default fp32)').choices(PRECISIONS))
    .addOption(threadsOption())
    .addOption(new Option('--dataset <name>', 'data set').choices(DATASETS))
    .option('--data-dir <dir>', 'for pascal5i: the folder holding VOCdevkit/');
}
