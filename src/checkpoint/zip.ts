// A read-only view of a zip archive that reads only the byte ranges asked for. torch.save writes its
// archives with stored (uncompressed) entries, so a tensor's bytes can be read in place at an offset
// without inflating or loading the archive; deflated entries (a re-zipped file) are inflated once per
// entry, and the last one is kept for the reads that follow.
//
// Nothing in the archive is trusted: a stored entry must declare equal sizes, a deflated one may not
// inflate past its declared size (the inflater stops there), must inflate to exactly that size, may
// not declare more than `maxInflatedBytes` nor more than `maxRatio` times its compressed size (a zip
// bomb), and every entry's CRC-32 is checked in the pass that reads or inflates it.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { crc32, inflateRawSync } from 'node:zlib';
import { InputError } from '../errors.js';

export interface ZipEntry {
  name: string;
  method: number; // 0 stored, 8 deflate
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
  crc32: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const MAX_COMMENT = 0xffff;

export class ZipError extends InputError {}

export interface ZipLimits {
  /** Most bytes a deflated entry may inflate to (default 256 MiB). */
  maxInflatedBytes?: number;
  /** Most uncompressed/compressed size ratio of a deflated entry over 1 MiB (default 200). */
  maxRatio?: number;
}

const DEFAULT_LIMITS: Required<ZipLimits> = { maxInflatedBytes: 256 * 2 ** 20, maxRatio: 200 };
const RATIO_FREE_BYTES = 2 ** 20;
const CRC_CHUNK = 16 * 2 ** 20;

function u64(b: Buffer, off: number): number {
  const v = b.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipError(`64-bit field ${v} is too large`);
  return Number(v);
}

export class ZipArchive {
  readonly entries = new Map<string, ZipEntry>();
  private readonly dataStart = new Map<string, number>();
  private fd: number | null;
  readonly fileSize: number;
  private readonly limits: Required<ZipLimits>;
  private readonly verified = new Set<string>();
  private inflated: { name: string; data: Buffer } | null = null;

  private constructor(
    readonly path: string,
    fd: number,
    limits: ZipLimits,
  ) {
    this.fd = fd;
    this.fileSize = fstatSync(fd).size;
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  /** Opens `path` and reads its central directory; throws ZipError when it is not a readable zip. */
  static open(path: string, limits: ZipLimits = {}): ZipArchive {
    const fd = openSync(path, 'r');
    const z = new ZipArchive(path, fd, limits);
    try {
      z.readCentralDirectory();
    } catch (e) {
      z.close();
      // A field pointing outside its record is the archive's fault, whatever check did not catch it.
      if (e instanceof RangeError) throw new ZipError(`${path}: corrupt zip structure (${e.message})`);
      throw e;
    }
    return z;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    this.inflated = null;
  }

  /** Reads exactly `length` bytes at absolute file offset `position`; a short read is an error. */
  readAt(position: number, length: number, into?: Buffer): Buffer {
    if (this.fd === null) throw new ZipError(`${this.path}: archive is closed`);
    const buf = into ?? Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, buf, done, length - done, position + done);
      if (n === 0)
        throw new ZipError(`${this.path}: unexpected end of file reading ${length} bytes at offset ${position} (file is ${this.fileSize} bytes; truncated?)`);
      done += n;
    }
    return buf;
  }

