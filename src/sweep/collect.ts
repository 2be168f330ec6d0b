// `vtv sweep collect`: every cell's `vtv eval` results in one table (results.json, results.md) with a
// summary over folds and seeds, and one HTML report over the sweep (report/index.html: the tables, the
// search curves of every cell on one chart, and a link to each cell's own `vtv report` page).
// results.json and results.md hold no times or absolute paths, so two runs of the same sweep (on any
// executor) give the same bytes.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { CONDITIONS, type Condition, type EvalResults, type EvalRow } from '../method/evaluate.js';
import type { StepRecord } from '../method/reinforce.js';
import { drawLineChart, LINE_COLORS } from '../report/figures.js';
import { CSS, writeReport } from '../report/report.js';
import { runPaths } from '../run/layout.js';
import type { SweepPaths } from './layout.js';
import type { Sweep } from './spec.js';
import { cellDone, loadSweep, searchKey } from './sweep.js';

/** One cell's evaluation of one task on one val fold: an eval row with the cell it came from. */
export interface SweepRow extends EvalRow {
  cell: string;
  /** The tasks the cell searched (several: a multi-task search). */
  searched: string[];
  /** The trn fold searched (`fold` is the val fold evaluated). */
  searchFold: number;
  seed: number;
  /** The values of the options that vary across the sweep. */
  options: Record<string, unknown>;
}

export interface SweepSummaryRow {
  task: string;
  searched: string[];
  options: Record<string, unknown>;
  metric: 'iou' | 'mse';
  /** Rows averaged (folds x seeds). */
  n: number;
  subsetSize: number;
  oneShot: number;
  zeroShot: number;
  taskVector: number;
  random: number;
}

