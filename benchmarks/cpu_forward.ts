// CPU benchmark, engine vs PyTorch, side by side in one run: the zero-shot patched forward
// of the search (MAE with per-sample head patching, argmax, duplicated tokens, VQGAN decode, quadrant
// MSE) on the same random weights, same thread count, batch 1 and batch 8, after a warm-up; prints
// seconds per forward for both and the ratio. Work sharing is off for the engine (every sample has
// its own canvas and mask anyway).
//
//   npx tsx benchmarks/cpu_forward.ts [--config mae-vqgan-vit-large] [--batches 1,8] [--repeats 2] [--threads 2]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { patchBitIndex, preset } from '../src/config.js';
import { CANVAS_FLOATS, Engine } from '../src/engine.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : def;
};
const configName = opt('config', 'mae-vqgan-vit-large');
const batches = opt('batches', '1,8').split(',').map(Number);
const repeats = Number(opt('repeats', '2'));
const threads = Number(opt('threads', '2'));
const config = preset(configName);
const cacheDir = '.vtv-cache';
mkdirSync(cacheDir, { recursive: true });
const weights = join(cacheDir, `bench-${configName}.safetensors`);
const PY = '/usr/bin/python3';

if (!existsSync(weights)) {
  console.log(`writing random ${configName} weights to ${weights} ...`);
  execFileSync(PY, ['benchmarks/cpu_forward_torch.py', '--config', configName, '--write-weights', weights, '--repeats', '0'], { stdio: 'inherit' });
}

// A random 30%-dense mask over the 1152 search variables' positions is what a search step sends;
// here: 30% of (layer, head) pairs patched at all their positions, drawn per sample.
function randomMasks(batch: number, seed: number): Uint8Array {
  const bytes = Math.ceil((config.encDepth * config.encHeads * 50 + config.decDepth * config.decHeads * 99) / 8);
  const out = new Uint8Array(batch * bytes);
  let s = seed >>> 0;
  const rand = () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
  for (let b = 0; b < batch; b++) {
    for (let l = 0; l < config.encDepth + config.decDepth; l++) {
      const heads = l < config.encDepth ? config.encHeads : config.decHeads;
      const n = l < config.encDepth ? 50 : 99;
      for (let h = 0; h < heads; h++) {
        if (rand() >= 0.3) continue;
        for (let p = 0; p < n; p++) {
          const i = patchBitIndex(config, 'zero-shot', l, h, p);
          out[b * bytes + (i >> 3)]! |= 1 << (i & 7);
        }
      }
    }
  }
  return out;
}

function randomCanvases(n: number): Float32Array {
  const c = new Float32Array(n * CANVAS_FLOATS);
  let s = 12345;
  for (let i = 0; i < c.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    c[i] = (s / 2 ** 32) * 4 - 2;
  }
  return c;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const engine = await Engine.open({ config, weights, backend: 'cpu', threads });
const means = {
  enc: new Float32Array(config.encDepth * 148 * config.encDim).map((_, i) => Math.sin(i) * 0.5),
  dec: new Float32Array(config.decDepth * 197 * config.decDim).map((_, i) => Math.cos(i) * 0.5),
};
const rows: string[] = [];
for (const batch of batches) {
  const canvases = randomCanvases(batch);
  const masks = randomMasks(batch, batch);
  const run = () => engine.forward({ mode: 'zero-shot', canvases, patch: { means, masks }, loss: 'mse', dedupe: false });
  await run(); // warm-up
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    await run();
    times.push((performance.now() - t0) / 1000);
  }
  const engineSec = median(times) / batch;
  const torchOut = execFileSync(
    PY,
    [
      'benchmarks/cpu_forward_torch.py',
      '--config',
      configName,
      '--batch',
      String(batch),
      '--threads',
      String(threads),
      '--repeats',
      String(repeats),
      '--weights',
      weights,
    ],
    { encoding: 'utf8' },
  );
  const torch = JSON.parse(torchOut.trim().split('\n').at(-1)!);
  const torchSec = torch.seconds_per_forward as number;
  rows.push(`| ${batch} | ${engineSec.toFixed(3)} | ${torchSec.toFixed(3)} | ${(torchSec / engineSec).toFixed(2)}x |`);
  console.log(`batch ${batch}: engine ${engineSec.toFixed(3)} s/forward, torch ${torchSec.toFixed(3)} s/forward`);
}
engine.close();
console.log(`\n${configName}, zero-shot patched forward + decode + MSE, fp32, ${threads} threads, ${cpus()[0]?.model}, median of ${repeats}`);
console.log('| batch | engine s/forward | PyTorch s/forward | engine speed-up |\n|---|---|---|---|');
for (const r of rows) console.log(r);
