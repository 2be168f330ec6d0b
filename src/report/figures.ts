// The report's PNG figures, drawn into RGBA rasters: heatmaps of per-(layer, head) values (layer along
// x, head along y, encoder and decoder as separate panels, one row of panels per slot, with a colour
// legend) and line charts of the search curves (axes with ticks and labels, legend).
import { type ColorScale, NO_DATA } from './colormap.js';
import { BLACK, GREY, LIGHT_GREY, Raster, type Rgb, textHeight, textWidth, WHITE } from './raster.js';

export interface HeatmapPanel {
  title: string;
  xLabel: string;
  yLabel: string;
  /** values[row][col]: row = head, col = layer; NaN = no data. */
  values: number[][];
  /** Label of column i (default: i). */
  colLabel?: (i: number) => string;
}

export interface HeatmapFigure {
  title: string;
  /** A grid of panels (null leaves a gap), e.g. one row per slot, encoder left, decoder right. */
  grid: (HeatmapPanel | null)[][];
  scale: ColorScale;
  /** Pixels per cell (default 14). */
  cell?: number;
}

const MARGIN = 12;
const TITLE_H = textHeight(1) + 8;
const AXIS_GAP = 4;

interface PanelBox {
  w: number;
  h: number;
  left: number; // space for the y label and tick labels
  bottom: number; // space for tick labels and the x label
}

function panelBox(p: HeatmapPanel, cell: number): PanelBox {
  const rows = p.values.length;
  const cols = rows ? p.values[0]!.length : 0;
  const rowLabelW = textWidth(String(Math.max(0, rows - 1)));
  const left = textHeight() + AXIS_GAP * 2 + rowLabelW + AXIS_GAP;
  const bottom = AXIS_GAP + textHeight() + AXIS_GAP + textHeight() + AXIS_GAP;
  return { w: left + Math.max(cols * cell, textWidth(p.title), textWidth(p.xLabel)), h: TITLE_H + rows * cell + bottom, left, bottom };
}

function drawPanel(r: Raster, p: HeatmapPanel, x0: number, y0: number, cell: number, scale: ColorScale): void {
  const box = panelBox(p, cell);
  const rows = p.values.length;
  const cols = rows ? p.values[0]!.length : 0;
  const gx = x0 + box.left;
  const gy = y0 + TITLE_H;
  r.text(p.title, gx, y0 + 2, BLACK);
  // A 1-px gap between cells keeps single chosen cells distinguishable from runs of them.
  const gap = cell >= 10 ? 1 : 0;
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      const v = p.values[i]![j]!;
      r.fillRect(gx + j * cell, gy + i * cell, cell - gap, cell - gap, Number.isNaN(v) ? NO_DATA : scale.color(v));
    }
  r.strokeRect(gx - 1, gy - 1, cols * cell + 1 - gap + 1, rows * cell + 1 - gap + 1, GREY);
  // Ticks: as dense as the labels allow without overlapping.
  const rowStep = Math.max(1, Math.ceil(textHeight() / cell));
  for (let i = 0; i < rows; i += rowStep) {
    r.textRight(String(i), gx - AXIS_GAP - 1, gy + i * cell + (cell - textHeight()) / 2);
  }
  const colText = (j: number) => (p.colLabel ? p.colLabel(j) : String(j));
  let widest = 0;
  for (let j = 0; j < cols; j++) widest = Math.max(widest, textWidth(colText(j)));
  const colStep = Math.max(1, Math.ceil((widest + 3) / cell));
  for (let j = 0; j < cols; j += colStep) r.textCentered(colText(j), gx + j * cell + cell / 2, gy + rows * cell + AXIS_GAP);
  r.textCentered(p.xLabel, gx + (cols * cell) / 2, gy + rows * cell + AXIS_GAP * 2 + textHeight());
  r.textVertical(p.yLabel, x0 + AXIS_GAP, gy + (rows * cell) / 2);
}

const LEGEND_BAR_W = 16;

function legendWidth(scale: ColorScale): number {
  if (scale.entries) return Math.max(...scale.entries.map((e) => 20 + textWidth(e.label)), textWidth(scale.label)) + MARGIN;
  const ticks = [scale.min, scale.max].map(formatNumber);
  return Math.max(LEGEND_BAR_W + AXIS_GAP + Math.max(...ticks.map((t) => textWidth(t))), textWidth(scale.label)) + MARGIN;
}

