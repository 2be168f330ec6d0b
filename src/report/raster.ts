// A minimal RGBA drawing surface for the report's figures: filled rectangles, anti-aliased-enough lines,
// text from the embedded bitmap font (horizontal or rotated a quarter turn), PNG encoding through
// fast-png. Enough for heatmaps and line charts without a canvas library or a browser.
import { encode } from 'fast-png';
import { FIRST_CHAR, GLYPH_ADVANCE, GLYPH_HEIGHT, GLYPH_WIDTH, GLYPHS_BASE64, LAST_CHAR } from './font-data.js';

export type Rgb = readonly [number, number, number];

export const BLACK: Rgb = [0, 0, 0];
export const WHITE: Rgb = [255, 255, 255];
export const GREY: Rgb = [128, 128, 128];
export const LIGHT_GREY: Rgb = [225, 225, 225];

const glyphs = Buffer.from(GLYPHS_BASE64, 'base64');
if (glyphs.length !== (LAST_CHAR - FIRST_CHAR + 1) * GLYPH_WIDTH * GLYPH_HEIGHT) {
  throw new Error('internal: report font data has the wrong size');
}

/** Height of one line of text at a scale (pixels). */
export const textHeight = (scale = 1) => GLYPH_HEIGHT * scale;
/** Width of a string at a scale (pixels). */
export const textWidth = (s: string, scale = 1) => s.length * GLYPH_ADVANCE * scale;

export class Raster {
  readonly data: Uint8Array;

