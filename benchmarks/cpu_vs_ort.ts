// CPU, side by side in one run: vtv vs onnxruntime-node vs PyTorch on the search's forward (MAE-VQGAN
// zero-shot with per-sample head patching, argmax tokens duplicated, VQGAN decode, quadrant MSE; fp32).
//
// - Same weights (one safetensors file of deterministic random weights from the reference), same
//   canvases, task means and patch masks on every side (written once by benchmarks/cpu_side_by_side.py).
// - onnxruntime-node runs the ONNX export (opset 17, fixed batch) of the plain-PyTorch reference
//   test/reference/mae_vqgan_ref.py; PyTorch runs that reference itself (Debian python3-torch), in a
//   child process that stays up for the whole run.
// - Interleaved rounds: every round times one batch forward on each side, in a rotating order, with a
//   pause between calls so that no side's spinning threads overlap the next; the table gives medians.
// - Outputs are checked against the reference: tokens equal, pixels within 1/255.
// - The machine's fp32 FMA peak (native/bench/bench_fma_peak) is measured before and after, and each side's
//   dense-equivalent GFLOP/s is given as a fraction of it.
//
//   npx tsx benchmarks/cpu_vs_ort.ts [--config mae-vqgan-vit-large] [--batches 1,4] [--rounds 7] [--threads 2]
//                                    [--sides vtv,ort,torch] [--gap-ms 300] [--json FILE]
//
// Set-up on first use (cached under .vtv-cache/): onnxruntime-node 1.30.0 into benchmarks/ort/node_modules
// (`npm ci --ignore-scripts`: its install script only fetches GPU binaries, from a host this project cannot
// reach; the CPU binaries ship in the package), the random weights, inputs and ONNX files.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { readSafetensors, type SafeTensor } from '../src/checkpoint/safetensors.js';
import { type ModelConfig, preset } from '../src/config.js';
import { Engine } from '../src/engine.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : def;
};
const configName = opt('config', 'mae-vqgan-vit-large');
const batches = opt('batches', '1,4').split(',').map(Number);
const rounds = Number(opt('rounds', '7'));
const threads = Number(opt('threads', '2'));
const sides = opt('sides', 'vtv,ort,ort-nospin,torch').split(',') as Side[];
const gapMs = Number(opt('gap-ms', '300'));
const jsonOut = opt('json', '');
if (rounds < 5) throw new Error('--rounds must be at least 5');
type Side = 'vtv' | 'ort' | 'ort-nospin' | 'torch';
for (const s of sides) if (!['vtv', 'ort', 'ort-nospin', 'torch'].includes(s)) throw new Error(`unknown side ${s}`);

