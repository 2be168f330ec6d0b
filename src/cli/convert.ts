// `vtv convert`: released checkpoints -> the engine's safetensors (src/checkpoint/convert.ts).
import { Command, Option } from 'commander';
import { convertCheckpoints } from '../checkpoint/convert.js';
import { type Deps, defaultDeps, progressBar } from './common.js';

export function convertProgram(deps: Deps = defaultDeps): Command {
  return new Command('convert')
    .description('convert the released MAE-VQGAN .pth (and the VQGAN last.ckpt) to one safetensors file; never executes pickle code')
    .requiredOption('--mae <file.pth>', 'MAE-VQGAN checkpoint (torch.save zip)')
    .option('--vqgan <last.ckpt>', 'VQGAN Lightning checkpoint, needed when the .pth has no vae.* keys')
    .requiredOption('--out <file.safetensors>', 'output file (written atomically)')
    .addOption(new Option('--dtype <t>', 'stored element type').choices(['fp32', 'bf16']).default('fp32'))
    .option('--config <preset|file.json>', 'model preset or config file (default: inferred from the shapes)')
    .addOption(new Option('--prefer <src>', 'which wins when both hold VQGAN keys').choices(['pth', 'ckpt']).default('pth'))
    .option('--force', 'replace an existing --out (never an input)', false)
    .action(async (o: { mae: string; vqgan?: string; out: string; dtype: 'fp32' | 'bf16'; config?: string; prefer: 'pth' | 'ckpt'; force: boolean }) => {
      let bar: ReturnType<typeof progressBar> | undefined;
      const { force, ...rest } = o;
      const s = await convertCheckpoints({
        ...rest,
        overwrite: force,
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
