// `vtv report` on synthetic run directories: a finished run and one interrupted half-way. Checks the
// page's content against the files, that every referenced image exists and decodes, the layer x head
// maps' placement of chosen variables, and the CLI command.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { decode } from 'fast-png';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerReport } from '../src/cli/report.js';
import { preset } from '../src/config.js';
import type { EvalResults } from '../src/method/evaluate.js';
import { VariableSpace } from '../src/method/variables.js';
import { continuousScale, selectionScale } from '../src/report/colormap.js';
import { drawHeatmapFigure, drawLineChart, niceTicks } from '../src/report/figures.js';
import { headMapGrid } from '../src/report/head-maps.js';
import { writeReport } from '../src/report/report.js';
import { readRunFiles } from '../src/report/run-files.js';
import { runPaths } from '../src/run/layout.js';
import type { SubsetFile } from '../src/run/subset-file.js';
import { makeCompleteRun, makeInterruptedRun, referencedImages } from './report-fixture.js';

let base: string;
let complete: string;
let interrupted: string;

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'vtv-report-'));
  complete = join(base, 'complete');
  interrupted = join(base, 'interrupted');
  makeCompleteRun(complete);
  makeInterruptedRun(interrupted);
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

function checkImages(html: string, outDir: string): void {
  const imgs = referencedImages(html);
  expect(imgs.length).toBeGreaterThan(0);
  for (const src of imgs) {
    expect(src.startsWith('/') || /^[a-z]+:/i.test(src), `${src} must be relative`).toBe(false);
    const png = decode(readFileSync(join(outDir, src)));
    expect(png.width).toBeGreaterThan(0);
    expect(png.height).toBeGreaterThan(0);
  }
}

