// Datasets: the shipped Pascal-5i split lists, the Pascal-5i reader on a fake VOC tree (palette
// masks, missing-file errors), seeded episode sampling, and the bundled dataset (regenerable).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BUNDLED_CLASSES, openBundled } from '../src/data/bundled.js';
import { BUNDLED_JPEG_QUALITY, generateBundledImage } from '../src/data/bundled-generator.js';
import { type ListEntry, parseSplitList, sampleEpisodeRefs } from '../src/data/dataset.js';
import { encodeJpeg, encodePng } from '../src/data/image.js';
import { openPascal5i } from '../src/data/pascal5i.js';

/** Classes 5k+1..5k+5 of Pascal-5i fold k. */
const foldClasses = (fold: number) => [1, 2, 3, 4, 5].map((i) => 5 * fold + i);

import { noiseImage, PyRef, Rng } from './data-helpers.js';

const py = new PyRef();
const tmp = mkdtempSync(join(tmpdir(), 'vtv-voc-'));
afterAll(() => {
  py.dispose();
  rmSync(tmp, { recursive: true, force: true });
});
const splits = join(import.meta.dirname, '..', 'data', 'pascal5i-splits');

describe('Pascal-5i split lists (shipped copy)', () => {
  it('has the docs/method.md#evaluation sizes and fold classes', () => {
    const trn = [2286, 3425, 5883, 2086];
    const val = [346, 451, 725, 346];
    for (let k = 0; k < 4; k++) {
      const t = parseSplitList(readFileSync(join(splits, 'trn', `fold${k}.txt`), 'utf8'), 'trn');
      const v = parseSplitList(readFileSync(join(splits, 'val', `fold${k}.txt`), 'utf8'), 'val');
      expect(t.length).toBe(trn[k]);
      expect(v.length).toBe(val[k]);
      const cls = new Set(foldClasses(k));
      expect(v.every((e) => cls.has(e.classId))).toBe(true);
      // HSNet's trn/fold<k> also lists fold k's own classes (on training images).
      expect(t.every((e) => cls.has(e.classId))).toBe(true);
      const trnIds = new Set(t.map((e) => e.id));
      expect(v.some((e) => trnIds.has(e.id))).toBe(false);
    }
    expect(() => parseSplitList('2007_000032__01\nbad line\n', 'x.txt')).toThrow(/x\.txt:2/);
  });
});

describe('seeded episodes', () => {
  const entries: ListEntry[] = [
    { id: 'a', classId: 1 },
    { id: 'b', classId: 1 },
    { id: 'c', classId: 1 },
    { id: 'd', classId: 2 },
    { id: 'e', classId: 2 },
    { id: 'a', classId: 2 },
  ];
  it('cycles queries, draws a different same-class support, and replays by seed and index', () => {
    const refs = sampleEpisodeRefs(entries, 'L', 3, 30);
    refs.forEach((r, i) => {
      const q = entries[i % entries.length] as ListEntry;
      expect([r.queryId, r.classId, r.index]).toEqual([q.id, q.classId, i]);
      expect(r.supportId).not.toBe(r.queryId);
      expect(entries.some((e) => e.id === r.supportId && e.classId === r.classId)).toBe(true);
    });
    expect(sampleEpisodeRefs(entries, 'L', 3, 30)).toEqual(refs);
    expect(sampleEpisodeRefs(entries, 'L', 3, 10, 12)).toEqual(refs.slice(12, 22));
    expect(sampleEpisodeRefs(entries, 'L', 4, 30).map((r) => r.supportId)).not.toEqual(refs.map((r) => r.supportId));
    // Supports are spread over the candidates: class 1 query 'a' -> 'b' or 'c'.
    const sup = new Set(
      sampleEpisodeRefs(entries, 'L', 3, 600)
        .filter((r) => r.queryId === 'a' && r.classId === 1)
        .map((r) => r.supportId),
    );
    expect(sup).toEqual(new Set(['b', 'c']));
  });

  it('fails clearly when a class has a single image', () => {
    expect(() =>
      sampleEpisodeRefs(
        [
          { id: 'x', classId: 4 },
          { id: 'y', classId: 5 },
        ],
        'L',
        1,
        1,
      ),
    ).toThrow(/class 4 has no image other than x/);
  });
});