const config = preset(configName);
const PY = '/usr/bin/python3';
const cache = join('.vtv-cache', 'sbs');
mkdirSync(cache, { recursive: true });
const weights = join('.vtv-cache', `bench-${configName}.safetensors`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const log = (...a: unknown[]) => console.log(...a);

// ---- set-up ------------------------------------------------------------------------------------------
function py(argv: string[]) {
  execFileSync(PY, ['benchmarks/cpu_side_by_side.py', ...argv], { stdio: 'inherit' });
}
if (!existsSync(weights)) {
  log(`writing random ${configName} weights to ${weights} ...`);
  execFileSync(PY, ['benchmarks/cpu_forward_torch.py', '--config', configName, '--write-weights', weights, '--repeats', '0'], { stdio: 'inherit' });
}
const weightsStamp = `${statSync(weights).size}-${statSync(weights).mtimeMs}`;
function cached(path: string, make: () => void) {
  const stamp = `${path}.stamp`;
  if (existsSync(path) && existsSync(stamp) && readFileSync(stamp, 'utf8') === weightsStamp) return path;
  make();
  writeFileSync(stamp, weightsStamp);
  return path;
}
const inputsFile = (b: number) =>
  cached(join(cache, `${configName}-inputs-b${b}.safetensors`), () =>
    py(['inputs', '--config', configName, '--weights', weights, '--batch', String(b), '--out', join(cache, `${configName}-inputs-b${b}.safetensors`)]),
  );
const onnxFile = (b: number) =>
  cached(join(cache, `${configName}-b${b}.onnx`), () => {
    log(`exporting the reference forward to ONNX (batch ${b}) ...`);
    py([
      'export',
      '--config',
      configName,
      '--weights',
      weights,
      '--batch',
      String(b),
      '--inputs',
      inputsFile(b),
      '--out',
      join(cache, `${configName}-b${b}.onnx`),
    ]);
  });

interface OrtTensor {
  data: Float32Array | Int32Array | Uint8Array;
  dims: readonly number[];
}
interface OrtSession {
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
interface OrtModule {
  Tensor: new (type: string, data: Float32Array | Uint8Array, dims: number[]) => OrtTensor;
  InferenceSession: { create(path: string, options: Record<string, unknown>): Promise<OrtSession> };
  env: { versions: Record<string, string> };
}
function loadOrt(): OrtModule {
  const dir = resolve('benchmarks/ort');
  if (!existsSync(join(dir, 'node_modules/onnxruntime-node'))) {
    log('installing onnxruntime-node into benchmarks/ort (npm ci --ignore-scripts) ...');
    execFileSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit' });
  }
  return createRequire(join(dir, 'package.json'))('onnxruntime-node') as OrtModule;
}

function fmaPeak(): { gflops: number; gflops_1thread: number } | undefined {
  for (const p of ['build/Release/bench_fma_peak', 'build/bench_fma_peak']) {
    if (existsSync(p)) return JSON.parse(execFileSync(p, [String(threads), '1.0', '--json'], { encoding: 'utf8' }).trim());
  }
  log('bench_fma_peak not built (npm run build:native): no peak fraction');
  return undefined;
}

// Dense multiply-adds of one zero-shot forward as the reference computes it (attention of patched heads
// included; the engine skips those, the others do not).
function forwardMacs(c: ModelConfig): { mae: number; vqgan: number } {
  const ne = 50,
    nd = 99;
  const block = (d: number, n: number) => 12 * d * d * n + 2 * n * n * d;
  let mae = 49 * 3 * 16 * 16 * c.encDim + c.encDepth * block(c.encDim, ne) + ne * c.encDim * c.decDim;
  mae += c.decDepth * block(c.decDim, nd) + 98 * c.decDim * c.vq.nEmbed;
  const vq = c.vq;
  let side = 14;
  let v = 0;
  const conv = (ci: number, co: number, k: number) => (v += ci * co * k * k * side * side);
  const resnet = (ci: number, co: number) => (conv(ci, co, 3), conv(co, co, 3), ci !== co && conv(ci, co, 1));
  const attn = (ch: number) => (v += 4 * ch * ch * side * side + 2 * side ** 4 * ch);
  const levels = vq.chMult.length;
  let ch = vq.ch * vq.chMult[levels - 1]!;
  conv(vq.embedDim, vq.zChannels, 1);
  conv(vq.zChannels, ch, 3);
  resnet(ch, ch), attn(ch), resnet(ch, ch);
  for (let i = levels - 1; i >= 0; i--) {
    const out = vq.ch * vq.chMult[i]!;
    for (let j = 0; j <= vq.numResBlocks; j++) {
      resnet(ch, out);
      ch = out;
      if (i === levels - 1) attn(ch);
    }
    if (i !== 0) {
      side *= 2;
      conv(ch, ch, 3);
    }
  }
  conv(ch, 3, 3);
  return { mae, vqgan: v };
}

// ---- the sides ---------------------------------------------------------------------------------------
interface Outputs {
  tokens: Int32Array;
  pixels: Float32Array;
  mse: Float32Array;
}
interface Runner {
  run(keep: boolean): Promise<{ seconds: number; out?: Outputs }>;
  close(): Promise<void>;
}
type Inputs = Map<string, SafeTensor>;

async function vtvRunner(inputs: Inputs): Promise<Runner> {
  const engine = await Engine.open({ config, weights, backend: 'cpu', threads });
  const means = { enc: inputs.get('means_enc')!.data as Float32Array, dec: inputs.get('means_dec')!.data as Float32Array };
  const canvases = inputs.get('canvases')!.data as Float32Array;
  const masks = inputs.get('patch_mask')!.data as Uint8Array;
  return {
    async run() {
      const t0 = performance.now();
      const r = await engine.forward({
        mode: 'zero-shot',
        canvases,
        patch: { means, masks },
        loss: 'mse',
        dedupe: false,
        outputs: { tokens: true, pixels: true },
      });
      const seconds = (performance.now() - t0) / 1000;
      return { seconds, out: { tokens: r.tokens!, pixels: r.pixels!, mse: r.metrics! } };
    },
    async close() {
      engine.close();
    },
  };
}

// onnxruntime's own defaults but for the thread count and the full graph optimisation level. Its pool
// threads spin while waiting for work by default, which wins on an idle machine and can lose badly on a
// shared one; the 'ort-nospin' side is the same session with spinning off, and the ratios use whichever
// of the two is faster.
async function ortRunner(ort: OrtModule, inputs: Inputs, batch: number, spinning: boolean): Promise<Runner> {
  const session = await ort.InferenceSession.create(onnxFile(batch), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    ...(spinning ? {} : { extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } }),
  });
  const t = (name: string, type: string) => {
    const x = inputs.get(name)!;
    return new ort.Tensor(type, x.data as Float32Array | Uint8Array, x.shape);
  };
  const feeds = {
    canvases: t('canvases', 'float32'),
    enc_patch: t('enc_patch', 'bool'),
    dec_patch: t('dec_patch', 'bool'),
    means_enc: t('means_enc', 'float32'),
    means_dec: t('means_dec', 'float32'),
  };
  return {
    async run() {
      const t0 = performance.now();
      const r = await session.run(feeds);
      const seconds = (performance.now() - t0) / 1000;
      return { seconds, out: { tokens: r.tokens!.data as Int32Array, pixels: r.pixels!.data as Float32Array, mse: r.mse!.data as Float32Array } };
    },
    close: () => session.release(),
  };
}

