// PIL's bicubic resize (Image.resize(size, Image.BICUBIC), which torchvision's Resize(..., interpolation=3)
// calls on PIL images), ported from Pillow's libImaging/Resample.c so that cells match the reference.
//
// The algorithm: separable, horizontal pass first then vertical, each pass an 8-bit image. The cubic
// kernel has a = -0.5 and support 2; when downscaling, the kernel is stretched by the scale factor
// (antialiasing). Each output pixel's weights are normalised to sum 1 in double precision, then turned
// into 22-bit fixed point (PRECISION_BITS = 32 - 8 - 2), rounded half away from zero; the accumulator
// starts at 1 << 21 (for rounding) and the result is clipped to 0..255 and shifted right by 22.
// JS doubles hold every intermediate exactly (sums stay below 2^31), so the integer arithmetic is the
// same as C's and the port is bit-exact: test/data-resize.test.ts measures max |diff| = 0 against
// /usr/bin/python3 PIL 9.4 on random and smooth images of several sizes, RGB and L.
import { type Image8, makeImage } from './image.js';

const PRECISION_BITS = 32 - 8 - 2;
const BICUBIC_SUPPORT = 2;

function bicubicFilter(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coeffs {
  ksize: number;
  /** [xmin, count] per output pixel. */
  bounds: Int32Array;
  /** ksize fixed-point weights per output pixel. */
  kk: Int32Array;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for the whole input range (box = [0, inSize]). */
function precomputeCoeffs(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = BICUBIC_SUPPORT * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    // C's (int) cast truncates toward zero.
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bicubicFilter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < ksize; x++) {
      let w = x < xmax ? (k[x] as number) : 0;
      if (x < xmax && ww !== 0) w /= ww;
      kk[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS)) : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(v: number): number {
  if (v >= 256 * (1 << PRECISION_BITS)) return 255;
  if (v <= 0) return 0;
  return v >> PRECISION_BITS; // 0 < v < 2^30: an int32 shift is exact
}

const HALF = 1 << (PRECISION_BITS - 1);

/**
 * Resize an 8-bit image (1 or 3 channels) with PIL's BICUBIC filter. It squashes the aspect ratio,
 * as torchvision's Resize((h, w)) does.
 */
export function resizeBicubic(img: Image8, width: number, height: number): Image8 {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new Error(`resizeBicubic: bad target size ${width}x${height}`);
  }
  const C = img.channels;
  if (width === img.width && height === img.height) return makeImage(width, height, C, img.data.slice());
  const horiz = precomputeCoeffs(img.width, width);
  const vert = precomputeCoeffs(img.height, height);

  // Horizontal pass over only the source rows the vertical pass will read (as Pillow does).
  const yFirst = vert.bounds[0] as number;
  const yLast = (vert.bounds[2 * height - 2] as number) + (vert.bounds[2 * height - 1] as number);
  let tmp: Uint8Array;
  let tmpW: number;
  let yOffset: number;
  if (width !== img.width) {
    const rows = yLast - yFirst;
    tmp = new Uint8Array(rows * width * C);
    tmpW = width;
    yOffset = yFirst;
    const { ksize, bounds, kk } = horiz;
    const src = img.data;
    for (let y = 0; y < rows; y++) {
      const rowIn = (y + yFirst) * img.width;
      for (let xx = 0; xx < width; xx++) {
        const xmin = bounds[2 * xx] as number;
        const n = bounds[2 * xx + 1] as number;
        const kOff = xx * ksize;
        const base = (rowIn + xmin) * C;
        for (let c = 0; c < C; c++) {
          let ss = HALF;
          for (let x = 0, p = base + c; x < n; x++, p += C) ss += (src[p] as number) * (kk[kOff + x] as number);
          tmp[(y * width + xx) * C + c] = clip8(ss);
        }
      }
    }
  } else {
    tmp = img.data;
    tmpW = img.width;
    yOffset = 0;
  }
  if (height === img.height) return makeImage(width, height, C, tmp);

  const out = makeImage(width, height, C);
  const { ksize, bounds, kk } = vert;
  for (let yy = 0; yy < height; yy++) {
    const ymin = (bounds[2 * yy] as number) - yOffset;
    const n = bounds[2 * yy + 1] as number;
    const kOff = yy * ksize;
    const stride = tmpW * C;
    for (let xc = 0; xc < stride; xc++) {
      let ss = HALF;
      for (let y = 0, p = ymin * stride + xc; y < n; y++, p += stride) ss += (tmp[p] as number) * (kk[kOff + y] as number);
      out.data[yy * stride + xc] = clip8(ss);
    }
  }
  return out;
}
