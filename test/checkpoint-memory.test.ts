// Conversion streams tensor by tensor: converting a ~100 MB checkpoint must not hold it in memory.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { convertCheckpoints } from '../src/checkpoint/convert.js';
import { readSafetensorsHeader } from '../src/checkpoint/safetensors.js';
import { type ModelConfig, preset } from '../src/config.js';
import { makeBigCheckpoint, tempDir } from './fixtures/torch-fixtures.js';

// Matches no preset, so it also exercises passing a config object.
const config: ModelConfig = { ...preset('tiny'), name: 'mem-test', encDim: 512, encDepth: 8, encHeads: 8, decDim: 256, decDepth: 2, decHeads: 8 };
let dir = '';
let cleanup = () => {};
let pth = '';
beforeAll(() => {
  ({ dir, cleanup } = tempDir('mem'));
  pth = makeBigCheckpoint(dir, config);
});
afterAll(() => cleanup());

it('converts ~100 MB with memory bounded well below the file size', async () => {
  const size = statSync(pth).size;
  expect(size).toBeGreaterThan(90e6);
  const base = process.memoryUsage();
  let peakBuffers = 0;
  let peakRss = 0;
  const s = await convertCheckpoints({
    mae: pth,
    out: join(dir, 'big.safetensors'),
    config,
    onProgress: () => {
      const m = process.memoryUsage();
      peakBuffers = Math.max(peakBuffers, m.arrayBuffers - base.arrayBuffers);
      peakRss = Math.max(peakRss, m.rss - base.rss);
    },
  });
  expect(readSafetensorsHeader(s.out).tensors.size).toBe(s.keys);
  expect(s.bytes).toBeGreaterThan(size * 0.95);
  // The largest tensor is 4 MB and its buffers are reused; allow slack, but far from the whole file.
  expect(peakBuffers).toBeLessThan(size * 0.25);
  expect(peakRss).toBeLessThan(size * 0.4);
  console.log(
    `converted ${(size / 1e6).toFixed(0)} MB in ${s.seconds.toFixed(2)} s; peak +${(peakBuffers / 1e6).toFixed(1)} MB buffers, +${(peakRss / 1e6).toFixed(1)} MB rss`,
  );
});
