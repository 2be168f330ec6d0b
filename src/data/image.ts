// 8-bit images in memory, and their PNG/JPEG files. PNG goes through fast-png, JPEG through jpeg-js.
// Two decoders on purpose: photos are read as RGB (what the reference gets from PIL's RGB JPEGs), and
// label maps as raw 1-channel values, because a SegmentationClassAug mask's pixel value IS the class id
// (for a palette PNG that is the palette index, never the palette colour).
import { readFileSync, writeFileSync } from 'node:fs';
import { decode as decodePngRaw, encode as encodePngRaw } from 'fast-png';
import jpeg from 'jpeg-js';
import { InputError } from '../errors.js';

/** An 8-bit image, row-major and channel-interleaved (HWC): data[(y*width + x)*channels + c]. */
export interface Image8 {
  width: number;
  height: number;
  channels: 1 | 3;
  data: Uint8Array;
}
export type RgbImage = Image8 & { channels: 3 };
export type GrayImage = Image8 & { channels: 1 };

export function makeImage<C extends 1 | 3>(width: number, height: number, channels: C, data?: Uint8Array): Image8 & { channels: C } {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new Error(`makeImage: bad size ${width}x${height}`);
  }
  const n = width * height * channels;
  if (data && data.length !== n) throw new Error(`makeImage: ${width}x${height}x${channels} needs ${n} bytes, got ${data.length}`);
  return { width, height, channels, data: data ?? new Uint8Array(n) };
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47];
const isPng = (b: Uint8Array) => PNG_SIGNATURE.every((v, i) => b[i] === v);
const isJpeg = (b: Uint8Array) => b[0] === 0xff && b[1] === 0xd8;

/** 16-bit samples keep their high byte (what an 8-bit consumer sees). */
function to8bit(data: ArrayLike<number>, depth: number): Uint8Array {
  if (depth === 8) return data instanceof Uint8Array ? data : Uint8Array.from(data);
  if (depth === 16) return Uint8Array.from(data, (v) => v >> 8);
  throw new InputError(`unsupported PNG bit depth ${depth}`);
}

/** Unpack 1/2/4-bit samples (rows padded to bytes) to one value per byte. */
function unpackBits(data: Uint8Array, width: number, height: number, depth: number): Uint8Array {
  if (depth === 8) return data;
  const out = new Uint8Array(width * height);
  const rowBytes = Math.ceil((width * depth) / 8);
  const perByte = 8 / depth;
  const mask = (1 << depth) - 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const byte = data[y * rowBytes + Math.floor(x / perByte)] as number;
      const shift = 8 - depth * ((x % perByte) + 1);
      out[y * width + x] = (byte >> shift) & mask;
    }
  }
  return out;
}

/** Largest image (pixels) vtv decodes: 4K x 4K, far beyond any data set photo (Pascal's are 500 x 375). */
export const MAX_IMAGE_PIXELS = 4096 * 4096;

/**
 * fast-png with the file named in every error: the declared size is checked before any pixel memory
 * is allocated, and a corrupt stream ("invalid zlib data", a bad chunk) says which file it is.
 */
function readPng(bytes: Uint8Array, what: string): ReturnType<typeof decodePngRaw> {
  if (bytes.length >= 24 && isPng(bytes)) {
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const w = v.getUint32(16);
    const h = v.getUint32(20);
    if (w === 0 || h === 0 || w * h > MAX_IMAGE_PIXELS)
      throw new InputError(`${what}: PNG declares ${w}x${h} pixels (at most ${MAX_IMAGE_PIXELS}, none empty)`);
  }
  try {
    return decodePngRaw(bytes);
  } catch (e) {
    throw new InputError(`${what}: corrupt or unsupported PNG: ${(e as Error).message}`);
  }
}

