// Reads a torch.save checkpoint (the zip format of torch >= 1.6) without loading it: the pickle
// (`<top>/data.pkl`) is parsed by the safe reader, and each tensor's bytes are read from
// `<top>/data/<storage key>` at its offset only when asked for, so memory stays bounded by the largest
// tensor whatever the archive's size. The pre-1.6 (non-zip) format is refused with a clear message.
import { closeSync, openSync, readSync } from 'node:fs';
import { InputError } from '../errors.js';
import { DTYPE_BYTES, isFloatDType, toF32 } from './dtype.js';
import { PickleError, unpickle } from './pickle.js';
import { resolveTorchGlobal, type StorageRef, StorageType, TensorRef } from './torch-globals.js';
import { ZipArchive, ZipError } from './zip.js';

export class CheckpointError extends InputError {}

/** Reads in one go at most this many bytes of a tensor's storage; larger views are read per outer slice. */
const MAX_READ_BYTES = 64 * 1024 * 1024;
/** A checkpoint's pickle describes the tensors, not their data: ViT-L's is about 50 KB. */
const MAX_PICKLE_BYTES = 64 * 1024 * 1024;

export interface TorchCheckpointOptions {
  /** Largest single read (bytes); views spanning more are read one outer slice at a time. */
  maxReadBytes?: number;
}

