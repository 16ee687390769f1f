/**
 * Raw little-endian tensor bytes → JS arrays, shared by the `.pth` and `.npz` readers (the safetensors reader has its
 * own copy). Floats come back as Float32Array (F16 / BF16 / F64 converted; F64 rounds to float32), integers as
 * Int32Array (I64 values outside int32 are an error naming the tensor), U8 / BOOL as Uint8Array.
 */
import type { SafeDtype, SafeTensor } from './safetensors';

export const DTYPE_BYTES: Record<SafeDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** IEEE half → float. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * Math.pow(2, e - 15) * (1 + f / 1024);
}

/** Decode `n` elements of `dtype` from `bytes` (exactly n·size bytes). `where` names the tensor in errors. */
export function decodeRaw(dtype: SafeDtype, bytes: Buffer, n: number, where: string): SafeTensor['data'] {
  const need = n * DTYPE_BYTES[dtype];
  if (bytes.length < need) throw new Error(`${where}: ${bytes.length} bytes for ${n} ${dtype} values (need ${need}; truncated)`);
  switch (dtype) {
    case 'F32': {
      const ab = new ArrayBuffer(n * 4); // aligned copy; little-endian hosts (x86-64, arm64)
      new Uint8Array(ab).set(bytes.subarray(0, n * 4));
      return new Float32Array(ab);
    }
    case 'F64': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = bytes.readDoubleLE(i * 8);
      return out;
    }
    case 'F16': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = f16ToF32(bytes.readUInt16LE(i * 2));
      return out;
    }
    case 'BF16': {
      const out = new Float32Array(n);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = bytes.readUInt16LE(i * 2) << 16;
      return out;
    }
    case 'I32': {
      const ab = new ArrayBuffer(n * 4);
      new Uint8Array(ab).set(bytes.subarray(0, n * 4));
      return new Int32Array(ab);
    }
    case 'I64': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = bytes.readBigInt64LE(i * 8);
        if (v > 2147483647n || v < -2147483648n) throw new Error(`${where}: int64 value ${v} at index ${i} does not fit int32`);
        out[i] = Number(v);
      }
      return out;
    }
    case 'I16': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = bytes.readInt16LE(i * 2);
      return out;
    }
    case 'I8': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = bytes.readInt8(i);
      return out;
    }
    case 'U8':
    case 'BOOL':
      return Uint8Array.from(bytes.subarray(0, n));
    default: {
      const never: never = dtype;
      throw new Error(`${where}: unsupported dtype ${String(never)}`);
    }
  }
}

/** Number of elements of a shape (1 for a scalar). */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, d) => a * d, 1);
}

/** Row-major strides of a shape. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/**
 * Copy a strided view (element `offset`, `shape`, `stride` in elements) out of `storage` into contiguous bytes.
 * The caller has checked that the view lies inside the storage.
 */
export function gatherStrided(storage: Buffer, elemBytes: number, offset: number, shape: readonly number[], stride: readonly number[]): Buffer {
  const n = numel(shape);
  const cs = contiguousStrides(shape);
  const contiguous = shape.every((d, i) => d <= 1 || stride[i] === cs[i]);
  if (contiguous) return storage.subarray(offset * elemBytes, (offset + n) * elemBytes);
  const out = Buffer.allocUnsafe(n * elemBytes);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let src = offset;
  for (let k = 0; k < n; k++) {
    storage.copy(out, k * elemBytes, src * elemBytes, (src + 1) * elemBytes);
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      src += stride[d];
      if (idx[d] < shape[d]) break;
      src -= stride[d] * shape[d];
      idx[d] = 0;
    }
  }
  return out;
}
