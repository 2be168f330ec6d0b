// Benchmark (not a unit test): converts a synthetic checkpoint with the released model's shapes
// (MAE ViT-L + VQGAN f16/1024 with encoder, about 1.6 GB fp32) to fp32 and bf16 safetensors, and
// reports seconds, throughput and peak memory. Run: npx tsx benchmarks/convert_speed.ts [work dir]
// The synthetic .pth is written by test/fixtures/make_torch_checkpoints.py --big (Debian python3-torch).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertCheckpoints } from '../src/checkpoint/convert.js';
import { preset } from '../src/config.js';
import { makeBigCheckpoint } from '../test/fixtures/torch-fixtures.js';

const work = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'vtv-convert-bench-'));
const config = preset('mae-vqgan-vit-large');
try {
  let t = performance.now();
  const pth = makeBigCheckpoint(work, config);
  const size = statSync(pth).size;
  console.log(`synthetic checkpoint: ${(size / 1e9).toFixed(2)} GB written by torch.save in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  for (const dtype of ['fp32', 'bf16'] as const) {
    const base = process.memoryUsage().rss;
    let peak = base;
    t = performance.now();
    const s = await convertCheckpoints({
      mae: pth,
      out: join(work, `out-${dtype}.safetensors`),
      dtype,
      onProgress: () => {
        peak = Math.max(peak, process.memoryUsage().rss);
      },
    });
    const secs = (performance.now() - t) / 1000;
    console.log(
      `${dtype}: ${s.keys} tensors, ${(s.bytes / 1e9).toFixed(2)} GB out in ${secs.toFixed(2)} s ` +
        `(${(size / 1e9 / secs).toFixed(2)} GB/s read); peak RSS ${(peak / 1e6).toFixed(0)} MB (+${((peak - base) / 1e6).toFixed(0)} MB)`,
    );
    rmSync(s.out);
  }
} finally {
  if (!process.argv[2]) rmSync(work, { recursive: true, force: true });
}