export interface SweepResults {
  format: 'vtv-sweep-results';
  version: 1;
  sweep: string;
  model?: string;
  dataset: string;
  varied: string[];
  cells: { id: string; state: 'done' | 'missing' }[];
  rows: SweepRow[];
  summary: SweepSummaryRow[];
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

export function gatherResults(sweep: Sweep, paths: SweepPaths): SweepResults {
  const rows: SweepRow[] = [];
  const cells: SweepResults['cells'] = [];
  let model: string | undefined;
  for (const cell of sweep.cells) {
    const p = runPaths(paths.cell(cell.id)).evalJson;
    if (!cellDone(paths, cell)) {
      cells.push({ id: cell.id, state: 'missing' });
      continue;
    }
    const ev = JSON.parse(readFileSync(p, 'utf8')) as EvalResults;
    model = ev.model;
    cells.push({ id: cell.id, state: 'done' });
    const options = Object.fromEntries(sweep.varied.map((k) => [k, (cell.search as unknown as Record<string, unknown>)[k]]));
    for (const r of ev.rows) {
      rows.push({
        cell: cell.id,
        searched: cell.tasks,
        task: r.task,
        searchFold: cell.fold,
        fold: r.fold,
        seed: cell.search.seed,
        options,
        metric: r.metric,
        episodes: r.episodes,
        subsetSize: r.subsetSize,
        oneShot: r.oneShot,
        zeroShot: r.zeroShot,
        taskVector: r.taskVector,
        random: r.random,
        ...(r.psnr ? { psnr: r.psnr, ssim: r.ssim } : {}),
      });
    }
  }
  // Summary: per (task, searched tasks, varied options), the mean over folds and seeds.
  const groups = new Map<string, SweepRow[]>();
  for (const r of rows) {
    const k = JSON.stringify([r.task, r.searched, r.options]);
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const summary: SweepSummaryRow[] = [...groups.values()].map((rs) => ({
    task: rs[0]!.task,
    searched: rs[0]!.searched,
    options: rs[0]!.options,
    metric: rs[0]!.metric,
    n: rs.length,
    subsetSize: Math.round(mean(rs.map((r) => r.subsetSize))),
    oneShot: mean(rs.map((r) => r.oneShot)),
    zeroShot: mean(rs.map((r) => r.zeroShot)),
    taskVector: mean(rs.map((r) => r.taskVector)),
    random: mean(rs.map((r) => r.random)),
  }));
  return {
    format: 'vtv-sweep-results',
    version: 1,
    sweep: sweep.name,
    ...(model ? { model } : {}),
    dataset: sweep.run.dataset,
    varied: sweep.varied,
    cells,
    rows,
    summary,
  };
}

const fmt = (metric: 'iou' | 'mse', v: number) => (!Number.isFinite(v) ? 'n/a' : metric === 'iou' ? (100 * v).toFixed(2) : v.toFixed(4));
const optText = (o: Record<string, unknown>) =>
  Object.entries(o)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
const searchedText = (r: { task: string; searched: string[] }) => (r.searched.length > 1 ? `${r.task} (of ${r.searched.join('+')})` : r.task);

export function resultsMarkdown(r: SweepResults): string {
  const missing = r.cells.filter((c) => c.state === 'missing');
  const opts = r.varied.length ? ' | options' : '';
  const optsSep = r.varied.length ? '|---' : '';
  const lines = [
    `# vtv sweep ${r.sweep}: ${r.model ?? '?'} on ${r.dataset}`,
    '',
    `${r.cells.length - missing.length} of ${r.cells.length} cells evaluated. mIoU in % for segmentation (higher is better), MSE for the other tasks (lower is better).`,
    ...(missing.length ? ['', `Not evaluated yet: ${missing.map((c) => c.id).join(', ')}.`] : []),
    '',
    '## Mean over folds and seeds',
    '',
    `| task${opts} | n | metric | one-shot | zero-shot | task vector | random subset | subset size |`,
    `|---${optsSep}|---|---|---|---|---|---|---|`,
    ...r.summary.map(
      (s) =>
        `| ${searchedText(s)}${r.varied.length ? ` | ${optText(s.options)}` : ''} | ${s.n} | ${s.metric === 'iou' ? 'mIoU' : 'MSE'} | ${fmt(s.metric, s.oneShot)} | ${fmt(s.metric, s.zeroShot)} | ${fmt(s.metric, s.taskVector)} | ${fmt(s.metric, s.random)} | ${s.subsetSize} |`,
    ),
    '',
    '## Every cell',
    '',
    '| cell | task | searched fold | eval fold | seed | metric | one-shot | zero-shot | task vector | random subset | subset size |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...r.rows.map(
      (x) =>
        `| ${x.cell} | ${x.task} | ${x.searchFold} | ${x.fold} | ${x.seed} | ${x.metric === 'iou' ? 'mIoU' : 'MSE'} | ${fmt(x.metric, x.oneShot)} | ${fmt(x.metric, x.zeroShot)} | ${fmt(x.metric, x.taskVector)} | ${fmt(x.metric, x.random)} | ${x.subsetSize} |`,
    ),
  ];
  const image = r.rows.filter((x) => x.psnr && x.ssim);
  if (image.length) {
    lines.push('', 'Image tasks, PSNR (dB) / SSIM of the output cell (higher is better):', '');
    lines.push('| cell | task | eval fold | one-shot | zero-shot | task vector | random subset |', '|---|---|---|---|---|---|---|');
    for (const x of image) {
      const c = (k: Condition) => `${x.psnr![k].toFixed(2)} / ${x.ssim![k].toFixed(4)}`;
      lines.push(`| ${x.cell} | ${x.task} | ${x.fold} | ${CONDITIONS.map(c).join(' | ')} |`);
    }
  }
  return `${lines.join('\n')}\n`;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function mdTableToHtml(md: string): string {
  // The Markdown above is simple enough to render line by line: headings, paragraphs, pipe tables.
  const out: string[] = [];
  let table: string[][] = [];
  const flush = () => {
    if (!table.length) return;
    const [head, ...body] = table;
    out.push(
      `<table><tr>${head!.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${body
        .map((r) => `<tr>${r.map((v, i) => `<td${i < 2 ? ' class="l"' : ''}>${esc(v)}</td>`).join('')}</tr>`)
        .join('')}</table>`,
    );
    table = [];
  };
  for (const line of md.split('\n')) {
    if (line.startsWith('|')) {
      const cells = line
        .slice(1, -1)
        .split('|')
        .map((c) => c.trim());
      if (!cells.every((c) => /^-+$/.test(c))) table.push(cells);
      continue;
    }
    flush();
    if (line.startsWith('## ')) out.push(`<h2>${esc(line.slice(3))}</h2>`);
    else if (line.startsWith('# ')) out.push(`<h1>${esc(line.slice(2))}</h1>`);
    else if (line.trim()) out.push(`<p>${esc(line)}</p>`);
  }
  flush();
  return out.join('\n');
}

function readLog(path: string): StepRecord[] {
  if (!existsSync(path)) return [];
  const out: StepRecord[] = [];
  for (const l of readFileSync(path, 'utf8').split('\n')) {
    if (!l.trim()) continue;
    try {
      out.push(JSON.parse(l) as StepRecord);
    } catch {}
  }
  return out;
}

/** Writes report/index.html over the sweep, and each finished cell's own report under cells/<id>/report/. */
export function writeSweepReport(sweep: Sweep, paths: SweepPaths, res: SweepResults, md: string): string {
  mkdirSync(paths.report, { recursive: true });
  const parts: string[] = [mdTableToHtml(md)];
  const series = sweep.cells
    .map((cell, i) => ({
      name: cell.id,
      points: readLog(runPaths(paths.cell(cell.id)).searchLog(searchKey(cell))).map((r) => [r.step, r.loss] as [number, number]),
      color: LINE_COLORS[i % LINE_COLORS.length]!,
    }))
    .filter((s) => s.points.length > 0);
  if (series.length) {
    const png = drawLineChart({ title: 'Training loss per step, every cell', xLabel: 'step', yLabel: 'loss', series });
    writeFileSync(join(paths.report, 'loss.png'), png);
    parts.push(
      '<h2>Searches</h2><figure><img src="loss.png" alt="training loss of every cell"><figcaption>Training loss per step of every cell\'s search</figcaption></figure>',
    );
  }
  const links: string[] = [];
  for (const cell of sweep.cells) {
    const dir = paths.cell(cell.id);
    if (!existsSync(runPaths(dir).config)) {
      links.push(`<li><code>${esc(cell.id)}</code>: not started</li>`);
      continue;
    }
    const r = writeReport(dir);
    const state = res.cells.find((c) => c.id === cell.id)?.state === 'done' ? 'evaluated' : 'not evaluated yet';
    links.push(`<li><a href="${esc(relative(paths.report, r.html))}">${esc(cell.id)}</a> (${state})</li>`);
  }
  parts.push(`<h2>Cells</h2><p>Each cell's own report (selected heads, probabilities, curves, examples):</p><ul>${links.join('')}</ul>`);
  const html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>vtv sweep ${esc(sweep.name)}</title><style>${CSS}</style></head>
<body>
${parts.join('\n')}
<p class="info">Sweep directory <code>${esc(paths.root)}</code>. Generated ${esc(new Date().toISOString())}.</p>
</body></html>
`;
  const page = join(paths.report, 'index.html');
  writeFileSync(page, html);
  return page;
}

export function collectSweep(dir: string): { results: SweepResults; json: string; md: string; html: string } {
  const { sweep, paths } = loadSweep(dir);
  const results = gatherResults(sweep, paths);
  const md = resultsMarkdown(results);
  writeFileSync(paths.resultsJson, `${JSON.stringify(results, null, 1)}\n`);
  writeFileSync(paths.resultsMd, md);
  const html = writeSweepReport(sweep, paths, results, md);
  return { results, json: paths.resultsJson, md: paths.resultsMd, html };
}
