// `vtv report`: one self-contained HTML page about a run (no scripts, fonts or styles from elsewhere),
// with its PNG figures beside it and the eval's example images copied next to it, so the report folder
// can be moved or shared on its own. It shows what exists and says what every missing file means, so
// it also works on a run interrupted half-way.
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, isAbsolute, join } from 'node:path';
import { imageToPlanar } from '../data/canvas.js';
import { readImageFile } from '../data/image.js';
import { getTask, type MetricName } from '../data/tasks/index.js';
import { CONDITION_LABEL, CONDITIONS, type EvalRow } from '../method/evaluate.js';
import { probabilities } from '../method/policy.js';
import { type Granularity, VariableSpace, variableCount } from '../method/variables.js';
import { taskMetric } from '../metrics/index.js';
import { MULTITASK } from '../run/layout.js';
import { continuousScale, selectionScale } from './colormap.js';
import { drawHeatmapFigure, drawLineChart, formatNumber, LINE_COLORS, type Series } from './figures.js';
import { headMapFigure, tasknessFigure } from './head-maps.js';
import { type ExampleImages, type Note, type RunFiles, readRunFiles, type SearchFiles } from './run-files.js';

export interface ReportOptions {
  /** Where index.html and the figures go (default RUN_DIR/report); replaced on every run. */
  outDir?: string;
}

export interface ReportResult {
  html: string;
  outDir: string;
  figures: string[];
  notes: Note[];
}

/** Lists what a report wrote, so the next one removes exactly that. */
const MANIFEST = '.vtv-report-files';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const safeName = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, '_');

/** Cells of the example grid, in order: what the file is called and the column heading. */
const EXAMPLE_COLUMNS: { what: string; label: string; output: boolean }[] = [
  { what: 'example-input', label: 'prompt: example input', output: false },
  { what: 'example-output', label: 'prompt: example output', output: false },
  { what: 'query', label: 'query', output: false },
  { what: 'one-shot', label: 'one-shot output', output: true },
  { what: 'zero-shot', label: 'zero-shot output', output: true },
  { what: 'task-vector', label: 'task-vector output', output: true },
  { what: 'random', label: 'random-subset output', output: true },
  { what: 'target', label: 'target', output: false },
];

function metricOf(task: string, run: RunFiles): MetricName | undefined {
  const row = run.eval?.rows.find((r) => r.task === task);
  if (row) return row.metric;
  try {
    return getTask(task).metric;
  } catch {
    return undefined;
  }
}

const fmtMetric = (m: MetricName, v: number) => (!Number.isFinite(v) ? 'n/a' : m === 'iou' ? `${(100 * v).toFixed(2)}` : v.toFixed(4));

class Page {
  readonly parts: string[] = [];
  readonly figures: string[] = [];
  constructor(readonly outDir: string) {}
  add(html: string): void {
    this.parts.push(html);
  }
  /** Writes a PNG figure beside the page and returns its <img> tag. */
  figure(name: string, png: Uint8Array, alt: string): string {
    const file = `${safeName(name)}.png`;
    writeFileSync(join(this.outDir, file), png);
    this.figures.push(join(this.outDir, file));
    return `<figure><img src="${esc(file)}" alt="${esc(alt)}"><figcaption>${esc(alt)}</figcaption></figure>`;
  }
}

export const CSS = `
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1280px;padding:0 16px;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}td.best{font-weight:bold;background:#e9f5e9}
.notes li{margin:2px 0}.missing{color:#8a5a00}.problem{color:#b00020}.info{color:#555}
code{background:#f4f4f4;padding:0 3px;border-radius:3px}
figure{display:inline-table;margin:8px 12px 8px 0;vertical-align:top}figcaption{display:table-caption;caption-side:bottom;font-size:.85em;color:#555}
figure img{max-width:100%;border:1px solid #ddd}
table.examples th{text-align:center}table.examples td{text-align:center;vertical-align:top;font-size:.85em}table.examples img{width:111px;height:111px;image-rendering:pixelated;display:block;margin:auto}
.status td:first-child{text-align:left}.ok{color:#176b17}.warn{color:#8a5a00}
.empty{color:#8a5a00;font-style:italic}
`;

