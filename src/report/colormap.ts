// Colour scales for the report's heatmaps: viridis (perceptually uniform, readable in greyscale and by
// most colour-blind readers) for continuous values, and a two-colour scale for chosen / not chosen.
import type { Rgb } from './raster.js';

/** Viridis sampled at 9 evenly spaced points (matplotlib's table), linearly interpolated between. */
const VIRIDIS: Rgb[] = [
  [68, 1, 84],
  [71, 44, 122],
  [59, 81, 139],
  [44, 113, 142],
  [33, 144, 141],
  [39, 173, 129],
  [92, 200, 99],
  [170, 220, 50],
  [253, 231, 37],
];

export interface ColorScale {
  /** Colour of a value; NaN is 'no data'. */
  color: (v: number) => Rgb;
  min: number;
  max: number;
  label: string;
  /** Discrete scales list their entries in the legend instead of a gradient bar. */
  entries?: { label: string; color: Rgb }[];
}

export const NO_DATA: Rgb = [236, 236, 236];

export function viridis(t: number): Rgb {
  const x = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const a = VIRIDIS[i]!;
  const b = VIRIDIS[i + 1]!;
  return [Math.round(a[0] + f * (b[0] - a[0])), Math.round(a[1] + f * (b[1] - a[1])), Math.round(a[2] + f * (b[2] - a[2]))];
}

/** Viridis over [min, max]; values outside are clamped, NaN is grey. */
export function continuousScale(min: number, max: number, label: string): ColorScale {
  const span = max > min ? max - min : 1;
  return { min, max, label, color: (v) => (Number.isNaN(v) ? NO_DATA : viridis((v - min) / span)) };
}

const CHOSEN: Rgb = [200, 40, 40];
const NOT_CHOSEN: Rgb = [250, 250, 250];

/**
 * Chosen (1) / not chosen (0); fractions in between (several variables per cell, granularity 2) are
 * shaded between the two.
 */
export function selectionScale(label: string): ColorScale {
  const mix = (t: number): Rgb => [
    Math.round(NOT_CHOSEN[0] + t * (CHOSEN[0] - NOT_CHOSEN[0])),
    Math.round(NOT_CHOSEN[1] + t * (CHOSEN[1] - NOT_CHOSEN[1])),
    Math.round(NOT_CHOSEN[2] + t * (CHOSEN[2] - NOT_CHOSEN[2])),
  ];
  return {
    min: 0,
    max: 1,
    label,
    color: (v) => (Number.isNaN(v) ? NO_DATA : mix(Math.max(0, Math.min(1, v)))),
    entries: [
      { label: 'chosen', color: CHOSEN },
      { label: 'not chosen', color: NOT_CHOSEN },
    ],
  };
}