describe('Pascal-5i reader on a VOC-layout tree', () => {
  const voc = join(tmp, 'VOCdevkit', 'VOC2012');
  const ids = ['2007_000001', '2007_000002', '2007_000003'];

  it('reads JPEG images and palette masks as class ids, and names the first missing file', () => {
    mkdirSync(join(voc, 'JPEGImages'), { recursive: true });
    mkdirSync(join(voc, 'SegmentationClassAug'), { recursive: true });
    mkdirSync(join(tmp, 'splits', 'val'), { recursive: true });
    mkdirSync(join(tmp, 'splits', 'trn'), { recursive: true });
    writeFileSync(join(tmp, 'splits', 'val', 'fold1.txt'), ids.map((id) => `${id}__07\n`).join(''));
    const rng = Rng.fromSeed(1);
    const w = 60;
    const h = 40;
    const labels = new Uint8Array(w * h).map((_, i) => (i % w < 30 ? 7 : i % w < 35 ? 255 : 0));
    for (const id of ids.slice(0, 2)) {
      writeFileSync(join(voc, 'JPEGImages', `${id}.jpg`), encodeJpeg(noiseImage(rng, w, h, 3) as never));
      py.add({ op: 'write', in: py.file(labels), w, h, mode: 'P', out: join(voc, 'SegmentationClassAug', `${id}.png`), format: 'PNG' });
    }
    py.run();
    const ds = openPascal5i({ base: tmp, splitDir: join(tmp, 'splits') });
    const s = ds.loadSample(ids[0] as string);
    expect([s.image.width, s.image.height, s.labels.width]).toEqual([w, h, w]);
    expect(s.labels.data).toEqual(labels);
    expect(ds.classes[6]).toBe('car');
    // The third image is missing: the error names its path and the expected layout.
    const jpg3 = join(voc, 'JPEGImages', `${ids[2]}.jpg`);
    expect(() => ds.checkFiles({ split: 'val', fold: 1 })).toThrow(
      new RegExp(`missing ${jpg3.replace(/[.]/g, '\\.')}[\\s\\S]*expected layout: <base>/VOCdevkit/VOC2012/JPEGImages`),
    );
    expect(() => ds.loadSample(ids[2] as string)).toThrow(/missing .*2007_000003\.jpg/);
    expect(() => ds.entries({ split: 'trn', fold: 1 })).toThrow(/missing .*trn\/fold1\.txt/);
    expect(() => ds.entries({ split: 'val', fold: 4 })).toThrow(/fold must be an integer in 0\.\.3/);
    // A missing base folder is reported at open time, naming the folder.
    expect(() => openPascal5i({ base: join(tmp, 'nope') })).toThrow(/missing .*nope\/VOCdevkit\/VOC2012\/JPEGImages[\s\S]*expected layout/);
  });
});

describe('bundled dataset', () => {
  const ds = openBundled();

  it('opens without a download, with Pascal-like folds and loadable episodes', () => {
    expect(ds.classes).toEqual(BUNDLED_CLASSES);
    for (let k = 0; k < ds.folds; k++) {
      expect(ds.checkFiles({ split: 'trn', fold: k })).toBeGreaterThan(0);
      expect(ds.checkFiles({ split: 'val', fold: k })).toBeGreaterThan(0);
      expect(ds.entries({ split: 'val', fold: k }).every((e) => e.classId === k + 1)).toBe(true);
      expect(ds.entries({ split: 'trn', fold: k }).every((e) => e.classId === k + 1)).toBe(true);
      const trnIds = new Set(ds.entries({ split: 'trn', fold: k }).map((e) => e.id));
      expect(ds.entries({ split: 'val', fold: k }).some((e) => trnIds.has(e.id))).toBe(false);
    }
    const eps = [...ds.episodes({ split: 'val', fold: 2 }, 42, 8)];
    expect(eps.length).toBe(8);
    for (const e of eps) {
      expect(e.classId).toBe(3);
      expect(e.support.id).not.toBe(e.query.id);
      // The episode's class is present in both label maps.
      expect(e.query.labels.data.includes(3) && e.support.labels.data.includes(3)).toBe(true);
    }
    expect(ds.episodeRefs({ split: 'val', fold: 2 }, 42, 8)).toEqual(eps.map(({ query: _q, support: _s, ...ref }) => ref));
  });

  it('is exactly what scripts/make-bundled-data.ts generates', () => {
    for (const [classId, n] of [
      [1, 0],
      [4, 19],
    ] as const) {
      const g = generateBundledImage(classId, n);
      const dir = join(import.meta.dirname, '..', 'data', 'bundled');
      expect(encodePng(g.labels)).toEqual(new Uint8Array(readFileSync(join(dir, 'SegmentationClassAug', `${g.id}.png`))));
      expect(encodeJpeg(g.image, BUNDLED_JPEG_QUALITY)).toEqual(new Uint8Array(readFileSync(join(dir, 'JPEGImages', `${g.id}.jpg`))));
    }
  });
});
