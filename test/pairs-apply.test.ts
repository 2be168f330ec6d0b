// Tasks from example pairs, `vtv apply` and `vtv export` with the real engine (tiny random weights):
// pairs layouts good and broken, collect -> search -> eval on a task of one's own, the exported file
// giving the run's outputs bit for bit, eval's task-vector condition reproduced by apply on the same
// images, and the refusal of a task vector made for other weights.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makePairs } from '../scripts/make-pairs.js';
import { applyCommand, exportCommand } from '../src/cli/apply.js';
import { collectCommand } from '../src/cli/collect.js';
import { type Deps, defaultDeps } from '../src/cli/common.js';
import { evalCommand } from '../src/cli/eval.js';
import { program } from '../src/cli/program.js';
import { searchCommand } from '../src/cli/search.js';
import { preset } from '../src/config.js';
import { encodeJpeg, encodePng, makeImage, readImageFile } from '../src/data/image.js';
import { findPairs, loadPairs, outputsAreMasks, splitPairs } from '../src/data/pairs.js';
import { Engine } from '../src/engine.js';
import { PairsTask } from '../src/method/pairs-task.js';
import { TaskVector } from '../src/method/task-vector.js';
import { writeRandomWeights } from '../src/model/random-weights.js';
import { runPaths } from '../src/run/layout.js';
import { meansFileTasks, readMeansFile } from '../src/run/means-file.js';

