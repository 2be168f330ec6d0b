// Safetensors files (https://github.com/huggingface/safetensors): an 8-byte little-endian header
// length, a JSON header {key: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}
// padded with spaces to a multiple of 8 bytes, then the tensor bytes with no holes. The writer lays
// tensors out by element size, largest first, so every tensor starts aligned to its element size and
// readers (this one, and the engine's mmap reader) can view the bytes in place.
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { type ModelConfig, ModelConfigSchema } from '../config.js';
import { InputError } from '../errors.js';

export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export type TensorData = Float64Array | Float32Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

export interface SafeTensor {
  dtype: SafetensorsDType;
  shape: number[];
  /** F16 and BF16 are raw 16-bit patterns in a Uint16Array. */
  data: TensorData;
}

export interface TensorSpec {
  dtype: SafetensorsDType;
  shape: number[];
}

export const SAFETENSORS_DTYPE_BYTES: Record<SafetensorsDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

const ARRAY_FOR: Record<SafetensorsDType, (b: ArrayBuffer, off: number, n: number) => TensorData> = {
  F64: (b, o, n) => new Float64Array(b, o, n),
  F32: (b, o, n) => new Float32Array(b, o, n),
  F16: (b, o, n) => new Uint16Array(b, o, n),
  BF16: (b, o, n) => new Uint16Array(b, o, n),
  I64: (b, o, n) => new BigInt64Array(b, o, n),
  I32: (b, o, n) => new Int32Array(b, o, n),
  I16: (b, o, n) => new Int16Array(b, o, n),
  I8: (b, o, n) => new Int8Array(b, o, n),
  U8: (b, o, n) => new Uint8Array(b, o, n),
  BOOL: (b, o, n) => new Uint8Array(b, o, n),
};

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

export class SafetensorsError extends InputError {}

export interface SafetensorsLayout {
  header: Buffer; // length prefix + padded JSON
  /** Absolute file offsets per key, in write order. */
  order: Array<{ key: string; begin: number; end: number }>;
  totalBytes: number;
}

/** Plans a file: the header bytes and where each tensor's data goes (largest element size first). */
export function planSafetensors(specs: Map<string, TensorSpec> | Record<string, TensorSpec>, metadata: Record<string, string> = {}): SafetensorsLayout {
  const entries = specs instanceof Map ? [...specs] : Object.entries(specs);
  const sorted = entries
    .map(([key, s], i) => ({ key, s, i }))
    .sort((a, b) => SAFETENSORS_DTYPE_BYTES[b.s.dtype] - SAFETENSORS_DTYPE_BYTES[a.s.dtype] || a.i - b.i);
  const json: Record<string, unknown> = {};
  if (Object.keys(metadata).length) json.__metadata__ = metadata;
  let off = 0;
  const rel: Array<{ key: string; begin: number; end: number }> = [];
  for (const { key, s } of sorted) {
    if (key === '__metadata__') throw new SafetensorsError(`'__metadata__' cannot be a tensor name`);
    if (!SAFETENSORS_DTYPE_BYTES[s.dtype]) throw new SafetensorsError(`tensor '${key}': unknown dtype ${s.dtype}`);
    const n = numel(s.shape) * SAFETENSORS_DTYPE_BYTES[s.dtype];
    json[key] = { dtype: s.dtype, shape: s.shape, data_offsets: [off, off + n] };
    rel.push({ key, begin: off, end: off + n });
    off += n;
  }
  let text = Buffer.from(JSON.stringify(json), 'utf8');
  const padded = Math.ceil(text.length / 8) * 8;
  if (padded !== text.length) text = Buffer.concat([text, Buffer.alloc(padded - text.length, 0x20)]);
  const header = Buffer.alloc(8 + text.length);
  header.writeBigUInt64LE(BigInt(text.length), 0);
  text.copy(header, 8);
  const base = header.length;
  return { header, order: rel.map((r) => ({ key: r.key, begin: base + r.begin, end: base + r.end })), totalBytes: base + off };
}

/**
 * Writes tensors one at a time to "<path>.tmp-<pid>" and renames it to `path` on `close()`, so a reader
 * never sees a half-written file; `abort()` removes the temporary file. Tensors must be written in
 * `layout.order` (the order `keys()` returns).
 */
export class SafetensorsWriter {
  readonly layout: SafetensorsLayout;
  private readonly tmp: string;
  private fd: number | null;
  private next = 0;

