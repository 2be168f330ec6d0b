// `vtv convert`: released checkpoints -> the engine's safetensors (src/checkpoint/convert.ts).
import { Command } from 'commander';
import { convertCheckpoints } from '../checkpoint/convert.js';
import { type Deps, defaultDeps, progressBar } from './common.js';

export function convertProgram(deps: Deps = defaultDeps): Command {
  return new Command('convert')
    .description('convert the released MAE-VQGAN .pth (and the VQGAN last.ckpt) to one safetensors file; never executes pickle code')
    .requiredOption('--mae <file.pth>', 'MAE-VQGAN checkpoint (torch.save zip)')
    .option('--vqgan <last.ckpt>', 'VQGAN Lightning checkpoint, needed when the .pth has no vae.* keys')
    .requiredOption('--out <file.safetensors>', 'output file (written atomically)')
    .option('--dtype <t>', 'fp32 | bf16', 'fp32')
    .option('--config <preset|file.json>', 'model preset or config file (default: inferred from the shapes)')
    .option('--prefer <src>', 'pth | ckpt: which wins when both hold VQGAN keys', 'pth')
    .action(async (o: { mae: string; vqgan?: string; out: string; dtype: 'fp32' | 'bf16'; config?: string; prefer: 'pth' | 'ckpt' }) => {
      let bar: ReturnType<typeof progressBar> | undefined;
      const s = await convertCheckpoints({
        ...o,
        onProgress: (done, total) => {
          bar ??= progressBar(deps, 'convert', total);
          bar.update(done);
        },
      });
      bar?.stop();
      for (const w of s.warnings) deps.log(`warning: ${w}`);
      deps.log(
        `wrote ${s.out}: ${s.keys} tensors, ${(s.bytes / 2 ** 20).toFixed(1)} MiB, ${s.dtype}, model ${s.config.name}${s.encoder ? ' (with VQGAN encoder)' : ''}, ${s.seconds.toFixed(1)} s`,
      );
    });
}