const root = mkdtempSync(join(tmpdir(), 'vtv-pairs-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const tiny = preset('tiny');
const weights = join(root, 'tiny.safetensors');
const otherWeights = join(root, 'tiny-other.safetensors');
const logs: string[] = [];
const deps: Deps = { ...defaultDeps, log: (m) => logs.push(m), progress: false };
const pairsDir = join(root, 'edges');
const run = join(root, 'run');
const base = { run, weights: [weights], model: 'tiny', threads: 2 };

function rgb(w: number, h: number, f: (x: number, y: number, c: number) => number) {
  const img = makeImage(w, h, 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) img.data[(y * w + x) * 3 + c] = f(x, y, c);
  return img;
}

/** A folder in the inputs/outputs layout with `n` pairs of the given sizes. */
function folderPairs(dir: string, n: number, opts: { jpegInputs?: boolean; masks?: boolean } = {}): void {
  mkdirSync(join(dir, 'inputs'), { recursive: true });
  mkdirSync(join(dir, 'outputs'), { recursive: true });
  for (let i = 0; i < n; i++) {
    const w = 40 + 13 * i;
    const h = 90 - 7 * i;
    const input = rgb(w, h, (x, y, c) => (x * 5 + y * 3 + c * 40 + i * 17) & 255);
    const output = opts.masks ? rgb(w, h, (x) => (x < w / 2 ? 255 : 0)) : rgb(w, h, (x, y, c) => 255 - ((x * 5 + y * 3 + c * 40 + i * 17) & 255));
    if (opts.jpegInputs) writeFileSync(join(dir, 'inputs', `p${i}.jpg`), encodeJpeg(input));
    else writeFileSync(join(dir, 'inputs', `p${i}.png`), encodePng(input));
    writeFileSync(join(dir, 'outputs', `p${i}.png`), encodePng(output));
  }
}

describe('pairs layouts', () => {
  it('matches inputs and outputs by base name across extensions and sizes, and detects masks', () => {
    const dir = join(root, 'good');
    folderPairs(dir, 4, { jpegInputs: true });
    const pairs = findPairs(dir);
    expect(pairs.map((p) => p.id)).toEqual(['p0', 'p1', 'p2', 'p3']);
    expect(pairs[1]!.input).toMatch(/inputs\/p1\.jpg$/);
    const prepared = loadPairs(pairs);
    expect(prepared[3]!.inputCell.length).toBe(3 * 111 * 111);
    expect(outputsAreMasks(pairs.map((p) => p.output))).toBe(false);
    const masks = join(root, 'masks');
    folderPairs(masks, 3, { masks: true });
    expect(outputsAreMasks(findPairs(masks).map((p) => p.output))).toBe(true);
  });

  it('reads a manifest, paths relative to the folder', () => {
    const dir = join(root, 'manifest');
    folderPairs(dir, 3);
    writeFileSync(join(dir, 'pairs.json'), JSON.stringify({ pairs: [0, 1, 2].map((i) => ({ input: `inputs/p${i}.png`, output: `outputs/p${2 - i}.png` })) }));
    const pairs = findPairs(dir);
    expect(pairs.map((p) => [p.id, p.output.slice(-6)])).toEqual([
      ['p0', 'p2.png'],
      ['p1', 'p1.png'],
      ['p2', 'p0.png'],
    ]);
    writeFileSync(join(dir, 'pairs.json'), JSON.stringify([{ input: 'inputs/p0.png', output: 'outputs/nope.png' }]));
    expect(() => findPairs(dir)).toThrow(/entry 0: .*outputs\/nope\.png does not exist/);
    writeFileSync(join(dir, 'pairs.json'), '[]');
    expect(() => findPairs(dir)).toThrow(/lists no pairs/);
  });

  it('names the file of a broken layout', () => {
    const dir = join(root, 'broken');
    folderPairs(dir, 3);
    rmSync(join(dir, 'outputs', 'p1.png'));
    expect(() => findPairs(dir)).toThrow(/inputs\/p1\.png has no partner: expected .*outputs\/p1\.png/);
    writeFileSync(join(dir, 'outputs', 'p1.png'), encodePng(rgb(8, 8, () => 0)));
    writeFileSync(join(dir, 'outputs', 'extra.png'), encodePng(rgb(8, 8, () => 0)));
    expect(() => findPairs(dir)).toThrow(/outputs\/extra\.png has no partner/);
    rmSync(join(dir, 'outputs', 'extra.png'));
    writeFileSync(join(dir, 'inputs', 'p2.png'), 'not an image');
    expect(() => loadPairs(findPairs(dir))).toThrow(/inputs\/p2\.png: not a PNG or JPEG file/);
    const empty = join(root, 'empty');
    mkdirSync(join(empty, 'inputs'), { recursive: true });
    mkdirSync(join(empty, 'outputs'), { recursive: true });
    expect(() => findPairs(empty)).toThrow(/hold no images/);
    expect(() => findPairs(join(root, 'nothing-here'))).toThrow(/is not a folder\nexpected layout/);
    rmSync(join(empty, 'outputs'), { recursive: true });
    expect(() => findPairs(empty)).toThrow(/missing folder .*outputs/);
  });

  it('splits seeded, keeping two training pairs', () => {
    const ids = Array.from({ length: 20 }, (_, i) => `x${i}`);
    const a = splitPairs(ids, 15, 0.2);
    expect(a.val).toHaveLength(4);
    expect(a.train).toHaveLength(16);
    expect(splitPairs(ids, 15, 0.2)).toEqual(a);
    expect(splitPairs(ids, 16, 0.2).val).not.toEqual(a.val);
    expect(splitPairs(['a', 'b', 'c'], 0, 0.9)).toMatchObject({ train: expect.any(Array), val: expect.any(Array) });
    expect(splitPairs(['a', 'b', 'c'], 0, 0.9).train).toHaveLength(2);
    expect(() => splitPairs(['a', 'b'], 0, 0.2)).toThrow(/at least 3 pairs/);
  });
});

describe('a task of ones own: collect, search, eval, export, apply (real engine)', () => {
  beforeAll(async () => {
    writeRandomWeights(weights, tiny, 1);
    writeRandomWeights(otherWeights, tiny, 2);
    makePairs({ transform: 'edges', count: 8, newImages: 3, seed: 0, out: pairsDir });
    await collectCommand({ ...base, pairs: pairsDir, taskName: 'edges', episodesPerFold: 8, keep: 3 }, deps);
    await searchCommand({ ...base, tasks: ['edges'], steps: 2, samplesPerStep: 4, trainImages: 3, validateEvery: 1, checkpointEvery: 2 }, deps);
  });

  it('records the task in the run: split, metric, kept prompts, means', () => {
    const p = runPaths(run);
    const t = PairsTask.read(p.pairsTask('edges'));
    expect(t.file.train).toHaveLength(6);
    expect(t.file.val).toHaveLength(2);
    expect(t.file.metric).toBe('mse');
    expect(t.file.metricFrom).toBe('detected');
    expect(t.file.prompts.length).toBeGreaterThan(0);
    expect(t.file.scored).toBe(8);
    for (const f of [p.means, p.prompts, p.pairsTaskness('edges'), p.subset('edges')]) expect(existsSync(f), f).toBe(true);
  });

  it('refuses a taken name, a second collect without --force, and a bad --metric', async () => {
    await expect(collectCommand({ ...base, pairs: pairsDir, taskName: 'segmentation' }, deps)).rejects.toThrow(/taken by a built-in task/);
    await expect(collectCommand({ ...base, pairs: pairsDir, taskName: 'edges' }, deps)).rejects.toThrow(/already holds task 'edges': pass --force/);
    await expect(collectCommand({ ...base, pairs: pairsDir, taskName: 'e2', metric: 'l1' }, deps)).rejects.toThrow(/--metric must be iou or mse/);
    await expect(collectCommand({ ...base, pairs: join(root, 'nothing'), taskName: 'e2' }, deps)).rejects.toThrow(/is not a folder/);
  });

  it("apply on the validation pairs' inputs gives eval's task-vector outputs bit for bit, from the run and from the exported file", async () => {
    const p = runPaths(run);
    await evalCommand({ ...base, tasks: ['edges'], examples: 10 }, deps);
    const t = PairsTask.read(p.pairsTask('edges'));
    const inputs = t.file.val.map((id) => t.file.pairs.find((x) => x.id === id)!.input);
    const file = join(root, 'edges.vtv.safetensors');
    await exportCommand({ run, task: 'edges', out: file }, deps);
    const fromRun = join(root, 'out-run');
    const fromFile = join(root, 'out-file');
    await applyCommand(inputs, { ...base, task: 'edges', out: fromRun }, deps);
    await applyCommand(inputs, { taskVector: file, weights: [weights], out: fromFile, threads: 2 }, deps);
    const evalPngs = readdirSync(p.examples('edges'))
      .filter((f) => f.endsWith('_task-vector.png'))
      .sort();
    expect(evalPngs).toHaveLength(2);
    t.file.val.forEach((id, i) => {
      const want = readImageFile(join(p.examples('edges'), evalPngs[i]!)).data;
      expect(Buffer.from(readImageFile(join(fromRun, `${id}.png`)).data).equals(Buffer.from(want)), `run ${id}`).toBe(true);
      expect(Buffer.from(readImageFile(join(fromFile, `${id}.png`)).data).equals(Buffer.from(want)), `file ${id}`).toBe(true);
    });
    // The zero-shot output without the task vector differs (the patch does something here).
    const zs = readdirSync(p.examples('edges')).filter((f) => f.endsWith('_zero-shot.png'));
    expect(
      Buffer.from(readImageFile(join(p.examples('edges'), zs[0]!)).data).equals(Buffer.from(readImageFile(join(fromRun, `${t.file.val[0]}.png`)).data)),
    ).toBe(false);
  });

  it('round-trips the file through the library: TaskVector.load and engine.apply, with --compare', async () => {
    const file = join(root, 'lib.vtv.safetensors');
    const p = runPaths(run);
    const fromRun = TaskVector.fromRun(p, tiny, 'edges', { weights: [weights] });
    fromRun.save(file);
    const loaded = TaskVector.load(file);
    expect(loaded.task).toBe('edges');
    expect(loaded.data.granularity).toBe(1);
    expect(Array.from(loaded.data.patches)).toEqual(Array.from(fromRun.data.patches));
    expect(Buffer.from(loaded.mask()).equals(Buffer.from(fromRun.mask()))).toBe(true);
    // Only the patched heads' means travel, exactly: every value the file restores is the run's.
    let restored = 0;
    for (const k of ['enc', 'dec'] as const) {
      const a = loaded.data.means[k];
      const b = fromRun.data.means[k];
      expect(a.length).toBe(b.length);
      for (let i = 0; i < a.length; i++) if (a[i] !== 0) restored++, expect(a[i]).toBe(b[i]);
    }
    expect(restored).toBeGreaterThan(0);
    expect(restored).toBeLessThan(fromRun.data.means.enc.length + fromRun.data.means.dec.length);
    const images = readdirSync(join(pairsDir, 'new')).map((f) => readImageFile(join(pairsDir, 'new', f)));
    const engine = await Engine.open({ config: tiny, weights, threads: 2 });
    try {
      const a = await engine.apply(fromRun, images, { compare: true, batch: 2 });
      const b = await engine.apply(loaded, images, { compare: true });
      expect(a).toHaveLength(3);
      for (let i = 0; i < a.length; i++) {
        for (const k of ['taskVector', 'zeroShot', 'oneShot'] as const)
          expect(Buffer.from(a[i]![k]!.data).equals(Buffer.from(b[i]![k]!.data)), `${k} ${i}`).toBe(true);
        expect(a[i]!.taskVector.width).toBe(111);
      }
      // Another example changes the one-shot output only: zero-shot never sees the example cells.
      const c = await engine.apply(fromRun, images.slice(0, 1), { compare: true, example: { input: images[1]!, output: images[2]! } });
      expect(Buffer.from(c[0]!.taskVector.data).equals(Buffer.from(a[0]!.taskVector.data))).toBe(true);
      expect(Buffer.from(c[0]!.oneShot!.data).equals(Buffer.from(a[0]!.oneShot!.data))).toBe(false);
    } finally {
      engine.close();
    }
    const other = await Engine.open({ config: tiny, weights: otherWeights, threads: 2 });
    try {
      await expect(other.apply(loaded, images)).rejects.toThrow(
        /made for weights tiny\.safetensors \(sha256 [0-9a-f]{64}\), not for .*tiny-other\.safetensors \(sha256/,
      );
    } finally {
      other.close();
    }
  });

  it('refuses a file made for other weights, naming both; skips unreadable images and fails at the end', async () => {
    const file = join(root, 'edges2.vtv.safetensors');
    await exportCommand({ run, task: 'edges', out: file }, deps);
    await expect(exportCommand({ run, task: 'edges', out: file }, deps)).rejects.toThrow(/exists: pass --force/);
    const img = join(pairsDir, 'new', readdirSync(join(pairsDir, 'new'))[0]!);
    await expect(applyCommand([img], { taskVector: file, weights: [otherWeights], out: join(root, 'x') }, deps)).rejects.toThrow(
      /edges2\.vtv\.safetensors was made for weights tiny\.safetensors \(sha256 [0-9a-f]{64}\), not for .*tiny-other\.safetensors \(sha256 [0-9a-f]{64}\)/,
    );
    const bad = join(root, 'broken.png');
    writeFileSync(bad, 'garbage');
    const second = join(root, 'second.png');
    copyFileSync(img, second);
    const out = join(root, 'out-mixed');
    logs.length = 0;
    await expect(applyCommand([img, bad, second], { taskVector: file, weights: [weights], out, compare: true, threads: 2 }, deps)).rejects.toThrow(
      /1 of 3 image\(s\) could not be read: .*broken\.png/,
    );
    expect(logs.join('\n')).toMatch(/broken\.png: not a PNG or JPEG file/);
    expect(readdirSync(out).sort()).toEqual(
      ['second.compare.png', 'second.png', expect.stringMatching(/\.compare\.png$/), expect.stringMatching(/\.png$/)].sort(),
    );
    expect(readImageFile(join(out, 'second.compare.png')).width).toBeGreaterThan(4 * 111);
  });

  it('keeps the task from pairs when the built-in tasks are collected into the same run', async () => {
    const p = runPaths(run);
    const before = readMeansFile(p.means, tiny, ['edges']).get('edges')!.means;
    await collectCommand({ ...base, tasks: ['segmentation'], folds: [1], episodesPerFold: 2, keep: 1, batch: 2 }, deps);
    expect(meansFileTasks(p.means).sort()).toEqual(['edges', 'segmentation']);
    const after = readMeansFile(p.means, tiny, ['edges']).get('edges')!.means;
    expect(Buffer.from(after.dec.buffer).equals(Buffer.from(before.dec.buffer))).toBe(true);
    expect(Object.keys(JSON.parse(readFileSync(p.prompts, 'utf8')).tasks).sort()).toEqual(['edges', 'segmentation']);
    await expect(collectCommand({ ...base, tasks: ['segmentation'], folds: [1], episodesPerFold: 2, keep: 1 }, deps)).rejects.toThrow(/exists: pass --force/);
  });

  it('has apply and export commands with help', () => {
    const cmds = program().commands;
    for (const name of ['apply', 'export']) {
      const c = cmds.find((x) => x.name() === name);
      expect(c, name).toBeDefined();
      expect(c!.helpInformation()).toMatch(/--task/);
    }
    expect(cmds.find((x) => x.name() === 'apply')!.helpInformation()).toMatch(/--task-vector <file>[\s\S]*--compare[\s\S]*--example/);
  });
});