/** Decode a PNG to RGB: palette colours looked up, grey replicated, alpha dropped (as PIL's convert('RGB')). */
export function decodePng(bytes: Uint8Array, what = 'PNG'): RgbImage {
  const png = readPng(bytes, what);
  if (png.data.length < png.width * png.height * png.channels * (png.depth >= 8 ? png.depth / 8 : 0)) {
    throw new InputError(`${what}: PNG pixel data is shorter than its ${png.width}x${png.height} size (truncated?)`);
  }
  const { width, height, channels } = png;
  const out = makeImage(width, height, 3);
  if (png.palette) {
    const idx = unpackBits(png.data as Uint8Array, width, height, png.depth);
    for (let i = 0; i < width * height; i++) {
      const c = png.palette[idx[i] as number];
      if (!c) throw new InputError(`${what}: palette index ${idx[i]} out of range (${png.palette.length} colours)`);
      out.data[3 * i] = c[0] as number;
      out.data[3 * i + 1] = c[1] as number;
      out.data[3 * i + 2] = c[2] as number;
    }
    return out;
  }
  const src =
    png.depth < 8
      ? unpackBits(png.data as Uint8Array, width, height, png.depth).map((v) => Math.round((v * 255) / ((1 << png.depth) - 1)))
      : to8bit(png.data, png.depth);
  for (let i = 0; i < width * height; i++) {
    if (channels === 1 || channels === 2) {
      const g = src[i * channels] as number;
      out.data[3 * i] = g;
      out.data[3 * i + 1] = g;
      out.data[3 * i + 2] = g;
    } else {
      out.data[3 * i] = src[i * channels] as number;
      out.data[3 * i + 1] = src[i * channels + 1] as number;
      out.data[3 * i + 2] = src[i * channels + 2] as number;
    }
  }
  return out;
}

/**
 * Decode a label-map PNG to its raw values: palette index for palette PNGs, the grey value for
 * 8-bit greyscale. Colour PNGs are refused: their pixels are not class ids.
 */
export function decodeLabelPng(bytes: Uint8Array, what = 'label PNG'): GrayImage {
  const png = readPng(bytes, what);
  const { width, height } = png;
  if (png.palette) return makeImage(width, height, 1, unpackBits(png.data as Uint8Array, width, height, png.depth).slice());
  if (png.channels === 1 && png.depth === 8) return makeImage(width, height, 1, Uint8Array.from(png.data));
  throw new InputError(`${what}: a label map must be a palette or 8-bit greyscale PNG (got ${png.channels} channel(s), ${png.depth}-bit)`);
}

/** Decode a baseline/progressive JPEG to RGB (greyscale JPEGs are replicated to 3 channels). */
export function decodeJpeg(bytes: Uint8Array, what = 'JPEG'): RgbImage {
  let raw: { width: number; height: number; data: Uint8Array };
  try {
    raw = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 1024, maxResolutionInMP: MAX_IMAGE_PIXELS / 1e6 });
  } catch (e) {
    throw new InputError(`${what}: JPEG decode failed: ${(e as Error).message}`);
  }
  if (!(raw.width > 0 && raw.height > 0) || raw.data.length < raw.width * raw.height * 4)
    throw new InputError(`${what}: JPEG has no pixels (${raw.width}x${raw.height})`);
  const out = makeImage(raw.width, raw.height, 3);
  for (let i = 0; i < raw.width * raw.height; i++) {
    out.data[3 * i] = raw.data[4 * i] as number;
    out.data[3 * i + 1] = raw.data[4 * i + 1] as number;
    out.data[3 * i + 2] = raw.data[4 * i + 2] as number;
  }
  return out;
}

/** Decode PNG or JPEG by signature. */
export function decodeImage(bytes: Uint8Array, what = 'image'): RgbImage {
  if (isPng(bytes)) return decodePng(bytes, what);
  if (isJpeg(bytes)) return decodeJpeg(bytes, what);
  throw new InputError(`${what}: not a PNG or JPEG file (unknown signature)`);
}

/** Encode an 8-bit RGB or grey image as PNG. */
export function encodePng(img: Image8): Uint8Array {
  return encodePngRaw({ width: img.width, height: img.height, data: img.data, depth: 8, channels: img.channels });
}

/** Encode an RGB image as a baseline JPEG (quality 1..100). */
export function encodeJpeg(img: RgbImage, quality = 90): Uint8Array {
  const rgba = new Uint8Array(img.width * img.height * 4);
  for (let i = 0; i < img.width * img.height; i++) {
    rgba[4 * i] = img.data[3 * i] as number;
    rgba[4 * i + 1] = img.data[3 * i + 1] as number;
    rgba[4 * i + 2] = img.data[3 * i + 2] as number;
    rgba[4 * i + 3] = 255;
  }
  return new Uint8Array(jpeg.encode({ width: img.width, height: img.height, data: rgba }, quality).data);
}

function readBytes(path: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new InputError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

export const readImageFile = (path: string): RgbImage => decodeImage(readBytes(path), path);
export const readLabelFile = (path: string): GrayImage => decodeLabelPng(readBytes(path), path);
export function writePngFile(path: string, img: Image8): void {
  writeFileSync(path, encodePng(img));
}