function notesHtml(notes: Note[]): string {
  if (notes.length === 0) return '<p class="ok">Every file of a finished run is present.</p>';
  return `<ul class="notes">${notes
    .map(
      (n) =>
        `<li class="${n.level}"><b>${n.level === 'missing' ? 'missing' : n.level === 'problem' ? 'problem' : 'note'}:</b> <code>${esc(n.file)}</code> ${esc(n.message).replace(/`([^`]+)`/g, '<code>$1</code>')}</li>`,
    )
    .join('')}</ul>`;
}

function statusHtml(run: RunFiles): string {
  const rows: [string, string, boolean][] = [];
  rows.push([
    'collect (task vectors, taskness)',
    run.meansTasks ? `done: ${run.meansTasks.length} task(s): ${run.meansTasks.join(', ')}` : 'not done',
    !!run.meansTasks,
  ]);
  for (const s of run.searches) {
    const last = s.log.length ? s.log[s.log.length - 1]!.step + 1 : 0;
    const state = s.subset
      ? `finished: ${s.subset.chosen.length} of ${s.subset.variables} variables chosen (step ${s.subset.selectedStep}, rule ${s.subset.rule})`
      : s.state
        ? `interrupted: checkpoint after ${s.state.step} step(s), ${last} logged`
        : `interrupted: ${last} step(s) logged, no checkpoint`;
    rows.push([`search ${s.key}`, state, !!s.subset]);
  }
  if (run.searches.length === 0) rows.push(['search', 'not started', false]);
  rows.push(['eval', run.eval ? `done: ${run.eval.rows.length} (task, fold) row(s), ${run.eval.episodesPerFold} episodes per fold` : 'not done', !!run.eval]);
  return `<table class="status"><tr><th class="l">stage</th><th class="l">state</th></tr>${rows
    .map(([a, b, ok]) => `<tr><td class="l">${esc(a)}</td><td class="l ${ok ? 'ok' : 'warn'}">${esc(b)}</td></tr>`)
    .join('')}</table>`;
}

function evalTableHtml(run: RunFiles): string {
  const r = run.eval;
  if (!r) return '<p class="empty">No eval results: run <code>vtv eval</code> (eval/results.json is missing).</p>';
  const rowHtml = (row: EvalRow) => {
    const vals = CONDITIONS.map((c) => row[c]);
    const finite = vals.filter(Number.isFinite);
    const best = finite.length ? (row.metric === 'iou' ? Math.max(...finite) : Math.min(...finite)) : Number.NaN;
    return `<tr><td class="l">${esc(row.task)}</td><td>${row.fold < 0 ? 'mean' : row.fold}</td><td>${row.metric === 'iou' ? 'mIoU %' : 'MSE'}</td>${vals
      .map((v) => `<td class="${v === best ? 'best' : ''}">${fmtMetric(row.metric, v)}</td>`)
      .join('')}<td>${row.episodes}</td><td>${row.subsetSize}</td></tr>`;
  };
  return `<p>${esc(r.model)} on ${esc(r.dataset)}, ${r.episodesPerFold} episodes per fold, seed ${r.seed}. mIoU in % for segmentation (higher is better), MSE for the other tasks (lower is better); the best condition of each row is in bold.</p>
