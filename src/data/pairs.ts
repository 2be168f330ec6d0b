// A task given by example pairs: a folder of (input, output) images of any size, in one of two layouts:
//
//   DIR/inputs/<name>.<ext> + DIR/outputs/<name>.<ext>   matched by base name (the extensions may differ)
//   DIR/pairs.json                                        a manifest: [{"input": "a.jpg", "output": "b.png"}, ...]
//                                                         (or {"pairs": [...]}), paths relative to DIR
//
// Each image is read by the image layer (PNG or JPEG, by signature) and prepared as the built-in tasks'
// images are: bicubic-resized to a 111x111 cell, then ToTensor'ed. An episode is a (query, support) pair
// of pairs; its canvas is [support input, support output, query input, query output].
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { CELL } from '../config.js';
import { InputError } from '../errors.js';
import { buildCanvas, type Cell, cellFromImage, cellsTarget } from './canvas.js';
import type { TaskCanvas } from './episode-canvas.js';
import { type RgbImage, readImageFile } from './image.js';
import { resizeBicubic } from './resize.js';
import { Rng } from './rng.js';

/** Extensions looked at in the inputs/ and outputs/ folders (the image layer reads PNG and JPEG). */
export const PAIR_IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'] as const;
export const PAIRS_MANIFEST = 'pairs.json';
export const PAIRS_LAYOUT =
  'DIR/inputs/<name>.png|jpg + DIR/outputs/<name>.png|jpg matched by base name, or DIR/pairs.json: [{"input": "...", "output": "..."}, ...]';

export interface PairFiles {
  /** Unique name of the pair (the base name, or the manifest's input base name, de-duplicated). */
  id: string;
  input: string;
  output: string;
}

/** One pair prepared as canvas cells. */
export interface PreparedPair extends PairFiles {
  inputCell: Cell;
  outputCell: Cell;
}

const isImage = (f: string) => (PAIR_IMAGE_EXTENSIONS as readonly string[]).includes(extname(f).toLowerCase());

function listImages(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of readdirSync(dir).sort()) {
    const p = join(dir, f);
    if (!isImage(f) || !statSync(p).isFile()) continue;
    const stem = basename(f, extname(f));
    const prev = out.get(stem);
    if (prev) throw new InputError(`pairs: ${prev} and ${p} have the same base name '${stem}': keep one file per name`);
    out.set(stem, p);
  }
  return out;
}

/**
 * The pairs of a folder (absolute paths), checked for layout: every input has an output of the same
 * base name and back, the manifest's files exist. Images are not decoded here (see loadPairs).
 */
export function findPairs(dir: string): PairFiles[] {
  const root = resolve(dir);
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new InputError(`pairs: ${root} is not a folder\nexpected layout: ${PAIRS_LAYOUT}`);
  const manifest = join(root, PAIRS_MANIFEST);
  if (existsSync(manifest)) return manifestPairs(root, manifest);
  const inDir = join(root, 'inputs');
  const outDir = join(root, 'outputs');
  for (const d of [inDir, outDir]) {
    if (!existsSync(d) || !statSync(d).isDirectory()) throw new InputError(`pairs: missing folder ${d}\nexpected layout: ${PAIRS_LAYOUT}`);
  }
  const inputs = listImages(inDir);
  const outputs = listImages(outDir);
  if (inputs.size === 0 && outputs.size === 0) {
    throw new InputError(`pairs: ${inDir} and ${outDir} hold no images (${PAIR_IMAGE_EXTENSIONS.join(', ')})\nexpected layout: ${PAIRS_LAYOUT}`);
  }
  for (const [stem, p] of inputs) if (!outputs.has(stem)) throw new InputError(`pairs: ${p} has no partner: expected ${join(outDir, stem)}.png (or .jpg)`);
  for (const [stem, p] of outputs) if (!inputs.has(stem)) throw new InputError(`pairs: ${p} has no partner: expected ${join(inDir, stem)}.png (or .jpg)`);
  return [...inputs].map(([stem, input]) => ({ id: stem, input, output: outputs.get(stem)! }));
}

