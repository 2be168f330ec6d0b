// `vtv search` end to end, run by search-e2e.sh with the carried node: random ViT-L weights,
// `vtv collect` (task vectors for segmentation on the bundled data), then `vtv search` with the
// reference's budget (500 steps x 320 samples by default, no validation), both on the cuda backend.
// Prints the wall-clock of the search, its sample forwards/s, the per-step times from its log and where
// the step's time goes between the engine and the rest, then one "VTV_JSON {...}" line.
//   node search_e2e.mjs --app DIR --work DIR [--steps 500] [--samples 320] [--precision bf16]
//                       [--model mae-vqgan-vit-large] [--backend cuda] [--episodes 32]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const app = opt('app');
const work = opt('work', '/tmp/vtv-e2e');
const steps = Number(opt('steps', '500'));
const samples = Number(opt('samples', '320'));
const precision = opt('precision', 'bf16');
const model = opt('model', 'mae-vqgan-vit-large'); // tiny + --backend cpu --precision fp32: a local smoke run
const backend = opt('backend', 'cuda');
const episodes = opt('episodes', '32'); // collect's episodes (and batch): the task vectors the search patches
if (!app) {
  console.error('search_e2e.mjs: --app <unpacked bundle> is required');
  process.exit(64);
}
const main = join(app, 'dist/src/cli/main.js');
mkdirSync(work, { recursive: true });
const now = () => performance.now() / 1000;

function vtv(label, argv) {
  const t0 = now();
  const r = spawnSync(process.execPath, [main, ...argv], { stdio: ['ignore', 'inherit', 'inherit'] });
  const s = now() - t0;
  console.log(`[e2e] ${label}: exit ${r.status}, ${s.toFixed(1)} s`);
  if (r.status !== 0) {
    console.log(`VTV_JSON ${JSON.stringify({ failed: label, status: r.status })}`);
    process.exit(1);
  }
  return s;
}

const { preset } = await import(pathToFileURL(join(app, 'dist/src/config.js')).href);
const { writeRandomWeights } = await import(pathToFileURL(join(app, 'dist/src/model/random-weights.js')).href);
vtv('backends', ['info']);
const weights = join(work, `${model}-random.safetensors`);
if (!existsSync(weights)) {
  const t0 = now();
  writeRandomWeights(weights, preset(model), 1);
  console.log(`[e2e] random ${model} weights written in ${(now() - t0).toFixed(1)} s`);
}
const run = join(work, 'run');
const common = ['--run', run, '--backend', backend, '--precision', precision];
const collectS = vtv('collect', [
  'collect', ...common, '--weights', weights, '--dataset', 'bundled', '--tasks', 'segmentation', '--folds', '1',
  '--episodes-per-fold', episodes, '--keep', String(Math.min(16, Number(episodes))), '--batch', episodes, '--force',
]);
const searchS = vtv('search', [
  'search', ...common, '--task', 'segmentation', '--steps', String(steps), '--samples-per-step', String(samples),
  '--validate-every', '0', '--checkpoint-every', '100', '--snapshot-every', '100', '--force',
]);

const log = readFileSync(join(run, 'search/segmentation/log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const stepS = log.map((r) => r.seconds).filter((x) => Number.isFinite(x));
const sorted = [...stepS].sort((a, b) => a - b);
const median = sorted[Math.floor(sorted.length / 2)] ?? NaN;
const engineS = stepS.reduce((a, b) => a + b, 0);
const forwards = log.reduce((a, r) => a + r.uniqueForwards, 0);
const decodes = log.reduce((a, r) => a + r.uniqueDecodes, 0);
const result = {
  model, backend, steps: log.length, samples, precision, collect_s: collectS, search_s: searchS, steps_s_sum: engineS,
  median_step_s: median, sample_forwards_per_s: (log.length * samples) / searchS, unique_forwards: forwards,
  unique_decodes: decodes,
};
console.log(
  `[e2e] vtv search: ${log.length} steps x ${samples} samples, ${model} random weights, ${backend} ${precision}: ` +
    `${searchS.toFixed(1)} s wall-clock (target < 60 s), ${result.sample_forwards_per_s.toFixed(0)} sample forwards/s; ` +
    `median step ${(median * 1e3).toFixed(1)} ms; steps sum ${engineS.toFixed(1)} s of the wall-clock (the rest: start-up, ` +
    `weights, canvases, checkpoints); ${forwards} MAE forwards and ${decodes} decodes over ${log.length * samples} samples`,
);
console.log(`VTV_JSON ${JSON.stringify(result)}`);