<table><tr><th class="l">task</th><th>fold</th><th>metric</th>${CONDITIONS.map((c) => `<th>${esc(CONDITION_LABEL[c])}</th>`).join('')}<th>episodes</th><th>subset size</th></tr>
${[...r.rows, ...r.summary].map(rowHtml).join('\n')}</table>`;
}

/** Recomputes an output's metric against the target from the saved 8-bit PNGs. */
function exampleMetric(metric: MetricName, ex: ExampleImages, what: string): number | undefined {
  const out = ex.files[what];
  const target = ex.files.target;
  if (!out || !target) return undefined;
  try {
    return taskMetric(metric)(imageToPlanar(readImageFile(target)), imageToPlanar(readImageFile(out)));
  } catch {
    return undefined;
  }
}

function examplesHtml(run: RunFiles, page: Page): string {
  if (run.examples.size === 0) {
    return `<p class="empty">No example images${run.eval ? ' (eval ran with --examples 0?)' : ': `vtv eval` has not run'}.</p>`.replace(
      /`([^`]+)`/g,
      '<code>$1</code>',
    );
  }
  const out: string[] = [];
  for (const [task, exs] of run.examples) {
    const metric = metricOf(task, run);
    const dest = join(page.outDir, 'examples', safeName(task));
    mkdirSync(dest, { recursive: true });
    out.push(`<h3>${esc(task)}</h3>`);
    const rows = run.eval?.rows.filter((r) => r.task === task) ?? [];
    if (rows.length && metric) {
      out.push(
        `<p>Fold means (${metric === 'iou' ? 'mIoU %' : 'MSE'}): ${rows
          .map(
            (r) =>
              `fold ${r.fold}: one-shot ${fmtMetric(metric, r.oneShot)}, zero-shot ${fmtMetric(metric, r.zeroShot)}, task vector ${fmtMetric(metric, r.taskVector)}, random ${fmtMetric(metric, r.random)}`,
          )
          .join('; ')}.</p>`,
      );
    }
    if (metric)
      out.push(
        `<p>Under each output: its ${metric === 'iou' ? 'IoU (%, higher is better)' : 'MSE (lower is better)'} against the target, recomputed from the saved 8-bit PNGs.</p>`,
      );
    out.push(`<table class="examples"><tr><th>fold / episode</th>${EXAMPLE_COLUMNS.map((c) => `<th>${esc(c.label)}</th>`).join('')}</tr>`);
    for (const ex of exs) {
      const cells = EXAMPLE_COLUMNS.map((c) => {
        const src = ex.files[c.what];
        if (!src) return '<td class="empty">not saved</td>';
        const name = basename(src);
        copyFileSync(src, join(dest, name));
        const m = c.output && metric ? exampleMetric(metric, ex, c.what) : undefined;
        const caption = m === undefined ? '' : `<div>${fmtMetric(metric!, m)}</div>`;
        return `<td><img src="examples/${esc(safeName(task))}/${esc(name)}" alt="${esc(`${task} fold ${ex.fold} episode ${ex.episode}: ${c.label}`)}">${caption}</td>`;
      });
      out.push(`<tr><td>${ex.fold} / ${esc(ex.episode)}</td>${cells.join('')}</tr>`);
    }
    out.push('</table>');
  }
  return out.join('\n');
}

/** Which metric a search's validation reports: the first task's (its fingerprint says "task:loss"). */
function searchMetric(s: SearchFiles): MetricName | undefined {
  const first = (s.state?.fingerprint?.tasks as string[] | undefined)?.[0];
  if (first?.endsWith(':iou')) return 'iou';
  if (first?.endsWith(':mse')) return 'mse';
  const task = s.subset?.tasks[0] ?? (s.key === MULTITASK ? undefined : s.key);
  try {
    return task ? getTask(task).metric : undefined;
  } catch {
    return undefined;
  }
}

function searchSpace(s: SearchFiles): { space?: VariableSpace; why?: string; inferred?: boolean } {
  let g = (s.subset?.granularity ?? s.state?.fingerprint?.granularity) as Granularity | undefined;
  let mode = (s.subset?.mode ?? s.state?.fingerprint?.mode) as 'zero-shot' | 'one-shot' | undefined;
  if (!s.model) return { why: 'the model is unknown (no config.json, and the search files do not name a known model)' };
  let inferred = false;
  if (g === undefined || !mode) {
    // Only a log so far: it does not record the variable space, but the length of a probability snapshot
    // identifies the granularity (the three counts differ for every model), and vtv search uses zero-shot.
    const n = s.log.find((r) => r.probabilities)?.probabilities?.length;
    const found = ([0, 1, 2] as Granularity[]).find((k) => variableCount(s.model!, k) === n);
    if (found === undefined)
      return {
        why: 'neither subset.json nor state.json exists to say the granularity of the variables, and the log has no probability snapshot that fits the model',
      };
    g = found;
    mode = 'zero-shot';
    inferred = true;
  }
  try {
    return { space: new VariableSpace(s.model, g, mode), inferred };
  } catch (e) {
    return { why: (e as Error).message };
  }
}

