// Per-variable values (chosen or not, probabilities) laid out as layer x head maps: one panel per
// (part, slot) — encoder and decoder apart, since their layers and positions differ — with layer
// along x and head along y. Several variables in one cell (granularity 2: one per position) are
// averaged, i.e. the cell shows the fraction of positions chosen or the mean probability.
import type { ModelConfig } from '../config.js';
import type { Taskness } from '../method/taskness.js';
import type { VariableInfo, VariableSpace } from '../method/variables.js';
import type { ColorScale } from './colormap.js';
import type { HeatmapFigure, HeatmapPanel } from './figures.js';

const SLOT_ORDER: VariableInfo['slot'][] = ['all', 'cls', 'query', 'output', 'pos'];
const SLOT_LABEL: Record<VariableInfo['slot'], string> = {
  all: 'all positions',
  cls: 'CLS token',
  query: 'query-image tokens',
  output: 'output-quadrant tokens',
  pos: 'mean over positions',
};

type Part = 'encoder' | 'decoder';

function emptyGrid(rows: number, cols: number): number[][] {
  return Array.from({ length: rows }, () => new Array<number>(cols).fill(Number.NaN));
}

/** The panels of a per-variable vector: grid rows are slots, columns encoder then decoder. */
export function headMapGrid(space: VariableSpace, values: ArrayLike<number>): (HeatmapPanel | null)[][] {
  if (values.length !== space.count) throw new Error(`head map: ${values.length} values for ${space.count} variables`);
  const c = space.config;
  const sums = new Map<string, { sum: number[][]; n: number[][] }>();
  const key = (part: Part, slot: string) => `${part}/${slot}`;
  for (let v = 0; v < space.count; v++) {
    const info = space.info[v]!;
    const part: Part = info.layer < c.encDepth ? 'encoder' : 'decoder';
    const k = key(part, info.slot);
    if (!sums.has(k)) {
      const rows = part === 'encoder' ? c.encHeads : c.decHeads;
      const cols = part === 'encoder' ? c.encDepth : c.decDepth;
      sums.set(k, { sum: emptyGrid(rows, cols).map((r) => r.fill(0)), n: emptyGrid(rows, cols).map((r) => r.fill(0)) });
    }
    const col = part === 'encoder' ? info.layer : info.layer - c.encDepth;
    const cell = sums.get(k)!;
    cell.sum[info.head]![col]! += values[v]!;
    cell.n[info.head]![col]! += 1;
  }
  const panel = (part: Part, slot: VariableInfo['slot']): HeatmapPanel | null => {
    const s = sums.get(key(part, slot));
    if (!s) return null;
    return {
      title: `${part}: ${SLOT_LABEL[slot]}`,
      xLabel: `${part} layer`,
      yLabel: 'head',
      values: s.sum.map((row, i) => row.map((x, j) => (s.n[i]![j]! ? x / s.n[i]![j]! : Number.NaN))),
    };
  };
  const grid: (HeatmapPanel | null)[][] = [];
  for (const slot of SLOT_ORDER) {
    const row = [panel('encoder', slot), panel('decoder', slot)];
    if (row.some((p) => p)) grid.push(row);
  }
  return grid;
}

export function headMapFigure(title: string, space: VariableSpace, values: ArrayLike<number>, scale: ColorScale): HeatmapFigure {
  return { title, grid: headMapGrid(space, values), scale, cell: cellSize(space.config) };
}

/** Cells small enough that a ViT-L map (24 + 8 layers, 16 heads) fits a page width, larger for small models. */
function cellSize(c: Pick<ModelConfig, 'encDepth' | 'decDepth'>): number {
  const layers = c.encDepth + c.decDepth;
  return layers > 24 ? 14 : layers > 12 ? 20 : 28;
}

/** Taskness per (layer, head): encoder and decoder panels. Non-finite rho (zero within-task variance) is NaN here. */
export function tasknessFigure(title: string, t: Taskness, scale: ColorScale): HeatmapFigure {
  const config = tasknessShape(t);
  const enc = emptyGrid(config.encHeads, config.encDepth);
  const dec = emptyGrid(config.decHeads, config.decDepth);
  for (const { layer, head, rho } of t.perHead) {
    const v = typeof rho === 'number' && Number.isFinite(rho) ? rho : Number.NaN;
    if (layer < config.encDepth) {
      if (enc[head]) enc[head]![layer] = v;
    } else if (dec[head]) dec[head]![layer - config.encDepth] = v;
  }
  return {
    title,
    grid: [
      [
        { title: 'encoder: taskness rho', xLabel: 'encoder layer', yLabel: 'head', values: enc },
        { title: 'decoder: taskness rho', xLabel: 'decoder layer', yLabel: 'head', values: dec },
      ],
    ],
    scale,
    cell: cellSize(config),
  };
}

/**
 * The layer and head counts of a taskness file, from its per-position tables (so the map does not
 * depend on config.json). JSON has no Infinity: an infinite rho was written as null.
 */
export function tasknessShape(t: Taskness): Pick<ModelConfig, 'encDepth' | 'encHeads' | 'decDepth' | 'decHeads'> {
  return {
    encDepth: t.perPositionEnc.length,
    encHeads: t.perPositionEnc[0]?.length ?? 0,
    decDepth: t.perPositionDec.length,
    decHeads: t.perPositionDec[0]?.length ?? 0,
  };
}