  constructor(
    readonly width: number,
    readonly height: number,
    background: Rgb = WHITE,
  ) {
    if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
      throw new Error(`Raster: bad size ${width}x${height}`);
    }
    this.data = new Uint8Array(width * height * 4);
    this.fillRect(0, 0, width, height, background);
  }

  /** Blends a colour into one pixel with coverage a in [0, 1]; pixels outside are ignored. */
  blend(x: number, y: number, c: Rgb, a = 1): void {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height || a <= 0) return;
    const i = (y * this.width + x) * 4;
    const k = Math.min(1, a);
    for (let j = 0; j < 3; j++) this.data[i + j] = Math.round(this.data[i + j]! * (1 - k) + c[j]! * k);
    this.data[i + 3] = 255;
  }

  fillRect(x: number, y: number, w: number, h: number, c: Rgb): void {
    const x0 = Math.max(0, Math.round(x));
    const y0 = Math.max(0, Math.round(y));
    const x1 = Math.min(this.width, Math.round(x + w));
    const y1 = Math.min(this.height, Math.round(y + h));
    for (let yy = y0; yy < y1; yy++)
      for (let xx = x0; xx < x1; xx++) {
        const i = (yy * this.width + xx) * 4;
        this.data[i] = c[0];
        this.data[i + 1] = c[1];
        this.data[i + 2] = c[2];
        this.data[i + 3] = 255;
      }
  }

  /** A 1-px rectangle outline. */
  strokeRect(x: number, y: number, w: number, h: number, c: Rgb): void {
    this.fillRect(x, y, w, 1, c);
    this.fillRect(x, y + h - 1, w, 1, c);
    this.fillRect(x, y, 1, h, c);
    this.fillRect(x + w - 1, y, 1, h, c);
  }

  /** A line of the given width, drawn by stamping discs along it (coverage from the distance). */
  line(x0: number, y0: number, x1: number, y1: number, c: Rgb, width = 1.5): void {
    const len = Math.hypot(x1 - x0, y1 - y0);
    const r = width / 2;
    const minX = Math.floor(Math.min(x0, x1) - r - 1);
    const maxX = Math.ceil(Math.max(x0, x1) + r + 1);
    const minY = Math.floor(Math.min(y0, y1) - r - 1);
    const maxY = Math.ceil(Math.max(y0, y1) + r + 1);
    for (let y = Math.max(0, minY); y <= Math.min(this.height - 1, maxY); y++)
      for (let x = Math.max(0, minX); x <= Math.min(this.width - 1, maxX); x++) {
        // Distance from the pixel centre to the segment.
        const px = x + 0.5;
        const py = y + 0.5;
        let t = len > 0 ? ((px - x0) * (x1 - x0) + (py - y0) * (y1 - y0)) / (len * len) : 0;
        t = Math.max(0, Math.min(1, t));
        const d = Math.hypot(px - (x0 + t * (x1 - x0)), py - (y0 + t * (y1 - y0)));
        const cover = Math.max(0, Math.min(1, r + 0.5 - d));
        if (cover > 0) this.blendMax(x, y, c, cover);
      }
  }

  /** Blending that does not darken a pixel twice where a polyline's segments overlap. */
  private blendMax(x: number, y: number, c: Rgb, a: number): void {
    const i = (y * this.width + x) * 4;
    // Coverage already there, estimated from how close the pixel is to c: avoids seams at joints.
    let dist = 0;
    for (let j = 0; j < 3; j++) dist = Math.max(dist, Math.abs(this.data[i + j]! - c[j]!));
    const had = 1 - dist / 255;
    if (had >= a) return;
    this.blend(x, y, c, (a - had) / Math.max(1e-6, 1 - had));
  }

  /** A filled disc (markers). */
  disc(cx: number, cy: number, r: number, c: Rgb): void {
    for (let y = Math.floor(cy - r - 1); y <= Math.ceil(cy + r + 1); y++)
      for (let x = Math.floor(cx - r - 1); x <= Math.ceil(cx + r + 1); x++) {
        const d = Math.hypot(x + 0.5 - cx, y + 0.5 - cy);
        this.blend(x, y, c, Math.max(0, Math.min(1, r + 0.5 - d)));
      }
  }

  /**
   * Text with its top-left corner at (x, y). rotate: the text runs upwards (a quarter turn
   * anticlockwise, for vertical axis labels); then (x, y) is the bottom-left corner of the run.
   * Characters outside printable ASCII are drawn as '?'.
   */
  text(s: string, x: number, y: number, c: Rgb = BLACK, scale = 1, rotate = false): void {
    let pen = 0;
    for (const ch of s) {
      let code = ch.codePointAt(0)!;
      if (code < FIRST_CHAR || code > LAST_CHAR) code = 63;
      const base = (code - FIRST_CHAR) * GLYPH_WIDTH * GLYPH_HEIGHT;
      for (let gy = 0; gy < GLYPH_HEIGHT * scale; gy++)
        for (let gx = 0; gx < GLYPH_WIDTH * scale; gx++) {
          const a = glyphs[base + Math.floor(gy / scale) * GLYPH_WIDTH + Math.floor(gx / scale)]! / 255;
          if (a === 0) continue;
          if (rotate) this.blend(Math.round(x + gy), Math.round(y - pen - gx), c, a);
          else this.blend(Math.round(x + pen + gx), Math.round(y + gy), c, a);
        }
      pen += GLYPH_ADVANCE * scale;
    }
  }

  /** Text centred horizontally on cx (top at y). */
  textCentered(s: string, cx: number, y: number, c: Rgb = BLACK, scale = 1): void {
    this.text(s, Math.round(cx - textWidth(s, scale) / 2), y, c, scale);
  }

  /** Text ending at x (right-aligned), top at y. */
  textRight(s: string, x: number, y: number, c: Rgb = BLACK, scale = 1): void {
    this.text(s, Math.round(x - textWidth(s, scale)), y, c, scale);
  }

  /** Rotated text (running upwards) centred vertically on cy, its glyph tops at x. */
  textVertical(s: string, x: number, cy: number, c: Rgb = BLACK, scale = 1): void {
    this.text(s, x, Math.round(cy + textWidth(s, scale) / 2), c, scale, true);
  }

  png(): Uint8Array {
    return encode({ width: this.width, height: this.height, data: this.data, depth: 8, channels: 4 });
  }
}