function searchHtml(s: SearchFiles, page: Page): string {
  const out: string[] = [`<h3>search: ${esc(s.key)}</h3>`];
  const name = `search-${s.key}`;
  const { space, why, inferred } = searchSpace(s);
  if (!space) out.push(`<p class="empty">No layer x head maps: ${esc(why ?? '')}.</p>`);
  else {
    if (inferred)
      out.push(
        `<p class="missing">Only the log exists: granularity ${space.granularity} and zero-shot mode are inferred from the number of probabilities in its snapshots.</p>`,
      );
    const wrongSize = (n: number, what: string) => {
      out.push(
        `<p class="problem">${esc(what)} has ${n} values but the variable space has ${space.count}: it was written by another model or granularity; map not drawn.</p>`,
      );
    };
    if (s.subset) {
      const choice = new Float64Array(space.count);
      for (const v of s.subset.chosen) if (v >= 0 && v < space.count) choice[v] = 1;
      if (s.subset.variables !== space.count) wrongSize(s.subset.variables, 'subset.json');
      else {
        const title = `Selected heads, search '${s.key}': ${s.subset.chosen.length} of ${space.count} variables (granularity ${space.granularity}, step ${s.subset.selectedStep}, rule ${s.subset.rule})`;
        out.push(
          page.figure(
            `${name}-selected`,
            drawHeatmapFigure(headMapFigure(title, space, choice, selectionScale(space.granularity === 2 ? 'fraction chosen' : 'variable'))),
            title,
          ),
        );
      }
    } else {
      out.push('<p class="empty">No heads selected yet: subset.json is missing because this search has not finished (see the notes above).</p>');
    }
    // Probabilities: of the selected logits when finished, else of the last checkpoint, else of the last snapshot in the log.
    let probs: ArrayLike<number> | undefined;
    let source = '';
    if (s.subset) {
      probs = s.subset.probabilities;
      source = `selected logits (step ${s.subset.selectedStep})`;
    } else if (s.state) {
      probs = probabilities(Float64Array.from(s.state.logits));
      source = `last checkpoint (after ${s.state.step} step(s)), search not finished`;
    } else {
      const snap = [...s.log].reverse().find((r) => r.probabilities);
      if (snap) {
        probs = snap.probabilities;
        source = `log snapshot at step ${snap.step}, search not finished`;
      }
    }
    if (probs && probs.length !== space.count) wrongSize(probs.length, 'the probability vector');
    else if (probs) {
      const title = `Learned probabilities, search '${s.key}': ${source}`;
      out.push(page.figure(`${name}-probabilities`, drawHeatmapFigure(headMapFigure(title, space, probs, continuousScale(0, 1, 'probability'))), title));
    } else out.push('<p class="empty">No probabilities: no subset, checkpoint or log snapshot yet.</p>');
  }

  if (s.log.length === 0) {
    out.push('<p class="empty">No curves: the search log is empty or missing.</p>');
    return out.join('\n');
  }
  const metric = searchMetric(s);
  const better = metric === 'iou' ? 'IoU, higher is better' : metric === 'mse' ? 'MSE, lower is better' : 'metric';
  const steps = s.log.map((r) => r.step);
  const charts: string[] = [];
  charts.push(
    page.figure(
      `${name}-loss`,
      drawLineChart({
        title: `Training loss, search '${s.key}' (${metric === 'iou' ? '-IoU' : metric === 'mse' ? 'MSE' : 'loss'})`,
        xLabel: 'step',
        yLabel: 'loss',
        series: [{ name: 'loss', points: s.log.map((r) => [r.step, r.loss]), color: LINE_COLORS[0]! }],
      }),
      `Training loss per step (mean over the step's samples), steps ${steps[0]}..${steps[steps.length - 1]}`,
    ),
  );
  const taskNames = [...new Set(s.log.flatMap((r) => Object.keys(r.perTask ?? {})))];
  // With one task the training metric is the loss up to sign: only multi-task searches get this chart.
  if (taskNames.length > 1) {
    charts.push(
      page.figure(
        `${name}-train-metric`,
        drawLineChart({
          title: `Training metric per task (${better})`,
          xLabel: 'step',
          yLabel: metric ?? 'metric',
          series: taskNames.map((t, i) => ({
            name: t,
            points: s.log.map((r) => [r.step, r.perTask?.[t] ?? Number.NaN] as [number, number]),
            color: LINE_COLORS[i % LINE_COLORS.length]!,
          })),
        }),
        'Mean training metric of the sampled subsets per task',
      ),
    );
  }
  const val = s.log.filter((r) => r.validation);
  if (val.length) {
    const vTasks = [...new Set(val.flatMap((r) => Object.keys(r.validation!.perTask ?? {})))];
    const series: Series[] = [
      {
        name: 'selection metric',
        points: val.map((r) => [r.step, r.validation!.metric]),
        color: LINE_COLORS[0]!,
        markers: true,
        highlight: val
          .filter((r) => r.validation!.best)
          .slice(-1)
          .map((r) => [r.step, r.validation!.metric] as [number, number]),
      },
    ];
    if (vTasks.length > 1) {
      vTasks.forEach((t, i) => {
        series.push({
          name: t,
          points: val.map((r) => [r.step, r.validation!.perTask[t] ?? Number.NaN]),
          color: LINE_COLORS[(i + 1) % LINE_COLORS.length]!,
          markers: true,
        });
      });
    }
    charts.push(
      page.figure(
        `${name}-validation`,
        drawLineChart({ title: `Validation (${better}); ringed: best so far`, xLabel: 'step', yLabel: metric ?? 'metric', series }),
        `Validation metric of one subset drawn at each validation step; the ringed point is the last improvement (the selected step with --select best)`,
      ),
    );
  } else out.push('<p class="empty">No validation points in the log (validation not reached yet, or --validate-every 0).</p>');
  charts.push(
    page.figure(
      `${name}-size`,
      drawLineChart({
        title: 'Subset size',
        xLabel: 'step',
        yLabel: 'variables',
        series: [
          { name: 'expected (sum of p)', points: s.log.map((r) => [r.step, r.expectedSize]), color: LINE_COLORS[0]! },
          { name: 'mean sampled', points: s.log.map((r) => [r.step, r.meanSampledSize]), color: LINE_COLORS[1]! },
          ...(val.length
            ? [
                {
                  name: 'validated subset',
                  points: val.map((r) => [r.step, r.validation!.subsetSize] as [number, number]),
                  color: LINE_COLORS[2]!,
                  markers: true,
                },
              ]
            : []),
        ],
      }),
      'Expected subset size (sum of probabilities after the step), mean size of the sampled subsets, and size of each validated subset',
    ),
  );
  out.push(`<div>${charts.join('')}</div>`);
  const nonFinite = s.log.reduce((a, r) => a + (r.nonFinite ?? 0), 0);
  if (nonFinite) out.push(`<p>${nonFinite} sample(s) had a non-finite loss (both masks empty) and were given zero advantage.</p>`);
  return out.join('\n');
}