function manifestPairs(root: string, manifest: string): PairFiles[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(manifest, 'utf8'));
  } catch (e) {
    throw new InputError(`pairs: ${manifest} is not valid JSON: ${(e as Error).message}`);
  }
  const list = Array.isArray(raw) ? raw : (raw as { pairs?: unknown })?.pairs;
  if (!Array.isArray(list)) throw new InputError(`pairs: ${manifest} must be a list of {"input", "output"} or {"pairs": [...]}`);
  if (list.length === 0) throw new InputError(`pairs: ${manifest} lists no pairs`);
  const seen = new Set<string>();
  return list.map((e, i) => {
    const { input, output } = (e ?? {}) as { input?: unknown; output?: unknown };
    if (typeof input !== 'string' || typeof output !== 'string') throw new InputError(`pairs: ${manifest} entry ${i} needs "input" and "output" paths`);
    const files = [resolve(root, input), resolve(root, output)];
    for (const f of files) if (!existsSync(f)) throw new InputError(`pairs: ${manifest} entry ${i}: ${f} does not exist`);
    const stem = basename(input, extname(input));
    let id = stem;
    for (let k = 2; seen.has(id); k++) id = `${stem}-${k}`;
    seen.add(id);
    return { id, input: files[0]!, output: files[1]! };
  });
}

/** An image resized to one 111x111 cell, as the built-in tasks prepare theirs. */
export const imageCell = (img: RgbImage): Cell => cellFromImage(resizeBicubic(img, CELL, CELL));

/** Decodes and prepares every pair; a file that cannot be read is named. */
export function loadPairs(pairs: readonly PairFiles[]): PreparedPair[] {
  return pairs.map((p) => ({ ...p, inputCell: imageCell(readImageFile(p.input)), outputCell: imageCell(readImageFile(p.output)) }));
}

/** True when every output is a binary mask: grey pixels, each 0 or 255 (a segmentation-like task). */
export function outputsAreMasks(paths: readonly string[]): boolean {
  for (const p of paths) {
    const { data } = readImageFile(p);
    for (let i = 0; i < data.length; i += 3) {
      const v = data[i]!;
      if ((v !== 0 && v !== 255) || data[i + 1] !== v || data[i + 2] !== v) return false;
    }
  }
  return true;
}

/** A seeded train/validation split of pair ids: at least 2 training pairs and, from 3 pairs, 1 validation pair. */
export function splitPairs(ids: readonly string[], seed: number, valFraction: number): { train: string[]; val: string[] } {
  if (!(valFraction >= 0 && valFraction < 1)) throw new InputError(`pairs: the validation fraction must be in [0, 1), got ${valFraction}`);
  if (ids.length < 3) throw new InputError(`pairs: need at least 3 pairs (2 to train with, 1 to validate), got ${ids.length}`);
  const order = Rng.fromSeed(seed)
    .fork('pairs-split')
    .shuffle([...ids]);
  const nVal = Math.min(ids.length - 2, Math.max(1, Math.round(ids.length * valFraction)));
  return { train: order.slice(nVal), val: order.slice(0, nVal) };
}

export interface PairEpisode {
  index: number;
  queryId: string;
  supportId: string;
}

/**
 * Seeded episodes: the query is queries[index % length], the support a random training pair other than
 * the query, drawn from a stream forked per episode (so episode i does not depend on the others).
 */
export function pairEpisodes(queries: readonly string[], supports: readonly string[], label: string, seed: number, count: number, start = 0): PairEpisode[] {
  if (queries.length === 0) throw new InputError(`${label}: no query pairs`);
  const root = Rng.fromSeed(seed).fork(label);
  const out: PairEpisode[] = [];
  for (let index = start; index < start + count; index++) {
    const queryId = queries[index % queries.length]!;
    const others = supports.filter((s) => s !== queryId);
    if (others.length === 0) throw new InputError(`${label}: no training pair other than ${queryId} to use as the example`);
    out.push({ index, queryId, supportId: root.fork(`episode/${index}`).pick(others) });
  }
  return out;
}

/** The canvas [support input, support output, query input, query output] and its target. */
export function pairCanvas(support: PreparedPair, query: PreparedPair): TaskCanvas {
  const cells = { exampleInput: support.inputCell, exampleOutput: support.outputCell, queryInput: query.inputCell, queryOutput: query.outputCell };
  return { canvas: buildCanvas(cells), target: cellsTarget(cells), cells };
}