// The PyTorch reference in a child process: one JSON line per request.
async function torchServer() {
  const child = spawn(PY, ['benchmarks/cpu_side_by_side.py', 'serve', '--config', configName, '--weights', weights, '--threads', String(threads)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => {
    const r = await lines.next();
    if (r.done) throw new Error('the PyTorch side exited');
    return JSON.parse(r.value);
  };
  const ready = await next();
  return {
    version: ready.torch as string,
    async request(req: object) {
      child.stdin!.write(`${JSON.stringify(req)}\n`);
      return next();
    },
    close() {
      child.stdin!.write('{"cmd": "quit"}\n');
      child.stdin!.end();
    },
  };
}
function torchRunner(server: Awaited<ReturnType<typeof torchServer>>, inputsPath: string, batch: number): Runner {
  const outPath = join(cache, `${configName}-torch-out-b${batch}.safetensors`);
  return {
    async run(keep) {
      const r = await server.request({ cmd: 'run', inputs: inputsPath, out: keep ? outPath : null });
      if (!keep) return { seconds: r.seconds };
      const o = readSafetensors(outPath).tensors;
      return {
        seconds: r.seconds,
        out: { tokens: o.get('tokens')!.data as Int32Array, pixels: o.get('pixels')!.data as Float32Array, mse: o.get('mse')!.data as Float32Array },
      };
    },
    async close() {},
  };
}

function agreement(a: Outputs, ref: Outputs) {
  let tok = 0;
  for (let i = 0; i < ref.tokens.length; i++) if (a.tokens[i] === ref.tokens[i]) tok++;
  let within = 0,
    maxAbs = 0;
  for (let i = 0; i < ref.pixels.length; i++) {
    const d = Math.abs(a.pixels[i]! - ref.pixels[i]!);
    if (d <= 1 / 255) within++;
    if (d > maxAbs) maxAbs = d;
  }
  let mseDiff = 0;
  for (let i = 0; i < ref.mse.length; i++) mseDiff = Math.max(mseDiff, Math.abs(a.mse[i]! - ref.mse[i]!));
  return { tokensEqual: tok / ref.tokens.length, pixelsWithin1of255: within / ref.pixels.length, pixelsMaxAbs: maxAbs, mseMaxAbs: mseDiff };
}

// ---- the run -----------------------------------------------------------------------------------------
const macs = forwardMacs(config);
const gflopPerForward = (2 * (macs.mae + macs.vqgan)) / 1e9;
const peakBefore = fmaPeak();
const ort = sides.some((s) => s.startsWith('ort')) ? loadOrt() : undefined;
const torch = sides.includes('torch') ? await torchServer() : undefined;
log(
  `${configName}: ${((macs.mae + macs.vqgan) / 1e9).toFixed(1)} GMAC per forward (MAE ${(macs.mae / 1e9).toFixed(1)}, VQGAN decoder ${(macs.vqgan / 1e9).toFixed(1)}); ${threads} threads; ${cpus()[0]?.model}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
);
if (peakBefore) log(`fp32 FMA peak: ${peakBefore.gflops} GFLOP/s on ${threads} threads (${peakBefore.gflops_1thread} on 1)`);

interface BatchResult {
  batch: number;
  seconds: Record<string, number[]>;
  agreement: Record<string, ReturnType<typeof agreement>>;
}
const results: BatchResult[] = [];
for (const batch of batches) {
  const inPath = inputsFile(batch);
  if (sides.some((s) => s.startsWith('ort'))) onnxFile(batch);
  const inputs = readSafetensors(inPath).tensors;
  if (inputs.get('canvases')!.shape[0] !== batch) throw new Error(`${inPath}: not batch ${batch}`);
  const runners: Partial<Record<Side, Runner>> = {};
  for (const s of sides) {
    if (s === 'vtv') runners.vtv = await vtvRunner(inputs);
    if (s === 'ort') runners.ort = await ortRunner(ort!, inputs, batch, true);
    if (s === 'ort-nospin') runners['ort-nospin'] = await ortRunner(ort!, inputs, batch, false);
    if (s === 'torch') runners.torch = torchRunner(torch!, inPath, batch);
  }
  // Warm-up (one call each), keeping the outputs for the agreement check.
  const outs: Partial<Record<Side, Outputs>> = {};
  for (const s of sides) {
    outs[s] = (await runners[s]!.run(true)).out;
    await sleep(gapMs);
  }
  const res: BatchResult = { batch, seconds: {}, agreement: {} };
  const refSide: Side | undefined = outs.torch ? 'torch' : undefined;
  if (refSide) for (const s of sides) if (s !== refSide) res.agreement[s] = agreement(outs[s]!, outs[refSide]!);
  const ortOut = outs.ort ?? outs['ort-nospin'];
  if (outs.vtv && ortOut) res.agreement['vtv-vs-ort'] = agreement(outs.vtv, ortOut);
  for (const [k, v] of Object.entries(res.agreement))
    log(
      `batch ${batch} ${k}: tokens equal ${(100 * v.tokensEqual).toFixed(2)}%, pixels within 1/255 ${(100 * v.pixelsWithin1of255).toFixed(3)}% (max |d| ${v.pixelsMaxAbs.toExponential(2)}), MSE max |d| ${v.mseMaxAbs.toExponential(2)}`,
    );
  for (const s of sides) res.seconds[s] = [];
  for (let r = 0; r < rounds; r++) {
    const order = sides.map((_, i) => sides[(i + r) % sides.length]!);
    const line: string[] = [];
    for (const s of order) {
      const { seconds } = await runners[s]!.run(false);
      res.seconds[s]!.push(seconds);
      line.push(`${s} ${seconds.toFixed(3)}`);
      await sleep(gapMs);
    }
    log(`batch ${batch} round ${r + 1}/${rounds}: ${line.join(', ')} s`);
  }
  for (const s of sides) await runners[s]!.close();
  results.push(res);
}
torch?.close();
const peakAfter = fmaPeak();
const peak = peakBefore && peakAfter ? Math.max(peakBefore.gflops, peakAfter.gflops) : undefined;

// ---- report ------------------------------------------------------------------------------------------
const fps = (r: BatchResult, s: Side) => r.batch / median(r.seconds[s]!);
const names: Record<Side, string> = { vtv: 'vtv', ort: 'onnxruntime-node', 'ort-nospin': 'onnxruntime-node (no spinning)', torch: 'PyTorch' };
const ortSides = sides.filter((s) => s.startsWith('ort'));
const bestOrt = (r: BatchResult) => Math.max(...ortSides.map((s) => fps(r, s)));
log(
  `\n${configName}, zero-shot patched forward + VQGAN decode + MSE, fp32, ${threads} threads, ${cpus()[0]?.model}; medians of ${rounds} interleaved rounds after 1 warm-up`,
);
if (peakBefore && peakAfter) log(`fp32 FMA peak (bench_fma_peak, ${threads} threads): ${peakBefore.gflops} GFLOP/s before, ${peakAfter.gflops} after`);
const head = ['batch', ...sides.map((s) => `${names[s]} forwards/s`)];
if (sides.includes('vtv') && ortSides.length) head.push('vtv / onnxruntime');
if (sides.includes('vtv') && sides.includes('torch')) head.push('vtv / PyTorch');
if (peak) head.push(...sides.map((s) => `${names[s]} % of peak`));
log(`| ${head.join(' | ')} |\n|${head.map(() => '---|').join('')}`);
for (const r of results) {
  const row = [String(r.batch), ...sides.map((s) => fps(r, s).toFixed(3))];
  if (sides.includes('vtv') && ortSides.length) row.push(`${(fps(r, 'vtv') / bestOrt(r)).toFixed(2)}x`);
  if (sides.includes('vtv') && sides.includes('torch')) row.push(`${(fps(r, 'vtv') / fps(r, 'torch')).toFixed(2)}x`);
  if (peak) row.push(...sides.map((s) => `${((100 * fps(r, s) * gflopPerForward) / peak).toFixed(0)}%`));
  log(`| ${row.join(' | ')} |`);
}
log(
  `(vtv / onnxruntime: against the faster onnxruntime side; % of peak: dense-equivalent ${gflopPerForward.toFixed(1)} GFLOP per forward x forwards/s over the larger measured peak)`,
);
if (jsonOut) {
  writeFileSync(
    jsonOut,
    JSON.stringify(
      {
        config: configName,
        threads,
        rounds,
        cpu: cpus()[0]?.model,
        onnxruntime: ort?.env.versions,
        torch: torch?.version,
        gflopPerForward,
        peakBefore,
        peakAfter,
        results,
      },
      null,
      1,
    ),
  );
}