function tasknessHtml(run: RunFiles, page: Page): string {
  const t = run.taskness;
  if (!t) return '<p class="empty">No taskness scores: taskness.json is missing (written by <code>vtv collect</code>).</p>';
  const finite = t.perHead.map((h) => h.rho).filter((r): r is number => typeof r === 'number' && Number.isFinite(r));
  if (finite.length === 0) return '<p class="problem">taskness.json has no finite scores.</p>';
  const infinite = t.perHead.length - finite.length;
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  const title = `Taskness rho per (layer, head): ${t.tasks} tasks, ${t.prompts} prompts`;
  const fig = page.figure('taskness', drawHeatmapFigure(tasknessFigure(title, t, continuousScale(lo, hi, 'rho'))), title);
  const top = [...t.perHead]
    .filter((h) => typeof h.rho === 'number' && Number.isFinite(h.rho))
    .sort((a, b) => b.rho - a.rho)
    .slice(0, 10);
  const encDepth = t.perPositionEnc.length;
  const where = (layer: number) => (layer < encDepth ? `encoder layer ${layer}` : `decoder layer ${layer - encDepth}`);
  return `<p>rho = variance across tasks / within tasks (higher: the head's output says more about the task). ${t.formula ? `Formula: <code>${esc(t.formula)}</code>.` : ''}${infinite ? ` ${infinite} head(s) with zero within-task variance are grey.` : ''}</p>
${fig}
<p>Highest: ${top.map((h) => `${where(h.layer)} head ${h.head} (${formatNumber(h.rho)})`).join('; ')}.</p>`;
}

