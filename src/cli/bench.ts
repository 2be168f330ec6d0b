// `vtv bench`: forwards per second of the engine on this machine, per mode and batch, with and
// without patching and decoding (random canvases; the model from --model/--weights or a run).
import { Command, Option } from 'commander';
import { BACKENDS, type ModelConfig, preset } from '../config.js';
import { Rng } from '../data/rng.js';
import { CANVAS_FLOATS, type ForwardRequest, type TaskMeans } from '../engine.js';
import { sampleChoices } from '../method/policy.js';
import { VariableSpace } from '../method/variables.js';
import { checkWeights, type Deps, defaultDeps, intInRange, type OpenedEngine, parseIntList, UsageError } from './common.js';
import { threadsOption } from './run-options.js';
import { kernelBench } from './tune.js';

export interface BenchRow {
  case: string;
  batch: number;
  seconds: number;
  forwardsPerSecond: number;
  uniqueForwards: number;
}

export async function benchEngine(engine: OpenedEngine, c: ModelConfig, batches: number[], repeats: number): Promise<BenchRow[]> {
  const rng = Rng.fromSeed(1);
  const rows: BenchRow[] = [];
  const space = new VariableSpace(c, 1, 'zero-shot');
  // Bound once, as a search binds its tasks' means.
  const means: TaskMeans = await engine.bindTaskMeans({
    enc: Float32Array.from({ length: c.encDepth * 148 * c.encDim }, () => rng.float() - 0.5),
    dec: Float32Array.from({ length: c.decDepth * 197 * c.decDim }, () => rng.float() - 0.5),
  });
  for (const B of batches) {
    // B distinct canvases, so work sharing cannot make a case look faster than it is.
    const canvases = Float32Array.from({ length: B * CANVAS_FLOATS }, () => rng.float() * 2 - 1);
    const canvasIndex = Int32Array.from({ length: B }, (_, i) => i);
    const probs = new Float64Array(space.count).fill(0.27);
    const cases: [string, () => ForwardRequest][] = [
      ['one-shot MAE only', () => ({ mode: 'one-shot', canvases, canvasIndex, outputs: { tokens: true } })],
      ['zero-shot MAE only', () => ({ mode: 'zero-shot', canvases, canvasIndex, outputs: { tokens: true } })],
      ['one-shot + decode + loss', () => ({ mode: 'one-shot', canvases, canvasIndex, loss: 'mse' })],
      [
        'zero-shot patched + decode + loss (a search step)',
        () => ({ mode: 'zero-shot', canvases, canvasIndex, loss: 'mse', patch: { means, masks: space.masks(sampleChoices(probs, B, rng), B) } }),
      ],
    ];
    for (const [name, make] of cases) {
      await engine.forward(make()); // warm-up
      let secs = 0;
      let uniq = 0;
      for (let r = 0; r < repeats; r++) {
        const req = make();
        const t0 = performance.now();
        const res = await engine.forward(req);
        secs += (performance.now() - t0) / 1000;
        uniq += res.uniqueForwards;
      }
      rows.push({ case: name, batch: B, seconds: secs / repeats, forwardsPerSecond: (B * repeats) / secs, uniqueForwards: uniq / repeats });
    }
  }
  return rows;
}

export function benchProgram(deps: Deps = defaultDeps): Command {
  return new Command('bench')
    .description('measure engine forwards per second (random canvases), or with --kernels every kernel variant per shape')
    .option('--model <preset>', 'model preset', 'tiny')
    .option('--weights <files...>', 'safetensors weights for the model (required unless --kernels)')
    .option('--kernels', 'time every kernel variant per shape on the GPU: ms, TFLOP/s, % of the measured tensor-core ceiling', false)
    .addOption(new Option('--shapes <set>', "--kernels: the model's shapes or tiny ones (default: model; tiny on the emulator)").choices(['model', 'tiny']))
    .option('--kernel-batch <n>', '--kernels: the search batch of the model shapes', intInRange('--kernel-batch', 1, 4096), 320)
    .addOption(new Option('--backend <name>', 'compute backend').choices(BACKENDS).default('auto'))
    .addOption(threadsOption())
    .option('--batches <list>', 'batch sizes (1 to 4096)', parseIntList('--batches', 1, 4096), [1, 16])
    .option('--repeats <n>', 'timed repeats per case', intInRange('--repeats', 1, 10000), 3)
    .option('--json', 'print JSON rows', false)
    .action(
      async (o: {
        model: string;
        weights?: string[];
        backend: 'auto' | 'cpu' | 'cuda';
        threads: number;
        batches: number[];
        repeats: number;
        json: boolean;
        kernels: boolean;
        shapes?: 'model' | 'tiny';
        kernelBatch: number;
      }) => {
        if (o.repeats < 1) throw new UsageError('--repeats must be >= 1');
        if (o.kernels) {
          await kernelBench({ shapes: o.shapes, batch: o.kernelBatch, reps: o.repeats, json: o.json }, deps.log);
          return;
        }
        if (!o.weights) throw new UsageError("required option '--weights <files...>' not specified (it is optional only with --kernels)");
        const c = preset(o.model);
        checkWeights(c, o.weights);
        const engine = await deps.openEngine(c, o.weights, o.backend, o.threads);
        try {
          if (engine.backend) deps.log(`engine: ${engine.backend.name} (${engine.backend.reason}), ${engine.backend.threads} thread(s)`);
          const rows = await benchEngine(engine, c, o.batches, o.repeats);
          if (o.json) console.log(JSON.stringify(rows, null, 1));
          else
            for (const r of rows)
              console.log(
                `${r.case.padEnd(50)} batch ${String(r.batch).padStart(4)}  ${r.forwardsPerSecond.toFixed(1).padStart(9)} forwards/s  (${(r.seconds * 1000).toFixed(1)} ms per call, ${r.uniqueForwards} unique)`,
              );
        } finally {
          engine.close?.();
        }
      },
    );
}
