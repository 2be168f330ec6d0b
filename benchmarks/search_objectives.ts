// The two search search objectives (docs/method.md#token-objective) side by side, same machine, one run:
//   1. step rate: REINFORCE steps of `vtv search` with --objective pixel (decode every distinct sample,
//      score -IoU/MSE) and --objective token (MAE only, token cross-entropy), same samples per step,
//      same seed, same canvases and means; steps/s, sample forwards/s, distinct forwards and decodes.
//   2. the planted problem of test/search-planted-engine.test.ts (tiny model only): both objectives with
//      the same seed and budget, plus the token objective against the planted forward's own tokens (what
//      a VQGAN encoder that inverts the decoder would give); Jaccard overlap of the final subsets with
//      the hidden one and with the pixel objective's, final pixel-space MSE, wall-clock.
// Prints Markdown tables.
//
//   npx tsx benchmarks/search_objectives.ts [--threads 2] [--samples 64] [--steps 5]
//        [--weights file.safetensors]   (adds a step-rate row pair for that model, e.g. ViT-L random
//                                         weights with the VQGAN encoder; its config from the file)
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensorsHeader } from '../src/checkpoint/safetensors.js';
import { type ModelConfig, ModelConfigSchema, preset } from '../src/config.js';
import { Rng } from '../src/data/rng.js';
import { CANVAS_FLOATS, Engine } from '../src/engine.js';
import { type CanvasSet, evaluateSubset, REFERENCE_SEARCH, runSearch, type SearchOptions, type StepRecord } from '../src/method/reinforce.js';
import { computeTargetTokens } from '../src/method/target-tokens.js';
import { VariableSpace } from '../src/method/variables.js';
import { writeRandomWeights } from '../src/model/random-weights.js';
import { jaccard, PLANTED_BUDGET, plantedProblem, recovery } from '../test/search-planted-problem.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string | undefined) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : def;
};
const threads = Number(opt('threads', '2'));
const samples = Number(opt('samples', '64'));
const rateSteps = Number(opt('steps', '5'));
const extraWeights = opt('weights', undefined);

const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');

interface RateRow {
  model: string;
  objective: string;
  steps: number;
  seconds: number;
  forwards: number;
  decodes: number;
  tokenSeconds: number;
}

