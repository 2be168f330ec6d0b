// `vtv info`: the engine's backends, the model presets, a weights file's summary and a run's files.
import { existsSync, readFileSync } from 'node:fs';
import { Command } from 'commander';
import { readSafetensorsHeader } from '../checkpoint/safetensors.js';
import { PRESETS, preset } from '../config.js';
import { loadAddon } from '../native.js';
import { parseJsonText } from '../run/json-file.js';
import { runPaths } from '../run/layout.js';
import { meansFileTasks } from '../run/means-file.js';
import { checkWeights, type Deps, defaultDeps, resolveRunDir } from './common.js';

export function infoText(o: { weights?: string[]; run?: string; name?: string }): string {
  const out: string[] = [];
  try {
    const a = loadAddon();
    out.push(`engine ${a.version} (gemm: ${a.gemmImplementation})`);
    for (const b of a.backends())
      out.push(`  backend ${b.name}: ${b.usable ? 'usable' : b.compiled ? 'compiled, not usable' : 'not compiled'}${b.detail ? ` - ${b.detail}` : ''}`);
  } catch (e) {
    out.push(`engine: not loadable\n${(e as Error).message}`);
  }
  out.push('model presets:');
  for (const [name, c] of Object.entries(PRESETS)) {
    out.push(
      `  ${name}: encoder ${c.encDepth}x${c.encDim} (${c.encHeads} heads), decoder ${c.decDepth}x${c.decDim} (${c.decHeads} heads), VQGAN ch ${c.vq.ch} x [${c.vq.chMult}], vocab ${c.vq.nEmbed}`,
    );
  }
  for (const w of o.weights ?? []) {
    const h = readSafetensorsHeader(w);
    let bytes = 0;
    const dtypes = new Map<string, number>();
    for (const t of h.tensors.values()) {
      bytes += t.end - t.begin;
      dtypes.set(t.dtype, (dtypes.get(t.dtype) ?? 0) + 1);
    }
    out.push(`weights ${w}: ${h.tensors.size} tensors, ${(bytes / 2 ** 20).toFixed(1)} MiB, ${[...dtypes].map(([d, n]) => `${n} ${d}`).join(', ')}`);
    const meta = h.metadata.vtv_config ? (parseJsonText(h.metadata.vtv_config, `${w}: metadata 'vtv_config'`) as { name: string }) : undefined;
    if (meta) {
      out.push(`  model: ${meta.name} (source: ${h.metadata.source ?? '?'})`);
      try {
        checkWeights(preset(meta.name), [w]);
        out.push('  complete for the engine');
      } catch (e) {
        out.push(`  ${(e as Error).message}`);
      }
    }
  }
  if (o.run || o.name) {
    const p = runPaths(resolveRunDir(o));
    out.push(`run ${p.root}:`);
    if (existsSync(p.config)) out.push(`  config: ${readFileSync(p.config, 'utf8').replace(/\s+/g, ' ').trim()}`);
    if (existsSync(p.means)) {
      const tasks = meansFileTasks(p.means);
      out.push(`  task vectors: ${tasks.join(', ')}`);
      const own = tasks.filter((t) => existsSync(p.pairsTask(t)));
      if (own.length) out.push(`  tasks from pairs: ${own.map((t) => `${t} (${p.pairsTask(t)})`).join(', ')}`);
    }
    for (const f of [p.taskness, p.evalJson, p.evalMd]) out.push(`  ${existsSync(f) ? 'has' : 'no '} ${f}`);
  }
  return out.join('\n');
}

export function infoProgram(deps: Deps = defaultDeps): Command {
  return new Command('info')
    .description('backends, model presets, weights summary, run contents')
    .option('--weights <files...>', 'safetensors files to summarise')
    .option('--run <dir>', 'a run directory to summarise')
    .action((o: { weights?: string[]; run?: string }) => deps.log(infoText(o)));
}