describe('report of a finished run', () => {
  it('shows the eval table, examples, both searches, taskness, and no missing files', () => {
    const res = writeReport(complete);
    expect(res.html).toBe(join(complete, 'report', 'index.html'));
    expect(res.notes).toEqual([]);
    const html = readFileSync(res.html, 'utf8');
    expect(html).toContain('Every file of a finished run is present');
    // No external resources: no scripts, stylesheets, fonts or absolute URLs.
    expect(html).not.toMatch(/<script|<link|@import|url\(|https?:\/\//i);
    // The eval table holds the file's numbers (IoU in %, MSE as is).
    const ev = JSON.parse(readFileSync(runPaths(complete).evalJson, 'utf8')) as EvalResults;
    for (const row of ev.rows) {
      const v = row.metric === 'iou' ? (100 * row.taskVector).toFixed(2) : row.taskVector.toFixed(4);
      expect(html).toContain(`>${v}<`);
    }
    // The best condition is bold: one-shot for segmentation fold 0 (0.42 > 0.35 > 0.12 > 0.11).
    expect(html).toMatch(/<td class="l">segmentation<\/td><td>0<\/td><td>mIoU %<\/td><td class="best">42.00<\/td>/);
    // Examples: 2 tasks x 2 folds x 2 episodes, each with the 8 cells, copied beside the page.
    for (const t of ['segmentation', 'colorization']) {
      for (const what of ['query', 'one-shot', 'zero-shot', 'task-vector', 'random', 'target']) {
        expect(html).toContain(`src="examples/${t}/fold1_0017_${what}.png"`);
        expect(existsSync(join(res.outDir, 'examples', t, `fold1_0017_${what}.png`))).toBe(true);
      }
    }
    // Each search: selected heads, probabilities, 3 curves; plus taskness.
    for (const t of ['segmentation', 'colorization']) {
      const subset = JSON.parse(readFileSync(runPaths(complete).subset(t), 'utf8')) as SubsetFile;
      expect(html).toContain(`Selected heads, search '${t}': ${subset.chosen.length} of 1152 variables`);
      for (const f of ['selected', 'probabilities', 'loss', 'validation', 'size']) expect(html).toContain(`src="search-${t}-${f}.png"`);
    }
    expect(html).toContain('src="taskness.png"');
    expect(html).toContain('Kept prompts');
    checkImages(res.html, res.outDir);
    expect(res.figures.length).toBe(11);
    expect(html).not.toContain('train-metric'); // single-task searches: the loss chart says it all
  });

  it('per-example metrics are recomputed from the PNGs: an output equal to the target scores IoU 100', () => {
    const dir = runPaths(complete).examples('segmentation');
    copyFileSync(join(dir, 'fold0_0003_target.png'), join(dir, 'fold0_0003_task-vector.png'));
    const html = readFileSync(writeReport(complete).html, 'utf8');
    const from = html.indexOf('<h3>segmentation</h3>');
    const seg = html.slice(from, html.indexOf('</table>', from));
    const rows = seg.split('<tr>').slice(2); // after the heading row
    expect(rows.length).toBe(4); // 2 folds x 2 episodes
    const scores = rows.map((r) => [...r.matchAll(/<div>([\d.]+)<\/div>/g)].map((m) => Number(m[1])));
    for (const r of scores) expect(r.length).toBe(4); // one-shot, zero-shot, task vector, random
    // Row fold 0 / 0003: the task-vector cell (third output) is the target itself.
    expect(rows[0]).toContain('0 / 0003');
    expect(scores[0]![2]).toBe(100);
    // The other outputs are displaced noisy discs (or miss the target entirely: 0), never perfect.
    const others = scores.flat().filter((_, i) => i !== 2);
    for (const v of others) {
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThan(100);
    }
    expect(others.some((v) => v > 0)).toBe(true);
  });
});

describe('report of an interrupted run', () => {
  it('shows what exists and says what each missing file means', () => {
    const res = writeReport(interrupted);
    const html = readFileSync(res.html, 'utf8');
    const files = res.notes.map((n) => n.file).sort();
    expect(files).toEqual(['eval/results.json', 'search/colorization/subset.json', 'search/segmentation/log.jsonl', 'search/segmentation/subset.json']);
    // The stopped search: resume advice, its checkpoint step, the cut-off log line.
    expect(html).toContain('It stopped after 20 step(s)');
    expect(html).toContain('<code>vtv search --task segmentation --resume</code>');
    expect(html).toContain('1 line(s) could not be read and were skipped');
    // The search with no checkpoint cannot be resumed.
    expect(html).toContain('cannot be resumed: start it again with <code>vtv search --task colorization --force</code>');
    expect(html).toContain('<code>vtv eval</code> has not run or did not finish');
    expect(html).toContain('interrupted: checkpoint after 20 step(s), 25 logged');
    // Probabilities of the checkpoint are shown; no selection map.
    expect(html).toContain('last checkpoint (after 20 step(s)), search not finished');
    expect(html).not.toContain('search-segmentation-selected.png');
    expect(html).toContain('src="search-segmentation-probabilities.png"');
    // The colorization search has only a log snapshot at step 0 for its probabilities.
    expect(html).toContain('log snapshot at step 0, search not finished');
    expect(html).toContain('No eval results');
    checkImages(res.html, res.outDir);
  });

  it('a run with nothing but config.json explains every absence', () => {
    const root = join(base, 'empty');
    makeInterruptedRun(root);
    for (const f of ['means.safetensors', 'prompts.json', 'taskness.json', 'search']) rmSync(join(root, f), { recursive: true });
    const res = writeReport(root);
    const byFile = Object.fromEntries(res.notes.map((n) => [n.file, n.message]));
    expect(byFile['means.safetensors']).toMatch(/`vtv collect` has not run/);
    expect(byFile['taskness.json']).toMatch(/no taskness scores/);
    expect(byFile['search/']).toMatch(/no search has been started/);
    const html = readFileSync(res.html, 'utf8');
    expect(html).toContain('No search has been started');
    expect(referencedImages(res.html)).toEqual([]);
  });

  it('a damaged JSON file is reported, not fatal', () => {
    const root = join(base, 'damaged');
    makeInterruptedRun(root);
    const p = runPaths(root).searchState('segmentation');
    const text = readFileSync(p, 'utf8');
    writeFileSync(p, text.slice(0, text.length / 2));
    const run = readRunFiles(root);
    expect(run.notes.find((n) => n.file === 'search/segmentation/state.json')?.message).toMatch(/cannot be read as JSON/);
    expect(run.searches.find((s) => s.key === 'segmentation')!.state).toBeUndefined();
    expect(() => writeReport(root)).not.toThrow();
  });

  it('a missing run directory is an error naming it', () => {
    expect(() => writeReport(join(base, 'nope'))).toThrow(/run directory .*nope does not exist/);
  });
});

describe('figures', () => {
  it('places each chosen variable at its (slot, part, head, layer)', () => {
    const c = preset('mae-vqgan-vit-large');
    const space = new VariableSpace(c, 1, 'zero-shot');
    const values = new Float64Array(space.count);
    const pick = (layer: number, head: number, slot: string) => {
      const v = space.info.findIndex((i) => i.layer === layer && i.head === head && i.slot === slot);
      values[v] = 1;
    };
    pick(22, 5, 'query');
    pick(c.encDepth + 3, 11, 'output');
    const grid = headMapGrid(space, values);
    // Rows: cls, query, output; columns: encoder, decoder.
    expect(grid.map((r) => r.map((p) => p?.title ?? null))).toEqual([
      ['encoder: CLS token', 'decoder: CLS token'],
      ['encoder: query-image tokens', 'decoder: query-image tokens'],
      [null, 'decoder: output-quadrant tokens'],
    ]);
    const sum = (m: number[][]) => m.flat().reduce((a, b) => a + b, 0);
    expect(grid[1]![0]!.values[5]![22]).toBe(1);
    expect(sum(grid[1]![0]!.values)).toBe(1);
    expect(grid[2]![1]!.values[11]![3]).toBe(1);
    expect(sum(grid[2]![1]!.values)).toBe(1);
    expect(sum(grid[0]![0]!.values) + sum(grid[0]![1]!.values) + sum(grid[1]![1]!.values)).toBe(0);
    expect(grid[1]![0]!.values.length).toBe(16); // heads
    expect(grid[1]![0]!.values[0]!.length).toBe(24); // encoder layers
    expect(grid[1]![1]!.values[0]!.length).toBe(8); // decoder layers
  });

  it('granularity 2 cells show the fraction of positions chosen', () => {
    const space = new VariableSpace(preset('tiny'), 2, 'zero-shot');
    const values = Float64Array.from(space.info, (i) => (i.layer === 1 && i.head === 2 && i.positions[0]! < 25 ? 1 : 0));
    const grid = headMapGrid(space, values);
    expect(grid[0]![0]!.values[2]![1]).toBeCloseTo(25 / 50, 12);
  });

  it('draws heatmaps with a legend and line charts as PNGs', () => {
    const space = new VariableSpace(preset('tiny'), 0, 'zero-shot');
    const chosen = Float64Array.from({ length: space.count }, (_, i) => (i === 0 ? 1 : 0));
    const fig = decode(drawHeatmapFigure({ title: 'x', grid: headMapGrid(space, chosen), scale: selectionScale('variable'), cell: 20 }));
    expect(fig.channels).toBe(4);
    // The chosen cell (encoder layer 0, head 0) is red somewhere in the image.
    let red = 0;
    for (let i = 0; i < fig.data.length; i += 4) if (fig.data[i]! === 200 && fig.data[i + 1]! === 40 && fig.data[i + 2]! === 40) red++;
    expect(red).toBeGreaterThanOrEqual(19 * 19); // the cell, plus the legend swatch
    const probs = decode(drawHeatmapFigure({ title: 'p', grid: headMapGrid(space, chosen), scale: continuousScale(0, 1, 'probability') }));
    expect(probs.width).toBeGreaterThan(100);
    const chart = decode(
      drawLineChart({
        title: 't',
        xLabel: 'step',
        yLabel: 'loss',
        series: [
          {
            name: 'a',
            points: [
              [0, 1],
              [1, Number.NaN],
              [2, 3],
            ],
            color: [0, 0, 255],
          },
        ],
      }),
    );
    expect(chart.width).toBe(520);
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
  });
});

describe('vtv report command', () => {
  it('registers on a commander program and prints the page path', async () => {
    const program = new Command('vtv').exitOverride();
    registerReport(program);
    const out: string[] = [];
    const err: string[] = [];
    const [log, error] = [console.log, console.error];
    console.log = (m: string) => out.push(m);
    console.error = (m: string) => err.push(m);
    const outDir = join(base, 'out');
    // --out may be a folder with other files: they survive, while the report's own stale files go.
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'mine.png'), 'not ours');
    try {
      await program.parseAsync(['node', 'vtv', 'report', complete, '--out', outDir]);
      expect(existsSync(join(outDir, 'search-segmentation-selected.png'))).toBe(true);
      await program.parseAsync(['node', 'vtv', 'report', interrupted, '--out', outDir]);
    } finally {
      console.log = log;
      console.error = error;
    }
    expect(out).toEqual([join(outDir, 'index.html'), join(outDir, 'index.html')]);
    expect(err).toEqual(['report: 4 file(s) missing or unreadable; the page says what each means']);
    expect(existsSync(join(outDir, 'mine.png'))).toBe(true);
    expect(existsSync(join(outDir, 'search-segmentation-selected.png'))).toBe(false); // the finished run's, now stale
    expect(existsSync(join(outDir, 'examples'))).toBe(false);
    expect(existsSync(join(outDir, 'search-segmentation-probabilities.png'))).toBe(true);
  });
});
