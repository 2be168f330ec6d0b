// What collect/search/eval need from a segmentation dataset, whichever one it is (Pascal-5i or the
// bundled one): named splits of (image, class) entries, seeded episodes (a query and a same-class
// support), and loading of images and label maps. Class ids are 1-based and equal the label-map value
// (VOC: 1 = aeroplane ... 20 = tvmonitor); 0 is background and 255 the VOC boundary/ignore label.

import { InputError } from '../errors.js';
import type { GrayImage, RgbImage } from './image.js';
import { Rng, type RngState } from './rng.js';

/** The data sets a run can use: the bundled one (in the package) or Pascal-5i (downloaded by the user). */
export const DATASETS = ['bundled', 'pascal5i'] as const;
export type DatasetName = (typeof DATASETS)[number];

/** A split list: 'trn' or 'val' part of fold `fold`. */
export interface SplitSpec {
  split: 'trn' | 'val';
  fold: number;
}

/** One line of a split list: image id and the class the episode is about. */
export interface ListEntry {
  id: string;
  classId: number;
}

/** An image with its label map (pixel value = class id), both at full size. */
export interface Sample {
  id: string;
  image: RgbImage;
  labels: GrayImage;
}

/** An episode before loading: cheap, serialisable, deterministic in (dataset, split, seed, index). */
export interface EpisodeRef {
  /** Absolute episode index; the query is entry index % list length. */
  index: number;
  queryId: string;
  supportId: string;
  classId: number;
  /** Stream for the per-episode task randomness (e.g. the inpainting square). */
  cellRng: RngState;
}

export interface Episode extends EpisodeRef {
  query: Sample;
  support: Sample;
}

export interface SegmentationDataset {
  readonly name: string;
  /** classes[classId - 1] is the name of class classId. */
  readonly classes: readonly string[];
  readonly folds: number;
  /** The entries of a split list, in file order. */
  entries(spec: SplitSpec): readonly ListEntry[];
  /** `count` episodes starting at absolute index `start` (default 0). */
  episodeRefs(spec: SplitSpec, seed: number, count: number, start?: number): EpisodeRef[];
  loadSample(id: string): Sample;
  loadEpisode(ref: EpisodeRef): Episode;
  /** Lazily loaded episodes (one at a time, so memory stays flat). */
  episodes(spec: SplitSpec, seed: number, count: number, start?: number): Generator<Episode>;
  /** Throws naming the first file of the split that is missing; returns the number of files checked. */
  checkFiles(spec: SplitSpec): number;
}

/** Parse a split list: lines `<image id>__<class id>`. */
export function parseSplitList(text: string, path: string): ListEntry[] {
  const out: ListEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    const m = /^(.+)__(\d+)$/.exec(line);
    if (!m) throw new InputError(`${path}:${i + 1}: expected '<image id>__<class id>', got '${line}'`);
    out.push({ id: m[1] as string, classId: Number(m[2]) });
  });
  if (out.length === 0) throw new InputError(`${path}: empty split list`);
  return out;
}

/**
 * Seeded episodes over a split list, as the reference's sample_episode: the query is entry
 * index % length, the support a uniformly random entry of the same class whose image differs from the
 * query (the reference's rejection loop has the same distribution). Each episode uses its own stream
 * forked from (seed, label, index), so episode i does not depend on which others were drawn.
 */
export function sampleEpisodeRefs(entries: readonly ListEntry[], label: string, seed: number, count: number, start = 0): EpisodeRef[] {
  if (!Number.isInteger(count) || count < 0) throw new Error(`episode count must be a non-negative integer, got ${count}`);
  if (!Number.isInteger(start) || start < 0) throw new Error(`episode start must be a non-negative integer, got ${start}`);
  const byClass = new Map<number, string[]>();
  for (const e of entries) {
    const list = byClass.get(e.classId) ?? [];
    list.push(e.id);
    byClass.set(e.classId, list);
  }
  const root = Rng.fromSeed(seed).fork(label);
  const out: EpisodeRef[] = [];
  for (let index = start; index < start + count; index++) {
    const q = entries[index % entries.length] as ListEntry;
    const rng = root.fork(`episode/${index}`);
    const others = (byClass.get(q.classId) ?? []).filter((id) => id !== q.id);
    if (others.length === 0) throw new InputError(`${label}: class ${q.classId} has no image other than ${q.id} to use as support`);
    const supportId = rng.pick(others);
    out.push({ index, queryId: q.id, supportId, classId: q.classId, cellRng: rng.fork('cells').getState() });
  }
  return out;
}
