// The options every run-based command takes.
import type { Command } from 'commander';
import { parseIntArg } from './common.js';

export function addRunOptions(c: Command): Command {
  return c
    .option('--run <dir>', 'run directory (default runs/<name>)')
    .option('--name <name>', 'run name, for the default run directory', 'default')
    .option('--model <preset>', 'model preset: mae-vqgan-vit-large or tiny (default: from the weights file)')
    .option('--weights <files...>', 'safetensors weights (from `vtv convert`)')
    .option('--backend <name>', 'auto | cpu | cuda')
    .option('--precision <p>', 'fp32 | bf16 (bf16: tensor cores, the cuda backend only; default fp32)')
    .option('--threads <n>', 'CPU threads (0: all cores)', parseIntArg('--threads'), 0)
    .option('--dataset <name>', 'bundled | pascal5i')
    .option('--data-dir <dir>', 'for pascal5i: the folder holding VOCdevkit/');
}