  private readCentralDirectory(): void {
    const tailLen = Math.min(this.fileSize, 22 + MAX_COMMENT + 20);
    if (this.fileSize < 22) throw new ZipError(`${this.path}: not a zip archive (only ${this.fileSize} bytes)`);
    const tail = this.readAt(this.fileSize - tailLen, tailLen);
    let eocd = -1;
    for (let i = tail.length - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === EOCD_SIG && i + 22 + tail.readUInt16LE(i + 20) <= tail.length) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw new ZipError(`${this.path}: no zip end-of-central-directory record (truncated, or not a zip archive)`);
    let count = tail.readUInt16LE(eocd + 10);
    let cdSize = tail.readUInt32LE(eocd + 12);
    let cdOffset = tail.readUInt32LE(eocd + 16);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const loc = eocd - 20;
      if (loc < 0 || tail.readUInt32LE(loc) !== ZIP64_LOCATOR_SIG) throw new ZipError(`${this.path}: zip64 locator missing`);
      const z64 = this.readAt(u64(tail, loc + 8), 56);
      if (z64.readUInt32LE(0) !== ZIP64_EOCD_SIG) throw new ZipError(`${this.path}: bad zip64 end-of-central-directory record`);
      count = u64(z64, 32);
      cdSize = u64(z64, 40);
      cdOffset = u64(z64, 48);
    }
    if (count > 1_000_000) throw new ZipError(`${this.path}: the central directory declares ${count} entries (corrupt, or not a checkpoint)`);
    if (cdOffset + cdSize > this.fileSize)
      throw new ZipError(`${this.path}: central directory [${cdOffset}, +${cdSize}) lies outside the file (${this.fileSize} bytes)`);
    const cd = this.readAt(cdOffset, cdSize);
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL_SIG) throw new ZipError(`${this.path}: corrupt central directory entry #${i}`);
      const method = cd.readUInt16LE(p + 10);
      const crc32 = cd.readUInt32LE(p + 16);
      let compressedSize = cd.readUInt32LE(p + 20);
      let size = cd.readUInt32LE(p + 24);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      let localHeaderOffset = cd.readUInt32LE(p + 42);
      if (p + 46 + nameLen + extraLen + commentLen > cd.length) throw new ZipError(`${this.path}: central directory entry #${i} runs past the directory's end`);
      const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
      // zip64 extended information: the 64-bit values follow in this order, only for fields saturated above.
      let e = p + 46 + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = cd.readUInt16LE(e);
        const len = cd.readUInt16LE(e + 2);
        if (e + 4 + len > extraEnd) throw new ZipError(`${this.path}: entry '${name}' has a malformed extra field`);
        if (id === 0x0001) {
          let q = e + 4;
          const want = (size === 0xffffffff ? 8 : 0) + (compressedSize === 0xffffffff ? 8 : 0) + (localHeaderOffset === 0xffffffff ? 8 : 0);
          if (want > len) throw new ZipError(`${this.path}: entry '${name}' has a short zip64 extra field`);
          if (size === 0xffffffff) {
            size = u64(cd, q);
            q += 8;
          }
          if (compressedSize === 0xffffffff) {
            compressedSize = u64(cd, q);
            q += 8;
          }
          if (localHeaderOffset === 0xffffffff) {
            localHeaderOffset = u64(cd, q);
            q += 8;
          }
        }
        e += 4 + len;
      }
      if (method !== 0 && method !== 8) throw new ZipError(`${this.path}: entry '${name}' uses unsupported compression method ${method}`);
      if (method === 0 && compressedSize !== size) {
        throw new ZipError(`${this.path}: stored entry '${name}' declares ${size} bytes but occupies ${compressedSize} (corrupt archive)`);
      }
      if (method === 8) this.checkDeflatedSizes(name, size, compressedSize);
      this.entries.set(name, { name, method, compressedSize, size, localHeaderOffset, crc32 });
      p = extraEnd + commentLen;
    }
  }

  /** Absolute file offset of the first byte of `entry`'s data (after its local header). */
  dataOffset(entry: ZipEntry): number {
    const cached = this.dataStart.get(entry.name);
    if (cached !== undefined) return cached;
    const h = this.readAt(entry.localHeaderOffset, 30);
    if (h.readUInt32LE(0) !== LOCAL_SIG)
      throw new ZipError(`${this.path}: entry '${entry.name}' has a corrupt local header at offset ${entry.localHeaderOffset}`);
    const start = entry.localHeaderOffset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
    if (start + entry.compressedSize > this.fileSize) {
      throw new ZipError(
        `${this.path}: entry '${entry.name}' needs bytes up to ${start + entry.compressedSize} but the file has ${this.fileSize} (truncated?)`,
      );
    }
    this.dataStart.set(entry.name, start);
    return start;
  }

  entry(name: string): ZipEntry {
    const e = this.entries.get(name);
    if (!e) throw new ZipError(`${this.path}: archive has no entry '${name}'`);
    return e;
  }

  private checkDeflatedSizes(name: string, size: number, compressedSize: number): void {
    const { maxInflatedBytes, maxRatio } = this.limits;
    if (size > maxInflatedBytes) {
      throw new ZipError(
        `${this.path}: deflated entry '${name}' declares ${size} bytes, more than the ${maxInflatedBytes} a compressed entry may hold here (a zip bomb, or re-save with torch.save, which stores entries uncompressed)`,
      );
    }
    if (size > RATIO_FREE_BYTES && size > compressedSize * maxRatio) {
      throw new ZipError(
        `${this.path}: deflated entry '${name}' declares ${size} bytes from ${compressedSize} compressed, a ratio over ${maxRatio}:1 (a zip bomb?)`,
      );
    }
  }

  /** Inflates a deflated entry (at most its declared size), checking its length and CRC-32; keeps the last one. */
  private inflate(e: ZipEntry): Buffer {
    if (this.inflated?.name === e.name) return this.inflated.data;
    const raw = this.readAt(this.dataOffset(e), e.compressedSize);
    let out: Buffer;
    try {
      // maxOutputLength stops the inflater at the declared size + 1: a bomb costs no more than its declaration.
      out = inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size + 1) });
    } catch (err) {
      const m = (err as Error).message;
      if (/maxOutputLength|Cannot create a Buffer larger|too large/i.test(m) || (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new ZipError(`${this.path}: entry '${e.name}' inflates past its declared ${e.size} bytes (corrupt archive or a zip bomb)`);
      }
      throw new ZipError(`${this.path}: entry '${e.name}' does not inflate: ${m}`);
    }
    if (out.length !== e.size) throw new ZipError(`${this.path}: entry '${e.name}' inflates to ${out.length} bytes, but declares ${e.size} (corrupt archive)`);
    this.checkCrc(e, crc32(out));
    this.inflated = { name: e.name, data: out };
    return out;
  }

  private checkCrc(e: ZipEntry, crc: number): void {
    if (crc >>> 0 !== e.crc32) throw new ZipError(`${this.path}: entry '${e.name}' fails its CRC-32 check (corrupted file)`);
    this.verified.add(e.name);
  }

  /**
   * Checks an entry's CRC-32 once (later calls return at once): a stored entry is streamed in bounded
   * chunks, a deflated one is inflated (which checks it). Pass `whole` when the caller holds the
   * entire stored entry already.
   */
  verifyEntry(name: string, whole?: Buffer): void {
    if (this.verified.has(name)) return;
    const e = this.entry(name);
    if (e.method === 8) {
      this.inflate(e);
      return;
    }
    if (whole) {
      this.checkCrc(e, crc32(whole));
      return;
    }
    const start = this.dataOffset(e);
    const chunk = Buffer.allocUnsafeSlow(Math.max(1, Math.min(e.size, CRC_CHUNK)));
    let crc = 0;
    for (let at = 0; at < e.size; at += chunk.length) {
      const n = Math.min(chunk.length, e.size - at);
      crc = crc32(this.readAt(start + at, n, chunk).subarray(0, n), crc);
    }
    this.checkCrc(e, crc);
  }

  /**
   * Whole entry contents (inflated when deflated), CRC-checked; for small entries such as data.pkl.
   * `maxBytes` bounds what the entry may declare.
   */
  readEntry(name: string, maxBytes = this.limits.maxInflatedBytes): Buffer {
    const e = this.entry(name);
    if (e.size > maxBytes) throw new ZipError(`${this.path}: entry '${name}' declares ${e.size} bytes, more than the ${maxBytes} expected of it`);
    if (e.method === 8) return this.inflate(e);
    const raw = this.readAt(this.dataOffset(e), e.size);
    this.verifyEntry(name, raw);
    return raw;
  }

  /** `length` bytes of an entry starting at `offset` within it: read in place when stored, from the one inflation when deflated. */
  readEntryRange(name: string, offset: number, length: number, into?: Buffer): Buffer {
    const e = this.entry(name);
    if (offset < 0 || length < 0 || offset + length > e.size) {
      throw new ZipError(`${this.path}: entry '${name}' has ${e.size} bytes; cannot read [${offset}, ${offset + length})`);
    }
    if (e.method !== 0) {
      const all = this.inflate(e);
      const out = into ?? Buffer.allocUnsafe(length);
      all.copy(out, 0, offset, offset + length);
      return out;
    }
    return this.readAt(this.dataOffset(e) + offset, length, into);
  }
}