/** Builds the report of a run directory. Throws only when the directory itself does not exist. */
export function writeReport(runDir: string, opt: ReportOptions = {}): ReportResult {
  const run = readRunFiles(runDir);
  const outDir = opt.outDir ?? join(runDir, 'report');
  // The files an earlier report wrote (listed in its manifest) are removed, so a stale figure never
  // lingers; nothing else in the folder is touched (--out may name a folder with other files).
  const manifest = join(outDir, MANIFEST);
  if (existsSync(manifest)) {
    for (const f of readFileSync(manifest, 'utf8').split('\n')) {
      if (f && !f.includes('..') && !isAbsolute(f)) rmSync(join(outDir, f), { recursive: true, force: true });
    }
  }
  mkdirSync(outDir, { recursive: true });
  const page = new Page(outDir);
  const title = `vtv report: ${basename(runDir)}`;
  const cfg = run.config;
  page.add(`<h1>${esc(title)}</h1>
<p>Run directory <code>${esc(runDir)}</code>${cfg ? `; model <b>${esc(cfg.model)}</b>, dataset <b>${esc(cfg.dataset)}</b>, created ${esc(cfg.created)}` : ''}. Generated ${esc(new Date().toISOString())}.</p>`);
  page.add(`<h2>Progress</h2>${statusHtml(run)}`);
  page.add(`<h2>Files and what is missing</h2>${notesHtml(run.notes)}`);
  page.add(`<h2>Evaluation</h2>${evalTableHtml(run)}`);
  page.add(`<h2>Examples</h2>${examplesHtml(run, page)}`);
  page.add('<h2>Searches: selected heads, probabilities, curves</h2>');
  page.add('<p>Maps: layer along x, head along y; encoder and decoder are separate panels, one row per slot (the token group a variable patches).</p>');
  if (run.searches.length === 0) page.add('<p class="empty">No search has been started (search/ is empty or missing).</p>');
  for (const s of run.searches) page.add(searchHtml(s, page));
  page.add(`<h2>Taskness</h2>${tasknessHtml(run, page)}`);
  if (run.prompts) {
    const rows = Object.entries(run.prompts.tasks).map(([t, ps]) => {
      const m = metricOf(t, run);
      const ms = ps.map((p) => p.metric).filter(Number.isFinite);
      const mean = ms.length ? ms.reduce((a, b) => a + b, 0) / ms.length : Number.NaN;
      return `<tr><td class="l">${esc(t)}</td><td>${ps.length}</td><td>${m ? fmtMetric(m, mean) : formatNumber(mean)}</td><td>${m === 'iou' ? 'mIoU %' : 'MSE'}</td></tr>`;
    });
    page.add(
      `<h2>Kept prompts</h2><p>${run.prompts.scored ?? '?'} episodes scored, each with every task's prompt.</p><table><tr><th class="l">task</th><th>kept</th><th>mean one-shot score</th><th>metric</th></tr>${rows.join('')}</table>`,
    );
  }
  const html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title><style>${CSS}</style></head>
<body>
${page.parts.join('\n')}
</body></html>
`;
  const htmlPath = join(outDir, 'index.html');
  writeFileSync(htmlPath, html);
  const written = ['index.html', ...page.figures.map((f) => basename(f)), ...(existsSync(join(outDir, 'examples')) ? ['examples'] : [])];
  writeFileSync(manifest, `${written.join('\n')}\n`);
  return { html: htmlPath, outDir, figures: page.figures, notes: run.notes };
}
