// Element types of torch storages and the conversions the converter needs: f16/bf16/f64 -> f32 and
// f32 -> bf16 with round-to-nearest-even (what torch's .to(torch.bfloat16) does), NaN kept quiet NaN.

export type TorchDType = 'f64' | 'f32' | 'f16' | 'bf16' | 'i64' | 'i32' | 'i16' | 'i8' | 'u8' | 'bool' | 'c64' | 'c128';

export const DTYPE_BYTES: Record<TorchDType, number> = {
  f64: 8,
  f32: 4,
  f16: 2,
  bf16: 2,
  i64: 8,
  i32: 4,
  i16: 2,
  i8: 1,
  u8: 1,
  bool: 1,
  c64: 8,
  c128: 16,
};

/** torch.<Name>Storage class names (what torch.save pickles for each storage) to element types. */
export const STORAGE_DTYPES: Record<string, TorchDType> = {
  DoubleStorage: 'f64',
  FloatStorage: 'f32',
  HalfStorage: 'f16',
  BFloat16Storage: 'bf16',
  LongStorage: 'i64',
  IntStorage: 'i32',
  ShortStorage: 'i16',
  CharStorage: 'i8',
  ByteStorage: 'u8',
  BoolStorage: 'bool',
  ComplexFloatStorage: 'c64',
  ComplexDoubleStorage: 'c128',
};

/** torch.<dtype> globals (pickled by name, e.g. in _rebuild_tensor_v3 or optimizer state). */
export const TORCH_DTYPE_NAMES: Record<string, TorchDType> = {
  float64: 'f64',
  double: 'f64',
  float32: 'f32',
  float: 'f32',
  float16: 'f16',
  half: 'f16',
  bfloat16: 'bf16',
  int64: 'i64',
  long: 'i64',
  int32: 'i32',
  int: 'i32',
  int16: 'i16',
  short: 'i16',
  int8: 'i8',
  uint8: 'u8',
  bool: 'bool',
  complex64: 'c64',
  complex128: 'c128',
  cfloat: 'c64',
  cdouble: 'c128',
};

export const isFloatDType = (d: TorchDType) => d === 'f64' || d === 'f32' || d === 'f16' || d === 'bf16';

const f16Table = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24;
    else if (exp === 31) t[h] = frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return t;
})();

/**
 * Widens elements of type `dtype` from `src` into `out` (f32): element i of `out` is source element
 * `indices[i]` (or i when `indices` is null). `src` must start at a multiple of the element size.
 */
export function toF32(dtype: TorchDType, src: Uint8Array, out: Float32Array, indices: Uint32Array | Float64Array | null): void {
  const n = out.length;
  const es = DTYPE_BYTES[dtype];
  if (src.byteOffset % es !== 0) throw new Error('toF32: unaligned source buffer');
  const count = Math.floor(src.byteLength / es);
  switch (dtype) {
    case 'f32': {
      const s = new Float32Array(src.buffer, src.byteOffset, count);
      if (!indices) out.set(s.subarray(0, n));
      else for (let i = 0; i < n; i++) out[i] = s[indices[i]];
      return;
    }
    case 'f16': {
      const s = new Uint16Array(src.buffer, src.byteOffset, count);
      if (!indices) for (let i = 0; i < n; i++) out[i] = f16Table[s[i]];
      else for (let i = 0; i < n; i++) out[i] = f16Table[s[indices[i]]];
      return;
    }
    case 'bf16': {
      const s = new Uint16Array(src.buffer, src.byteOffset, count);
      const u = new Uint32Array(out.buffer, out.byteOffset, n);
      if (!indices) for (let i = 0; i < n; i++) u[i] = s[i] << 16;
      else for (let i = 0; i < n; i++) u[i] = s[indices[i]] << 16;
      return;
    }
    case 'f64': {
      const s = new Float64Array(src.buffer, src.byteOffset, count);
      if (!indices) for (let i = 0; i < n; i++) out[i] = s[i];
      else for (let i = 0; i < n; i++) out[i] = s[indices[i]];
      return;
    }
    default:
      throw new Error(`cannot convert ${dtype} elements to f32`);
  }
}

/** f32 -> bf16 bits with round-to-nearest-even; NaN becomes a quiet NaN with the same sign. */
export function f32ToBf16(src: Float32Array, out: Uint16Array): void {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    if ((x & 0x7fffffff) > 0x7f800000) out[i] = (x >>> 16) | 0x0040;
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
}