  constructor(
    readonly path: string,
    specs: Map<string, TensorSpec> | Record<string, TensorSpec>,
    metadata: Record<string, string> = {},
  ) {
    this.layout = planSafetensors(specs, metadata);
    this.tmp = `${path}.tmp-${process.pid}`;
    this.fd = openSync(this.tmp, 'w');
    this.writeAll(this.layout.header);
  }

  keys(): string[] {
    return this.layout.order.map((o) => o.key);
  }

  private writeAll(b: Uint8Array): void {
    let done = 0;
    while (done < b.byteLength) done += writeSync(this.fd as number, b, done, b.byteLength - done);
  }

  write(key: string, data: ArrayBufferView): void {
    if (this.fd === null) throw new SafetensorsError(`${this.path}: writer is closed`);
    const slot = this.layout.order[this.next];
    if (!slot || slot.key !== key) throw new SafetensorsError(`${this.path}: expected tensor '${slot?.key ?? '(none)'}' next, got '${key}'`);
    if (data.byteLength !== slot.end - slot.begin)
      throw new SafetensorsError(`${this.path}: tensor '${key}' has ${data.byteLength} bytes, the header says ${slot.end - slot.begin}`);
    this.writeAll(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    this.next++;
  }

  close(): void {
    if (this.fd === null) return;
    if (this.next !== this.layout.order.length) {
      this.abort();
      throw new SafetensorsError(`${this.path}: closed after ${this.next} of ${this.layout.order.length} tensors`);
    }
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = null;
    renameSync(this.tmp, this.path);
  }

  abort(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    rmSync(this.tmp, { force: true });
  }
}

/** Writes `tensors` (and string `metadata`) to `path` atomically. */
export function writeSafetensors(path: string, tensors: Map<string, SafeTensor> | Record<string, SafeTensor>, metadata: Record<string, string> = {}): number {
  const m = tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
  const specs = new Map<string, TensorSpec>();
  for (const [k, t] of m) {
    const want = numel(t.shape);
    if (t.data.length !== want) throw new SafetensorsError(`tensor '${k}': shape [${t.shape}] needs ${want} elements, data has ${t.data.length}`);
    if (t.data.BYTES_PER_ELEMENT !== SAFETENSORS_DTYPE_BYTES[t.dtype])
      throw new SafetensorsError(`tensor '${k}': ${t.data.constructor.name} does not hold ${t.dtype}`);
    specs.set(k, { dtype: t.dtype, shape: t.shape });
  }
  const w = new SafetensorsWriter(path, specs, metadata);
  try {
    for (const k of w.keys()) w.write(k, (m.get(k) as SafeTensor).data);
    w.close();
  } catch (e) {
    w.abort();
    throw e;
  }
  return w.layout.totalBytes;
}

export interface SafetensorsHeader {
  metadata: Record<string, string>;
  tensors: Map<string, TensorSpec & { begin: number; end: number }>; // absolute file offsets
  dataStart: number;
}

function parseHeader(path: string, fd: number, fileSize: number): SafetensorsHeader {
  if (fileSize < 8) throw new SafetensorsError(`${path}: too short for a safetensors file (${fileSize} bytes)`);
  const lenBuf = Buffer.alloc(8);
  readFully(fd, lenBuf, 0, path);
  const len = Number(lenBuf.readBigUInt64LE(0));
  if (len < 2 || len > 100 * 1024 * 1024 || 8 + len > fileSize)
    throw new SafetensorsError(`${path}: header length ${len} is invalid for a ${fileSize}-byte file (not a safetensors file, or truncated)`);
  const text = Buffer.alloc(len);
  readFully(fd, text, 8, path);
  let json: unknown;
  try {
    json = JSON.parse(text.toString('utf8'));
  } catch (e) {
    throw new SafetensorsError(`${path}: header is not JSON: ${(e as Error).message.slice(0, 200)}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    const kind = json === null ? 'null' : Array.isArray(json) ? 'an array' : `a ${typeof json}`;
    throw new SafetensorsError(`${path}: the safetensors header is ${kind}, expected a JSON object of tensors`);
  }
  const dataStart = 8 + len;
  const tensors: SafetensorsHeader['tensors'] = new Map();
  let metadata: Record<string, string> = {};
  const spans: Array<[number, number, string]> = [];
  const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  for (const [key, v] of Object.entries(json as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.values(v).every((x) => typeof x === 'string')) {
        throw new SafetensorsError(`${path}: "__metadata__" must be an object of strings`);
      }
      metadata = v as Record<string, string>;
      continue;
    }
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (e === null || typeof e !== 'object' || Array.isArray(e))
      throw new SafetensorsError(`${path}: tensor '${key}' has a malformed header entry (not an object)`);
    const es = typeof e.dtype === 'string' && Object.hasOwn(SAFETENSORS_DTYPE_BYTES, e.dtype) ? SAFETENSORS_DTYPE_BYTES[e.dtype as SafetensorsDType] : 0;
    if (!es) throw new SafetensorsError(`${path}: tensor '${key}' has an unknown dtype ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every(isCount) || e.shape.length > 16)
      throw new SafetensorsError(`${path}: tensor '${key}' has a malformed shape (expected up to 16 non-negative integers)`);
    if (!Array.isArray(e.data_offsets) || e.data_offsets.length !== 2 || !e.data_offsets.every(isCount))
      throw new SafetensorsError(`${path}: tensor '${key}' has malformed data_offsets (expected [begin, end])`);
    const shape = e.shape as number[];
    const [b, en] = e.data_offsets as [number, number];
    if (en < b || en - b !== numel(shape) * es || dataStart + en > fileSize) {
      throw new SafetensorsError(`${path}: tensor '${key}' data_offsets [${b}, ${en}] do not fit shape [${shape}] ${e.dtype} in a ${fileSize}-byte file`);
    }
    tensors.set(key, { dtype: e.dtype as SafetensorsDType, shape, begin: dataStart + b, end: dataStart + en });
    spans.push([b, en, key]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  let expect = 0;
  for (const [b, en, key] of spans) {
    if (b !== expect) throw new SafetensorsError(`${path}: tensor '${key}' starts at ${b}, expected ${expect} (overlap or hole)`);
    expect = en;
  }
  return { metadata, tensors, dataStart };
}

function readFully(fd: number, into: Buffer, position: number, path: string): void {
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, into.length - done, position + done);
    if (n === 0) throw new SafetensorsError(`${path}: unexpected end of file reading the header (truncated?)`);
    done += n;
  }
}

/** Reads only the header of a safetensors file (keys, dtypes, shapes, metadata). */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openSync(path, 'r');
  try {
    return parseHeader(path, fd, fstatSync(fd).size);
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads a whole safetensors file; each tensor's data is a typed-array view of its own aligned buffer
 * (so any writer's layout is fine). Pass `keys` to read
 * only some tensors.
 */
export function readSafetensors(path: string, keys?: string[]): { metadata: Record<string, string>; tensors: Map<string, SafeTensor> } {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const h = parseHeader(path, fd, size);
    const tensors = new Map<string, SafeTensor>();
    const want = keys ?? [...h.tensors.keys()];
    for (const k of want) {
      const t = h.tensors.get(k);
      if (!t) throw new SafetensorsError(`${path}: no tensor '${k}'`);
      const buf = new ArrayBuffer(t.end - t.begin);
      const view = new Uint8Array(buf);
      let done = 0;
      while (done < view.length) {
        const n = readSync(fd, view, done, view.length - done, t.begin + done);
        if (n === 0) throw new SafetensorsError(`${path}: unexpected end of file in tensor '${k}'`);
        done += n;
      }
      tensors.set(k, { dtype: t.dtype, shape: t.shape, data: ARRAY_FOR[t.dtype](buf, 0, numel(t.shape)) });
    }
    return { metadata: h.metadata, tensors };
  } finally {
    closeSync(fd);
  }
}

/**
 * The model config in a weights file's `vtv_config` metadata (written by `vtv convert` and the random-weights
 * maker), or undefined when the file does not exist or has none; malformed metadata is an error naming the file.
 */
export function configInWeights(path: string): ModelConfig | undefined {
  if (!existsSync(path)) return undefined;
  const meta = readSafetensorsHeader(path).metadata.vtv_config;
  if (meta === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(meta);
  } catch (e) {
    throw new SafetensorsError(`${path}: metadata vtv_config is not JSON: ${(e as Error).message}`);
  }
  const r = ModelConfigSchema.safeParse(json);
  if (!r.success)
    throw new SafetensorsError(`${path}: metadata vtv_config is not a model config: ${r.error.issues[0]?.path.join('.')} ${r.error.issues[0]?.message}`);
  return r.data;
}