/** Steps of a granularity-1 search (the reference's space) on random canvases, for both objectives. */
async function stepRates(engine: Engine, config: ModelConfig, label: string): Promise<RateRow[]> {
  const rng = Rng.fromSeed(5);
  const canvases = (n: number) => Float32Array.from({ length: n * CANVAS_FLOATS }, () => rng.float() * 4 - 2);
  const cap = await engine.forward({ mode: 'one-shot', canvases: canvases(2), capture: true });
  const means = { enc: cap.captureEnc!.map((x) => x / 2), dec: cap.captureDec!.map((x) => x / 2) };
  const set: CanvasSet = { canvases: canvases(10), count: 10 };
  const t0 = performance.now();
  set.targetTokens = await computeTargetTokens(engine, set);
  const tokenSeconds = (performance.now() - t0) / 1000;
  const space = new VariableSpace(config, 1, 'zero-shot');
  const rows: RateRow[] = [];
  for (const objective of ['pixel', 'token'] as const) {
    const o: SearchOptions = {
      ...REFERENCE_SEARCH,
      steps: rateSteps + 1,
      samplesPerStep: samples,
      engineBatch: samples,
      validateEvery: 0,
      snapshotEvery: 0,
      seed: 1,
      objective,
    };
    const recs: StepRecord[] = [];
    await runSearch({ engine, space, tasks: [{ name: 't', loss: 'mse', means }], train: [set] }, o, { onStep: (r) => recs.push(r) });
    const timed = recs.slice(1); // the first step warms up
    rows.push({
      model: label,
      objective: objective === 'pixel' ? 'pixel' : 'token (ce)',
      steps: timed.length,
      seconds: timed.reduce((a, r) => a + r.seconds, 0),
      forwards: timed.reduce((a, r) => a + r.uniqueForwards, 0),
      decodes: timed.reduce((a, r) => a + r.uniqueDecodes, 0),
      tokenSeconds: objective === 'token' ? tokenSeconds : 0,
    });
  }
  return rows;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vtv-objectives-'));
  const tiny = preset('tiny');
  const tinyWeights = join(dir, 'tiny.safetensors');
  writeRandomWeights(tinyWeights, tiny, 3); // the planted test's default weights seed
  const engine = await Engine.open({ config: tiny, weights: tinyWeights, backend: 'cpu', threads, needVqganEncoder: true });
  const out: string[] = [];
  try {
    console.error(`machine: ${cpus().length} logical CPU(s) (${cpus()[0]?.model ?? '?'}), ${threads} engine thread(s), backend ${engine.backend.name}`);
    const rates = await stepRates(engine, tiny, 'tiny');
    if (extraWeights) {
      const meta = readSafetensorsHeader(extraWeights).metadata.vtv_config;
      if (!meta) throw new Error(`${extraWeights}: no vtv_config metadata (write it with \`vtv convert\` or random_weights)`);
      const config = ModelConfigSchema.parse(JSON.parse(meta));
      const big = await Engine.open({ config, weights: extraWeights, backend: 'cpu', threads, needVqganEncoder: true });
      try {
        rates.push(...(await stepRates(big, config, config.name)));
      } finally {
        big.close();
      }
    }
    out.push(`### Step rate (${samples} samples/step, granularity 1, ${rateSteps} timed steps after 1 warm-up, ${threads} thread(s), CPU)`, '');
    out.push('| model | objective | steps/s | sample forwards/s | distinct forwards/step | decodes/step | target tokens (once) |');
    out.push('|---|---|---|---|---|---|---|');
    for (const r of rates) {
      out.push(
        `| ${r.model} | ${r.objective} | ${fmt(r.steps / r.seconds, 3)} | ${fmt((r.steps * samples) / r.seconds, 1)} | ${fmt(r.forwards / r.steps, 1)} | ${fmt(r.decodes / r.steps, 1)} | ${r.tokenSeconds ? `${fmt(r.tokenSeconds, 2)} s` : '-'} |`,
      );
    }
    for (const m of new Set(rates.map((r) => r.model))) {
      const [p, t] = [rates.find((r) => r.model === m && r.objective === 'pixel')!, rates.find((r) => r.model === m && r.objective !== 'pixel')!];
      out.push('', `${m}: token objective ${fmt(p.seconds / p.steps / (t.seconds / t.steps), 1)}x the pixel objective's step rate.`);
    }

    // The planted problem.
    const p = await plantedProblem(engine, tiny);
    const set: CanvasSet = { canvases: p.train, count: p.count, targets: p.targets };
    const encoderTokens = await computeTargetTokens(engine, set);
    let agree = 0;
    for (let i = 0; i < encoderTokens.length; i++) if (encoderTokens[i] === p.plantedTokens[i]) agree++;
    const inputs = (targetTokens?: Int32Array) => ({
      engine,
      space: p.space,
      tasks: [{ name: 'planted', loss: 'mse' as const, means: p.means }],
      train: [{ ...set, targetTokens }],
    });
    const runs: { label: string; targets: string; o: SearchOptions; tokens?: Int32Array }[] = [
      { label: 'pixel (MSE)', targets: 'planted pixels', o: PLANTED_BUDGET },
      { label: 'token (ce)', targets: 'VQGAN encoder tokens', o: { ...PLANTED_BUDGET, objective: 'token', tokenLoss: 'ce' }, tokens: encoderTokens },
      {
        label: 'token (accuracy)',
        targets: 'VQGAN encoder tokens',
        o: { ...PLANTED_BUDGET, objective: 'token', tokenLoss: 'accuracy' },
        tokens: encoderTokens,
      },
      { label: 'token (ce)', targets: 'planted tokens', o: { ...PLANTED_BUDGET, objective: 'token', tokenLoss: 'ce' }, tokens: p.plantedTokens },
      { label: 'token (accuracy)', targets: 'planted tokens', o: { ...PLANTED_BUDGET, objective: 'token', tokenLoss: 'accuracy' }, tokens: p.plantedTokens },
      {
        label: 'token (accuracy)',
        targets: 'planted tokens',
        o: { ...PLANTED_BUDGET, steps: 200, objective: 'token', tokenLoss: 'accuracy' },
        tokens: p.plantedTokens,
      },
    ];
    const none = await evaluateSubset(inputs(), [set], new Uint8Array(p.space.count), 64);
    let pixelChoice: Uint8Array | undefined;
    const bits = (c: Uint8Array) => [...c.subarray(p.space.encoderCount)].join('');
    out.push(
      '',
      `### Planted problem (tiny, random weights seed 3; 8 decoder heads searched, hidden ${bits(p.hidden)}; ${PLANTED_BUDGET.samplesPerStep} samples/step, seed ${PLANTED_BUDGET.seed})`,
      '',
    );
    out.push(
      `Pixel MSE of patching nothing: ${fmt(none.planted!, 4)}; of the hidden set: 0. Encoder tokens of the planted images agree with the planted forward's own tokens at ${fmt((100 * agree) / encoderTokens.length, 0)}% of the ${encoderTokens.length} output-quadrant positions (${p.count} canvases x 49).`,
      '',
    );
    out.push(
      '| objective | targets | steps | wall-clock s | decodes | subset (decoder heads) | precision / recall | Jaccard vs hidden | Jaccard vs pixel run | final pixel MSE |',
    );
    out.push('|---|---|---|---|---|---|---|---|---|---|');
    for (const r of runs) {
      let decodes = 0;
      const t0 = performance.now();
      const res = await runSearch(inputs(r.tokens), r.o, { onStep: (s) => (decodes += s.uniqueDecodes) });
      const seconds = (performance.now() - t0) / 1000;
      pixelChoice ??= res.choice;
      const pixel = await evaluateSubset(inputs(), [set], res.choice, 64);
      const rec = recovery(res.choice, p.hidden);
      out.push(
        `| ${r.label} | ${r.targets} | ${r.o.steps} | ${fmt(seconds, 1)} | ${decodes} | ${bits(res.choice)} | ${fmt(rec.precision)} / ${fmt(rec.recall)} | ${fmt(jaccard(res.choice, p.hidden))} | ${fmt(jaccard(res.choice, pixelChoice))} | ${fmt(pixel.planted!, 4)} |`,
      );
      console.error(out.at(-1));
    }
  } finally {
    engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(out.join('\n'));
}

await main();
