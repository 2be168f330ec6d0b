// A segmentation dataset laid out like VOC: <imageDir>/<id><imageExt>, <labelDir>/<id>.png and split
// lists <splitDir>/{trn,val}/fold<k>.txt. Pascal-5i and the bundled dataset are both instances.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError, UsageError } from '../errors.js';
import {
  type Episode,
  type EpisodeRef,
  type ListEntry,
  parseSplitList,
  type Sample,
  type SegmentationDataset,
  type SplitSpec,
  sampleEpisodeRefs,
} from './dataset.js';
import { readImageFile, readLabelFile } from './image.js';

export interface ListDatasetConfig {
  name: string;
  classes: readonly string[];
  folds: number;
  imageDir: string;
  imageExt: string;
  labelDir: string;
  splitDir: string;
  /** One line describing the expected layout, quoted in missing-file errors. */
  layout: string;
}

export class ListSegmentationDataset implements SegmentationDataset {
  readonly name: string;
  readonly classes: readonly string[];
  readonly folds: number;
  private readonly cfg: ListDatasetConfig;
  private readonly lists = new Map<string, ListEntry[]>();

  constructor(cfg: ListDatasetConfig) {
    this.cfg = cfg;
    this.name = cfg.name;
    this.classes = cfg.classes;
    this.folds = cfg.folds;
    for (const dir of [cfg.imageDir, cfg.labelDir, cfg.splitDir]) {
      if (!existsSync(dir)) throw this.missing(dir);
    }
  }

  private missing(path: string): Error {
    return new Error(`${this.name}: missing ${path}\nexpected layout: ${this.cfg.layout}`);
  }

  imagePath(id: string): string {
    return join(this.cfg.imageDir, id + this.cfg.imageExt);
  }

  labelPath(id: string): string {
    return join(this.cfg.labelDir, `${id}.png`);
  }

  private listPath(spec: SplitSpec): string {
    if (spec.split !== 'trn' && spec.split !== 'val') throw new UsageError(`${this.name}: split must be 'trn' or 'val', got '${spec.split}'`);
    if (!Number.isInteger(spec.fold) || spec.fold < 0 || spec.fold >= this.folds) {
      throw new UsageError(`${this.name}: fold must be an integer in 0..${this.folds - 1}, got ${spec.fold}`);
    }
    return join(this.cfg.splitDir, spec.split, `fold${spec.fold}.txt`);
  }

  entries(spec: SplitSpec): readonly ListEntry[] {
    const path = this.listPath(spec);
    let list = this.lists.get(path);
    if (!list) {
      if (!existsSync(path)) throw this.missing(path);
      list = parseSplitList(readFileSync(path, 'utf8'), path);
      for (const e of list) {
        if (e.classId < 1 || e.classId > this.classes.length)
          throw new InputError(`${path}: class id ${e.classId} of ${e.id} is outside 1..${this.classes.length}`);
      }
      this.lists.set(path, list);
    }
    return list;
  }

  episodeRefs(spec: SplitSpec, seed: number, count: number, start = 0): EpisodeRef[] {
    return sampleEpisodeRefs(this.entries(spec), `${this.name}/${spec.split}/fold${spec.fold}`, seed, count, start);
  }

  loadSample(id: string): Sample {
    const imagePath = this.imagePath(id);
    const labelPath = this.labelPath(id);
    for (const p of [imagePath, labelPath]) if (!existsSync(p)) throw this.missing(p);
    const image = readImageFile(imagePath);
    const labels = readLabelFile(labelPath);
    if (image.width !== labels.width || image.height !== labels.height) {
      throw new InputError(`${this.name}: ${id}: image is ${image.width}x${image.height} but its label map is ${labels.width}x${labels.height}`);
    }
    return { id, image, labels };
  }

  loadEpisode(ref: EpisodeRef): Episode {
    return { ...ref, query: this.loadSample(ref.queryId), support: this.loadSample(ref.supportId) };
  }

  *episodes(spec: SplitSpec, seed: number, count: number, start = 0): Generator<Episode> {
    for (const ref of this.episodeRefs(spec, seed, count, start)) yield this.loadEpisode(ref);
  }

  checkFiles(spec: SplitSpec): number {
    const ids = [...new Set(this.entries(spec).map((e) => e.id))];
    for (const id of ids) {
      for (const p of [this.imagePath(id), this.labelPath(id)]) if (!existsSync(p)) throw this.missing(p);
    }
    return 2 * ids.length;
  }
}