function drawLegend(r: Raster, scale: ColorScale, x0: number, y0: number, height: number): void {
  r.text(scale.label, x0, y0);
  const top = y0 + textHeight() + 6;
  if (scale.entries) {
    scale.entries.forEach((e, i) => {
      const y = top + i * (textHeight() + 6);
      r.fillRect(x0, y + 2, 14, 12, e.color);
      r.strokeRect(x0, y + 2, 14, 12, GREY);
      r.text(e.label, x0 + 20, y);
    });
    return;
  }
  const h = Math.max(60, Math.min(220, height - textHeight() - 6));
  for (let y = 0; y < h; y++) {
    const v = scale.max - ((scale.max - scale.min) * y) / Math.max(1, h - 1);
    r.fillRect(x0, top + y, LEGEND_BAR_W, 1, scale.color(v));
  }
  r.strokeRect(x0 - 1, top - 1, LEGEND_BAR_W + 2, h + 2, GREY);
  const ticks = niceTicks(scale.min, scale.max, 5).filter((t) => t >= scale.min - 1e-12 && t <= scale.max + 1e-12);
  for (const t of ticks) {
    const y = top + ((scale.max - t) / (scale.max - scale.min || 1)) * (h - 1);
    r.fillRect(x0 + LEGEND_BAR_W, y, 4, 1, BLACK);
    r.text(formatNumber(t), x0 + LEGEND_BAR_W + AXIS_GAP + 2, Math.round(y - textHeight() / 2));
  }
}

/** Draws a heatmap figure and returns its PNG bytes. */
export function drawHeatmapFigure(f: HeatmapFigure): Uint8Array {
  const cell = f.cell ?? 14;
  const nCols = Math.max(0, ...f.grid.map((row) => row.length));
  const colW = Array.from({ length: nCols }, (_, j) => Math.max(0, ...f.grid.map((row) => (row[j] ? panelBox(row[j]!, cell).w : 0))));
  const rowH = f.grid.map((row) => Math.max(0, ...row.map((p) => (p ? panelBox(p, cell).h : 0))));
  const bodyW = colW.reduce((a, b) => a + b, 0) + MARGIN * 2 * Math.max(0, nCols - 1);
  const bodyH = rowH.reduce((a, b) => a + b, 0) + MARGIN * Math.max(0, rowH.length - 1);
  const titleH = textHeight(1) + 10;
  const width = MARGIN + Math.max(bodyW + MARGIN * 2 + legendWidth(f.scale), textWidth(f.title)) + MARGIN;
  const height = MARGIN + titleH + bodyH + MARGIN;
  const r = new Raster(Math.ceil(width), Math.ceil(height), WHITE);
  r.text(f.title, MARGIN, MARGIN);
  let y = MARGIN + titleH;
  f.grid.forEach((row, i) => {
    let x = MARGIN;
    row.forEach((p, j) => {
      if (p) drawPanel(r, p, x, y, cell, f.scale);
      x += colW[j]! + MARGIN * 2;
    });
    y += rowH[i]! + MARGIN;
  });
  drawLegend(r, f.scale, MARGIN + bodyW + MARGIN * 2, MARGIN + titleH, bodyH);
  return r.png();
}

export interface Series {
  name: string;
  points: [number, number][];
  color: Rgb;
  /** Draw a marker at every point (sparse series, e.g. validation). */
  markers?: boolean;
  /** Points drawn with a larger outlined marker (e.g. the best validation step). */
  highlight?: [number, number][];
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  width?: number;
  height?: number;
}

/** Distinguishable line colours (Okabe-Ito). */
export const LINE_COLORS: Rgb[] = [
  [0, 114, 178],
  [213, 94, 0],
  [0, 158, 115],
  [204, 121, 167],
  [230, 159, 0],
  [86, 180, 233],
  [0, 0, 0],
];

