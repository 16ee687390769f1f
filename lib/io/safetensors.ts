/**
 * safetensors reading and writing (https://github.com/huggingface/safetensors format):
 * 8-byte little-endian header length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]},
 * "__metadata__": {string: string}}`, then the raw little-endian tensor bytes. Data only: loading never executes code.
 *
 * Reading validates everything before returning (header bounds, JSON, dtype, byte sizes, offsets inside the file,
 * no overlaps) and names the file and tensor in every error. Writing goes through `writeFileAtomic` (io/atomic.ts):
 * checked writes to a temporary file, fsync, rename; a full disk or a kill never leaves a half-written file.
 */
import * as fs from 'fs';
import { writeFileAtomic } from './atomic';

export { writeFileAtomic };

export type SafeDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const BYTES: Record<SafeDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** A decoded tensor. Floats come back as Float32Array (F16/BF16/F64 converted), integers as Int32Array. */
export interface SafeTensor {
  dtype: SafeDtype;
  shape: number[];
  data: Float32Array | Int32Array | Uint8Array;
}

export interface SafeFile {
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * Math.pow(2, e - 15) * (1 + f / 1024);
}

function decodeData(dtype: SafeDtype, bytes: Buffer, n: number, where: string): SafeTensor['data'] {
  switch (dtype) {
    case 'F32': {
      const ab = new ArrayBuffer(n * 4); // copy into an aligned buffer; little-endian host (x86-64, arm64)
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

/** Parse a safetensors buffer. `source` names the file in errors. */
export function decodeSafetensors(buf: Buffer, source = '<buffer>'): SafeFile {
  if (buf.length < 8) throw new Error(`${source}: not a safetensors file (${buf.length} bytes, need at least 8)`);
  const n = buf.readBigUInt64LE(0);
  if (n > BigInt(buf.length - 8)) {
    throw new Error(`${source}: header length ${n} exceeds the file size ${buf.length} (truncated or not safetensors)`);
  }
  const headerLen = Number(n);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8'));
  } catch (e) {
    throw new Error(`${source}: header is not valid JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw new Error(`${source}: header is not a JSON object`);
  const dataStart = 8 + headerLen;
  const dataLen = buf.length - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, SafeTensor>();
  const spans: Array<[number, number, string]> = [];
  for (const [name, rawInfo] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (rawInfo === null || typeof rawInfo !== 'object' || Array.isArray(rawInfo)) {
        throw new Error(`${source}: __metadata__ must be an object of strings, got ${JSON.stringify(rawInfo)}`);
      }
      for (const [k, v] of Object.entries(rawInfo as Record<string, unknown>)) {
        if (typeof v !== 'string') throw new Error(`${source}: __metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const where = `${source}: tensor '${name}'`;
    const info = rawInfo as { dtype?: string; shape?: unknown; data_offsets?: unknown };
    if (!info || typeof info.dtype !== 'string' || !(info.dtype in BYTES)) {
      throw new Error(`${where}: unsupported or missing dtype ${JSON.stringify(info?.dtype)}; supported: ${Object.keys(BYTES).join(', ')}`);
    }
    const dtype = info.dtype as SafeDtype;
    if (!Array.isArray(info.shape) || !info.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new Error(`${where}: bad shape ${JSON.stringify(info.shape)}`);
    }
    const shape = info.shape as number[];
    const offs = info.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && o >= 0) || offs[0] > offs[1]) {
      throw new Error(`${where}: bad data_offsets ${JSON.stringify(offs)}`);
    }
    const [b, e] = offs as [number, number];
    const count = shape.reduce((a, d) => a * d, 1);
    if (e - b !== count * BYTES[dtype]) {
      throw new Error(`${where}: ${e - b} bytes for shape [${shape}] ${dtype} (expected ${count * BYTES[dtype]})`);
    }
    if (e > dataLen) {
      throw new Error(`${where}: data ends at byte ${e} but the file has only ${dataLen} data bytes (truncated file)`);
    }
    spans.push([b, e, name]);
    tensors.set(name, { dtype, shape, data: decodeData(dtype, buf.subarray(dataStart + b, dataStart + e), count, where) });
  }
  // as the reference implementation (safetensors' Metadata::validate): the tensors tile the data section exactly
  spans.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let end = 0;
  for (let i = 0; i < spans.length; i++) {
    const [b, e, name] = spans[i];
    if (b < end) throw new Error(`${source}: tensors '${spans[i - 1][2]}' and '${name}' overlap`);
    if (b > end) throw new Error(`${source}: data bytes ${end}–${b} belong to no tensor (before '${name}'); not a valid safetensors file`);
    end = e;
  }
  if (end !== dataLen) {
    throw new Error(`${source}: ${dataLen - end} trailing data bytes after the last tensor (data section ${dataLen} bytes, tensors end at ${end}); not a valid safetensors file`);
  }
  return { tensors, metadata };
}

/** Read and validate a safetensors file. */
export function readSafetensors(file: string): SafeFile {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`${file}: cannot read (${(e as Error).message})`);
  }
  return decodeSafetensors(buf, file);
}

export interface TensorToWrite {
  dtype: 'F32' | 'I32';
  shape: number[];
  data: Float32Array | Int32Array;
}

/** Encode tensors (in the given order) and string metadata into a safetensors buffer. */
export function encodeSafetensors(tensors: ReadonlyMap<string, TensorToWrite>, metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of tensors) {
    const count = t.shape.reduce((a, d) => a * d, 1);
    if (count !== t.data.length) throw new Error(`encodeSafetensors: '${name}' has ${t.data.length} values for shape [${t.shape}]`);
    if ((t.dtype === 'F32') !== t.data instanceof Float32Array) throw new Error(`encodeSafetensors: '${name}' data does not match dtype ${t.dtype}`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + count * 4] };
    offset += count * 4;
  }
  let json = JSON.stringify(header);
  const pad = (8 - (Buffer.byteLength(json) % 8)) % 8; // align the data to 8 bytes
  json += ' '.repeat(pad);
  const hbuf = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + hbuf.length + offset);
  out.writeBigUInt64LE(BigInt(hbuf.length), 0);
  hbuf.copy(out, 8);
  let pos = 8 + hbuf.length;
  for (const t of tensors.values()) {
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength); // little-endian hosts (x86, arm)
    bytes.copy(out, pos);
    pos += bytes.length;
  }
  return out;
}

/** Write a safetensors file atomically. */
export function writeSafetensors(file: string, tensors: ReadonlyMap<string, TensorToWrite>, metadata: Record<string, string> = {}): void {
  writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}
