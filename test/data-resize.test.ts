// resizeBicubic against PIL 9.4's Image.resize(BICUBIC) (what torchvision Resize(interpolation=3)
// runs): bit-exact is expected, since the port reproduces Pillow's fixed-point arithmetic. Measured
// when written: max |diff| = 0, mean 0, over all cases below (RGB and L, down- and upscaling, noise
// and smooth images, squashed aspect ratios).
import { afterAll, describe, expect, it } from 'vitest';
import { type Image8, makeImage } from '../src/data/image.js';
import { resizeBicubic } from '../src/data/resize.js';
import { noiseImage, PyRef, Rng, smoothImage } from './data-helpers.js';

const py = new PyRef();
afterAll(() => py.dispose());

describe('resizeBicubic vs PIL', () => {
  it('matches PIL exactly on random and smooth images of many sizes', () => {
    const rng = Rng.fromSeed(7);
    const cases: { img: Image8; ow: number; oh: number; name: string }[] = [];
    const sizes: [number, number][] = [
      [500, 375],
      [375, 500],
      [333, 222],
      [111, 111],
      [112, 110],
      [64, 48],
      [17, 29],
      [200, 111],
      [1, 1],
      [3, 250],
    ];
    for (const [w, h] of sizes) {
      for (const channels of [3, 1] as const) {
        cases.push({ img: noiseImage(rng, w, h, channels), ow: 111, oh: 111, name: `noise ${w}x${h}x${channels}` });
        cases.push({ img: smoothImage(rng, w, h, channels), ow: 111, oh: 111, name: `smooth ${w}x${h}x${channels}` });
      }
    }
    // Other targets: width-only and height-only changes, and upscaling to odd sizes.
    cases.push({ img: noiseImage(rng, 150, 111, 3), ow: 111, oh: 111, name: 'width only' });
    cases.push({ img: noiseImage(rng, 111, 150, 3), ow: 111, oh: 111, name: 'height only' });
    cases.push({ img: noiseImage(rng, 40, 30, 3), ow: 224, oh: 97, name: 'upscale' });
    const outs = cases.map((c) => {
      const out = py.file();
      py.add({ op: 'resize', in: py.file(c.img.data), w: c.img.width, h: c.img.height, mode: c.img.channels === 3 ? 'RGB' : 'L', ow: c.ow, oh: c.oh, out });
      return out;
    });
    py.run();
    let maxDiff = 0;
    let sumDiff = 0;
    let count = 0;
    cases.forEach((c, k) => {
      const ours = resizeBicubic(c.img, c.ow, c.oh);
      const ref = py.read(outs[k] as string);
      expect(ours.data.length, c.name).toBe(ref.length);
      for (let i = 0; i < ref.length; i++) {
        const d = Math.abs((ours.data[i] as number) - (ref[i] as number));
        maxDiff = Math.max(maxDiff, d);
        sumDiff += d;
        count++;
      }
    });
    console.log(`resizeBicubic vs PIL: ${cases.length} cases, ${count} values, max |diff| ${maxDiff}, mean ${(sumDiff / count).toExponential(2)}`);
    expect(maxDiff).toBe(0);
  });

  it('keeps a constant image constant and squashes the aspect ratio', () => {
    const img = makeImage(300, 120, 3);
    img.data.fill(77);
    const out = resizeBicubic(img, 111, 111);
    expect(out.width).toBe(111);
    expect(out.height).toBe(111);
    expect(out.data.every((v) => v === 77)).toBe(true);
  });

  it('leaves a 0/255 mask soft at the edges (not binary) after resizing', () => {
    const m = makeImage(200, 200, 1);
    for (let y = 0; y < 200; y++) for (let x = 0; x < 200; x++) m.data[y * 200 + x] = x >= 77 ? 255 : 0;
    const out = resizeBicubic(m, 111, 111);
    const values = new Set(out.data);
    expect(values.has(0) && values.has(255)).toBe(true);
    expect([...values].some((v) => v > 0 && v < 255)).toBe(true);
  });

  it('rejects bad sizes', () => {
    expect(() => resizeBicubic(makeImage(4, 4, 1), 0, 3)).toThrow(/bad target size/);
  });
});