/** Round tick positions (1, 2, 5 x 10^k) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, target: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  // Integer multiples of the step, rounded to 12 digits, so labels read 0.6 rather than 0.6000000000000001.
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) out.push(k === 0 ? 0 : Number((k * step).toPrecision(12)));
  return out;
}

/** Short human-readable numbers for tick labels and legends. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(1);
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(3)));
}

/** Draws a line chart and returns its PNG bytes. Non-finite points are skipped (they break the line). */
export function drawLineChart(c: LineChart): Uint8Array {
  const width = c.width ?? 520;
  const height = c.height ?? 300;
  const r = new Raster(width, height, WHITE);
  const pts = c.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  r.text(c.title, MARGIN, MARGIN - 4);
  let xLo = Math.min(...pts.map((p) => p[0]));
  let xHi = Math.max(...pts.map((p) => p[0]));
  let yLo = Math.min(...pts.map((p) => p[1]));
  let yHi = Math.max(...pts.map((p) => p[1]));
  if (pts.length === 0) {
    xLo = 0;
    xHi = 1;
    yLo = 0;
    yHi = 1;
  }
  if (xHi === xLo) {
    xLo -= 1;
    xHi += 1;
  }
  if (yHi === yLo) {
    const d = Math.abs(yLo) * 0.1 || 1;
    yLo -= d;
    yHi += d;
  }
  const pad = (yHi - yLo) * 0.06;
  yLo -= pad;
  yHi += pad;
  const yTicks = niceTicks(yLo, yHi, 5).filter((t) => t >= yLo && t <= yHi);
  const xTicks = niceTicks(xLo, xHi, 6).filter((t) => t >= xLo && t <= xHi);
  const tickW = Math.max(...yTicks.map((t) => textWidth(formatNumber(t))));
  const legendH = c.series.length > 1 ? textHeight() + 4 : 0;
  const plotX = MARGIN + textHeight() + AXIS_GAP * 2 + tickW + AXIS_GAP;
  const plotY = MARGIN + textHeight() + 6 + legendH;
  const plotW = width - plotX - MARGIN - 4;
  const plotH = height - plotY - (AXIS_GAP * 3 + textHeight() * 2) - MARGIN / 2;
  const sx = (x: number) => plotX + ((x - xLo) / (xHi - xLo)) * plotW;
  const sy = (y: number) => plotY + plotH - ((y - yLo) / (yHi - yLo)) * plotH;

  for (const t of yTicks) {
    const y = Math.round(sy(t));
    r.fillRect(plotX, y, plotW, 1, LIGHT_GREY);
    r.textRight(formatNumber(t), plotX - AXIS_GAP - 2, y - textHeight() / 2);
  }
  for (const t of xTicks) {
    const x = Math.round(sx(t));
    r.fillRect(x, plotY + plotH, 1, 4, BLACK);
    r.textCentered(formatNumber(t), x, plotY + plotH + AXIS_GAP + 2);
  }
  r.fillRect(plotX, plotY, 1, plotH + 1, BLACK);
  r.fillRect(plotX, plotY + plotH, plotW, 1, BLACK);
  r.textCentered(c.xLabel, plotX + plotW / 2, plotY + plotH + AXIS_GAP * 2 + textHeight());
  r.textVertical(c.yLabel, MARGIN, plotY + plotH / 2);

  for (const s of c.series) {
    let prev: [number, number] | null = null;
    for (const [x, y] of s.points) {
      if (!Number.isFinite(x) || !Number.isFinite(y)) {
        prev = null;
        continue;
      }
      const p: [number, number] = [sx(x), sy(y)];
      if (prev) r.line(prev[0], prev[1], p[0], p[1], s.color, 1.6);
      if (s.markers || s.points.length === 1) r.disc(p[0], p[1], 2.6, s.color);
      prev = p;
    }
    for (const [x, y] of s.highlight ?? []) {
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      r.disc(sx(x), sy(y), 5.5, BLACK);
      r.disc(sx(x), sy(y), 4, s.color);
    }
  }
  if (c.series.length > 1) {
    let x = plotX + 4;
    const y = MARGIN + textHeight() + 2;
    for (const s of c.series) {
      r.fillRect(x, y + 6, 14, 3, s.color);
      r.text(s.name, x + 18, y);
      x += 18 + textWidth(s.name) + 14;
    }
  }
  return r.png();
}