function sniff(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(8);
    const n = readSync(fd, b, 0, 8, 0);
    return b.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

export class TorchCheckpoint {
  private scratch: Buffer = Buffer.allocUnsafeSlow(0);

  /** A reused read buffer (unpooled, so it starts at byte 0 of its ArrayBuffer: aligned views). */
  private scratchBytes(n: number): Buffer {
    if (this.scratch.length < n) this.scratch = Buffer.allocUnsafeSlow(Math.max(n, Math.ceil(this.scratch.length * 1.5)));
    return this.scratch.subarray(0, n);
  }

  private constructor(
    readonly path: string,
    private readonly zip: ZipArchive,
    /** The archive's top folder (torch names it after the file; it varies). */
    readonly prefix: string,
    /** The unpickled object: Maps, arrays, TensorRefs, InertObjects. */
    readonly root: unknown,
    private readonly maxReadBytes: number,
  ) {}

  /** Opens `path`; throws CheckpointError/ZipError/PickleError with the file named on any problem. */
  static open(path: string, opts: TorchCheckpointOptions = {}): TorchCheckpoint {
    const head = sniff(path);
    if (head.length < 4) throw new CheckpointError(`${path}: not a PyTorch checkpoint (${head.length} bytes)`);
    if (head.readUInt32LE(0) !== 0x04034b50) {
      if (head[0] === 0x80)
        throw new CheckpointError(`${path}: legacy (non-zip) torch format is not supported; re-save with torch>=1.6 (torch.save(torch.load(f), f))`);
      throw new CheckpointError(`${path}: not a PyTorch checkpoint (expected a zip archive written by torch.save)`);
    }
    const zip = ZipArchive.open(path);
    try {
      const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
      if (pkls.length !== 1) throw new CheckpointError(`${path}: expected one '<folder>/data.pkl' entry, found ${pkls.length} (not a torch.save archive?)`);
      const prefix = pkls[0].slice(0, -'/data.pkl'.length);
      const order = zip.entries.get(`${prefix}/byteorder`);
      if (order) {
        const bo = zip.readEntry(order.name, 64).toString('latin1').trim();
        if (bo !== 'little') throw new CheckpointError(`${path}: storages are '${bo}'-endian; only little-endian checkpoints are supported`);
      }
      const pklName = pkls[0];
      const pkl = zip.readEntry(pklName, MAX_PICKLE_BYTES);
      const source = `${path}:${pklName}`;
      const storages = new Map<string, StorageRef>();
      const root = unpickle(pkl, {
        source,
        resolveGlobal: (m, n) => resolveTorchGlobal(m, n, source),
        persistentLoad: (pid) => {
          if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 4) {
            throw new PickleError(`${source}: unsupported persistent id ${JSON.stringify(pid)}`);
          }
          const [, type, key, location] = pid;
          if (!(type instanceof StorageType)) throw new PickleError(`${source}: persistent storage of unknown type`);
          if (typeof key !== 'string' || !/^[\w.-]+$/.test(key)) throw new PickleError(`${source}: bad storage key ${JSON.stringify(key)}`);
          const seen = storages.get(key);
          if (seen) return seen;
          const ref: StorageRef = { key, dtype: type.dtype, location: String(location) };
          storages.set(key, ref);
          return ref;
        },
      });
      return new TorchCheckpoint(path, zip, prefix, root, opts.maxReadBytes ?? MAX_READ_BYTES);
    } catch (e) {
      zip.close();
      throw e;
    }
  }

  close(): void {
    this.zip.close();
  }

  /** Bytes of a storage's zip entry. */
  storageBytes(s: StorageRef): number {
    return this.zip.entry(`${this.prefix}/data/${s.key}`).size;
  }

  /**
   * The tensor `t` (named `name` in messages) as contiguous f32 in row-major order: reads only the byte
   * span its (offset, size, stride) view covers, gathering non-contiguous views element by element.
   * Pass `into` (at least numel long) to reuse a buffer; the result is then a view of it.
   */
  readF32(t: TensorRef, name: string, into?: Float32Array): Float32Array {
    const { dtype, key } = t.storage;
    if (!isFloatDType(dtype)) throw new CheckpointError(`${this.path}: tensor '${name}' has dtype ${dtype}; only floating-point weights can be converted`);
    const entryName = `${this.prefix}/data/${key}`;
    if (!this.zip.entries.has(entryName)) throw new CheckpointError(`${this.path}: tensor '${name}' needs storage '${entryName}', which the archive lacks`);
    const es = DTYPE_BYTES[dtype];
    if (into && into.length < t.numel) throw new Error(`readF32: buffer of ${into.length} floats is too small for '${name}' (${t.numel})`);
    const out = into ? into.subarray(0, t.numel) : new Float32Array(t.numel);
    if (t.numel === 0) return out;
    let last = t.offset;
    t.size.forEach((d, i) => {
      last += (d - 1) * t.stride[i];
    });
    const have = this.zip.entry(entryName).size;
    if ((last + 1) * es > have) {
      throw new CheckpointError(
        `${this.path}: tensor '${name}' (offset ${t.offset}, size [${t.size}], stride [${t.stride}]) needs ${(last + 1) * es} bytes of storage '${key}', which has ${have}`,
      );
    }
    this.gather(entryName, dtype, t.offset, t.size, t.stride, out, name);
    return out;
  }

  /**
   * Checks a storage entry's CRC-32 once (the zip reader streams it, or checks `whole` when the caller
   * just read the entire entry), naming the tensor that needed it.
   */
  private verify(entryName: string, tensor: string, whole: Buffer | null): void {
    try {
      this.zip.verifyEntry(entryName, whole ?? undefined);
    } catch (e) {
      if (e instanceof ZipError && /CRC-32/.test(e.message)) {
        throw new CheckpointError(`${this.path}: storage '${entryName}' of tensor '${tensor}' fails its CRC-32 check (corrupted file)`);
      }
      throw e;
    }
  }

  private gather(entryName: string, dtype: StorageRef['dtype'], offset: number, size: number[], stride: number[], out: Float32Array, name: string): void {
    const es = DTYPE_BYTES[dtype];
    let span = 1;
    size.forEach((d, i) => {
      span += (d - 1) * stride[i];
    });
    if (span * es > this.maxReadBytes && size.length > 0 && size[0] > 1) {
      const inner = out.length / size[0];
      for (let i = 0; i < size[0]; i++) {
        this.gather(entryName, dtype, offset + i * stride[0], size.slice(1), stride.slice(1), out.subarray(i * inner, (i + 1) * inner), name);
      }
      return;
    }
    const bytes = this.scratchBytes(span * es);
    this.zip.readEntryRange(entryName, offset * es, span * es, bytes);
    this.verify(entryName, name, offset === 0 && span * es === this.zip.entry(entryName).size ? bytes : null);
    toF32(dtype, bytes, out, isContiguous(size, stride) ? null : stridedIndices(size, stride));
  }
}

function isContiguous(size: number[], stride: number[]): boolean {
  let expect = 1;
  for (let i = size.length - 1; i >= 0; i--) {
    if (size[i] !== 1 && stride[i] !== expect) return false;
    expect *= size[i];
  }
  return true;
}

/** Element offsets (relative to the view's first element) of a strided view, in row-major order. */
function stridedIndices(size: number[], stride: number[]): Float64Array {
  const n = size.reduce((a, b) => a * b, 1);
  const idx = new Float64Array(n);
  const rank = size.length;
  const counter = new Array<number>(rank).fill(0);
  let cur = 0;
  for (let i = 0; i < n; i++) {
    idx[i] = cur;
    for (let d = rank - 1; d >= 0; d--) {
      counter[d]++;
      cur += stride[d];
      if (counter[d] < size[d]) break;
      cur -= stride[d] * size[d];
      counter[d] = 0;
    }
  }
  return idx;
}

export { PickleError, TensorRef, ZipError };
