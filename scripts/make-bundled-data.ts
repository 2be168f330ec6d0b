// Writes data/bundled/ (the dataset the demo and tests use without a download) from
// src/data/bundled-generator.ts: JPEGImages/<id>.jpg (quality 92), SegmentationClassAug/<id>.png
// (8-bit greyscale, pixel value = class id, 255 = boundary) and splits/{trn,val}/fold<k>.txt.
// Run: npx tsx scripts/make-bundled-data.ts [outDir]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUNDLED_CLASSES } from '../src/data/bundled.js';
import { BUNDLED_JPEG_QUALITY, bundledSplitLists, generateBundledImage, IMAGES_PER_CLASS } from '../src/data/bundled-generator.js';
import { encodeJpeg, encodePng } from '../src/data/image.js';
import { packageDataDir } from '../src/data/paths.js';

const out = process.argv[2] ?? join(packageDataDir(), 'bundled');
for (const sub of ['JPEGImages', 'SegmentationClassAug', 'splits/trn', 'splits/val']) mkdirSync(join(out, sub), { recursive: true });
let bytes = 0;
for (let classId = 1; classId <= BUNDLED_CLASSES.length; classId++) {
  for (let n = 0; n < IMAGES_PER_CLASS; n++) {
    const b = generateBundledImage(classId, n);
    const jpg = encodeJpeg(b.image, BUNDLED_JPEG_QUALITY);
    const png = encodePng(b.labels);
    writeFileSync(join(out, 'JPEGImages', `${b.id}.jpg`), jpg);
    writeFileSync(join(out, 'SegmentationClassAug', `${b.id}.png`), png);
    bytes += jpg.length + png.length;
  }
}
const lists = bundledSplitLists();
for (const split of ['trn', 'val'] as const) {
  lists[split].forEach((entries, fold) => {
    writeFileSync(join(out, 'splits', split, `fold${fold}.txt`), entries.map((e) => `${e.id}__${String(e.classId).padStart(2, '0')}\n`).join(''));
  });
}
console.log(`wrote ${BUNDLED_CLASSES.length * IMAGES_PER_CLASS} images + masks (${(bytes / 1024).toFixed(0)} KiB) to ${out}`);
