// Image files: PNG/JPEG decoding against PIL, label maps read as raw values (palette index, not colour).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeImage, decodeJpeg, decodeLabelPng, decodePng, encodeJpeg, encodePng, makeImage, readImageFile } from '../src/data/image.js';
import { resizeBicubic } from '../src/data/resize.js';
import { noiseImage, PyRef, Rng, smoothImage } from './data-helpers.js';

const py = new PyRef();
afterAll(() => py.dispose());
const read = (p: string) => new Uint8Array(readFileSync(p));

function diffStats(a: Uint8Array, b: Uint8Array): { max: number; mean: number } {
  expect(a.length).toBe(b.length);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}

describe('PNG', () => {
  it('round-trips RGB and grey images through encodePng/decodePng', () => {
    const rng = Rng.fromSeed(1);
    const rgb = noiseImage(rng, 37, 23, 3);
    expect(decodePng(encodePng(rgb)).data).toEqual(rgb.data);
    const grey = noiseImage(rng, 19, 41, 1);
    expect(decodeLabelPng(encodePng(grey)).data).toEqual(grey.data);
    // A grey PNG read as a photo is replicated to RGB.
    const asRgb = decodePng(encodePng(grey));
    for (let i = 0; i < grey.data.length; i++) expect(asRgb.data[3 * i + 2]).toBe(grey.data[i]);
  });

  it('reads palette and greyscale label maps as raw class ids, and palette photos as PIL colours', () => {
    const rng = Rng.fromSeed(2);
    const w = 45;
    const h = 31;
    const idx = new Uint8Array(w * h).map(() => [0, 1, 7, 15, 20, 255][rng.int(0, 5)] as number);
    const pPath = `${py.file()}.png`;
    const lPath = `${py.file()}.png`;
    const rgbOut = py.file();
    py.add({ op: 'write', in: py.file(idx), w, h, mode: 'P', out: pPath, format: 'PNG' });
    py.add({ op: 'write', in: py.file(idx), w, h, mode: 'L', out: lPath, format: 'PNG' });
    py.run();
    py.add({ op: 'decode', path: pPath, out: rgbOut });
    py.run();
    expect(decodeLabelPng(read(pPath)).data).toEqual(idx);
    expect(decodeLabelPng(read(lPath)).data).toEqual(idx);
    // The palette colours are not the class ids (VOC palette: 1 -> (128,0,0)), and match PIL's RGB.
    const rgb = decodePng(read(pPath));
    expect(rgb.data).toEqual(py.read(rgbOut));
    const one = idx.indexOf(1);
    expect([...rgb.data.subarray(3 * one, 3 * one + 3)]).toEqual([128, 0, 0]);
  });

  it('drops alpha as PIL convert("RGB") does, and refuses colour PNGs as label maps', () => {
    const rng = Rng.fromSeed(3);
    const w = 20;
    const h = 10;
    const rgba = new Uint8Array(w * h * 4).map(() => rng.int(0, 255));
    const path = `${py.file()}.png`;
    const out = py.file();
    py.add({ op: 'write', in: py.file(rgba), w, h, mode: 'RGBA', out: path, format: 'PNG' });
    py.run();
    py.add({ op: 'decode', path, out });
    py.run();
    expect(decodePng(read(path)).data).toEqual(py.read(out));
    expect(() => decodeLabelPng(read(path), 'x.png')).toThrow(/x\.png: a label map must be a palette or 8-bit greyscale PNG/);
  });

  it('names the file when the signature is unknown', () => {
    expect(() => decodeImage(new Uint8Array([1, 2, 3, 4]), 'foo.bin')).toThrow(/foo\.bin: not a PNG or JPEG/);
    expect(() => readImageFile('/nonexistent/a.jpg')).toThrow(/cannot read \/nonexistent\/a\.jpg/);
  });
});

// jpeg-js is not libjpeg-turbo (PIL's decoder): its IDCT and colour conversion round differently, and
// it upsamples 4:2:0 chroma by replication where libjpeg-turbo uses "fancy" (triangle) upsampling.
// Measured when written: 4:4:4 files (our bundled JPEGs) max |diff| 3, mean 0.52; PIL 4:2:0 q90
// files (like VOC's) max 46-67 at sharp colour edges, mean 2.0-2.7 at full size, and after the 111x111
// bicubic resize (what the model sees) max 5-8, mean 0.6-0.8. The bounds below guard those numbers.
describe('JPEG vs PIL (libjpeg-turbo)', () => {
  it('decodes the bundled 4:4:4 JPEGs within 3 levels of PIL', () => {
    const dir = join(import.meta.dirname, '..', 'data', 'bundled', 'JPEGImages');
    const files = readdirSync(dir)
      .filter((f) => f.endsWith('.jpg'))
      .slice(0, 12)
      .map((f) => join(dir, f));
    const outs = files.map((f) => {
      const out = py.file();
      py.add({ op: 'decode', path: f, out });
      return out;
    });
    py.run();
    let max = 0;
    let mean = 0;
    files.forEach((f, k) => {
      const s = diffStats(decodeJpeg(read(f)).data, py.read(outs[k] as string));
      max = Math.max(max, s.max);
      mean += s.mean / files.length;
    });
    console.log(`bundled JPEG decode vs PIL: max |diff| ${max}, mean ${mean.toFixed(3)}`);
    expect(max).toBeLessThanOrEqual(4);
    expect(mean).toBeLessThan(1);
  });

  it('decodes 4:2:0 photos close to PIL once resized to a cell', () => {
    const rng = Rng.fromSeed(4);
    const jobs = [0, 1, 2].map((k) => {
      const img = smoothImage(rng, 500 - 40 * k, 375 + 20 * k, 3);
      const path = `${py.file()}.jpg`;
      py.add({ op: 'write', in: py.file(img.data), w: img.width, h: img.height, mode: 'RGB', out: path, format: 'JPEG', quality: 90 });
      return { path, out: py.file() };
    });
    py.run();
    for (const j of jobs) py.add({ op: 'decode', path: j.path, out: j.out });
    py.run();
    for (const j of jobs) {
      const ours = decodeJpeg(read(j.path));
      const ref = makeImage(ours.width, ours.height, 3, py.read(j.out));
      const full = diffStats(ours.data, ref.data);
      const cell = diffStats(resizeBicubic(ours, 111, 111).data, resizeBicubic(ref, 111, 111).data);
      console.log(`4:2:0 JPEG vs PIL: full max ${full.max} mean ${full.mean.toFixed(3)}; 111x111 cell max ${cell.max} mean ${cell.mean.toFixed(3)}`);
      expect(full.mean).toBeLessThan(4);
      expect(cell.max).toBeLessThanOrEqual(12);
      expect(cell.mean).toBeLessThan(1.5);
    }
  });

  it('round-trips our own encoder within JPEG loss', () => {
    const img = smoothImage(Rng.fromSeed(5), 64, 48, 3);
    const back = decodeJpeg(encodeJpeg(img, 95));
    expect(back.width).toBe(64);
    expect(diffStats(back.data, img.data).mean).toBeLessThan(3);
  });
});
