/**
 * A small read-only ZIP reader (PKWARE APPNOTE 6.3: end of central directory, zip64 records, central directory, local
 * headers; stored and deflated entries) for the two archive formats the kit reads: `torch.save` files (PyTorch's
 * `PyTorchStreamWriter`, stored entries aligned to 64 bytes, zip64 past 4 GiB) and numpy `.npz` (`np.savez`, and
 * deflated `np.savez_compressed`).
 *
 * Entries are read on demand from an open file descriptor, so a multi-GiB checkpoint is never held in memory whole.
 * Everything is validated before it is used: directory bounds, local-header signature and name, data inside the file,
 * sizes, and the CRC-32 of every entry read (a truncated or corrupted entry is an error naming the file and the entry).
 */
import * as fs from 'fs';
import * as zlib from 'zlib';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflated */
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  /** Offset of the local file header. */
  headerOffset: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const MAX_ENTRIES = 1_000_000;
const DESCRIPTOR_SIG = Buffer.from([0x50, 0x4b, 0x07, 0x08]);

/** CRC-32 (IEEE) of a buffer; zlib.crc32 where Node has it (≥ 20.15), a table otherwise. */
let crcTable: Uint32Array | null = null;
function crc32(buf: Uint8Array): number {
  const z = zlib as unknown as { crc32?: (b: Uint8Array) => number };
  if (typeof z.crc32 === 'function') return z.crc32(buf) >>> 0;
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = crcTable[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Where bytes come from: an open file or an in-memory buffer. */
export interface ByteSource {
  readonly size: number;
  /** Exactly `length` bytes at `position` (throws when the source is shorter). */
  read(position: number, length: number): Buffer;
  close(): void;
}

/** A byte source over an open file (positional reads, nothing cached). */
export function fileSource(file: string): ByteSource {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new Error(`${file}: cannot open (${(e as Error).message})`);
  }
  const size = fs.fstatSync(fd).size;
  let open = true;
  return {
    size,
    read(position: number, length: number): Buffer {
      if (!open) throw new Error(`${file}: read after close`);
      if (position < 0 || length < 0 || position + length > size) {
        throw new Error(`${file}: read of ${length} bytes at ${position} is outside the file (${size} bytes; truncated?)`);
      }
      const out = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const n = fs.readSync(fd, out, done, Math.min(length - done, 1 << 30), position + done);
        if (n <= 0) throw new Error(`${file}: unexpected end of file at ${position + done}`);
        done += n;
      }
      return out;
    },
    close(): void {
      if (open) fs.closeSync(fd);
      open = false;
    },
  };
}

function u64(b: Buffer, at: number, what: string): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${what}: 64-bit value ${v} is too large`);
  return Number(v);
}

/** Is the start of this source a ZIP local header (or an empty archive)? */
export function looksLikeZip(src: ByteSource): boolean {
  if (src.size < 4) return false;
  const sig = src.read(0, 4).readUInt32LE(0);
  return sig === SIG_LOCAL || sig === SIG_EOCD;
}

/** An opened archive: its entries (central directory order) and validated reads. */
export class ZipReader {
  readonly entries: ZipEntry[];
  /** True when the central directory was missing (a cut file) and the entries were found by walking local headers. */
  readonly truncated: boolean;
  private readonly byName = new Map<string, ZipEntry>();

  constructor(readonly src: ByteSource, readonly name: string) {
    let entries: ZipEntry[];
    let truncated = false;
    try {
      entries = this.readDirectory();
    } catch (e) {
      // A cut archive loses its central directory (it is at the end). Recover the entries that are still there from
      // their local headers, so that a reader can name what is missing; every read is still range-checked.
      const found = this.scanLocalHeaders();
      if (found.length === 0) throw e;
      entries = found;
      truncated = true;
    }
    this.entries = entries;
    this.truncated = truncated;
    for (const e of this.entries) {
      if (this.byName.has(e.name)) throw new Error(`${name}: the archive lists '${e.name}' twice`);
      this.byName.set(e.name, e);
    }
  }

  private readDirectory(): ZipEntry[] {
    const { src, name } = this;
    const tailLen = Math.min(src.size, 22 + 65535);
    if (tailLen < 22) throw new Error(`${name}: ${src.size} bytes is too short for a ZIP archive (truncated?)`);
    const tail = src.read(src.size - tailLen, tailLen);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === SIG_EOCD && i + 22 + tail.readUInt16LE(i + 20) <= tailLen) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw new Error(`${name}: no ZIP end-of-central-directory record (truncated or not a ZIP archive)`);
    let count = tail.readUInt16LE(eocd + 10);
    let cdSize = tail.readUInt32LE(eocd + 12);
    let cdOffset = tail.readUInt32LE(eocd + 16);
    const eocdPos = src.size - tailLen + eocd;
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      if (eocdPos < 20) throw new Error(`${name}: zip64 archive without a zip64 locator`);
      const loc = src.read(eocdPos - 20, 20);
      if (loc.readUInt32LE(0) !== SIG_ZIP64_LOCATOR) throw new Error(`${name}: zip64 archive without a zip64 locator`);
      const z64 = u64(loc, 8, name);
      const rec = src.read(z64, 56);
      if (rec.readUInt32LE(0) !== SIG_ZIP64_EOCD) throw new Error(`${name}: bad zip64 end-of-central-directory record`);
      count = u64(rec, 32, name);
      cdSize = u64(rec, 40, name);
      cdOffset = u64(rec, 48, name);
    }
    if (count > MAX_ENTRIES) throw new Error(`${name}: ${count} entries (more than ${MAX_ENTRIES})`);
    if (cdOffset + cdSize > src.size) {
      throw new Error(`${name}: central directory [${cdOffset}, ${cdOffset + cdSize}) lies outside the file (${src.size} bytes; truncated?)`);
    }
    const cd = src.read(cdOffset, cdSize);
    const out: ZipEntry[] = [];
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== SIG_CENTRAL) throw new Error(`${name}: central directory entry ${i} is damaged`);
      const flags = cd.readUInt16LE(p + 8);
      const method = cd.readUInt16LE(p + 10);
      const crc = cd.readUInt32LE(p + 16);
      let csize = cd.readUInt32LE(p + 20);
      let size = cd.readUInt32LE(p + 24);
      const nlen = cd.readUInt16LE(p + 28);
      const xlen = cd.readUInt16LE(p + 30);
      const clen = cd.readUInt16LE(p + 32);
      let off = cd.readUInt32LE(p + 42);
      if (p + 46 + nlen + xlen + clen > cd.length) throw new Error(`${name}: central directory entry ${i} runs past the directory`);
      const entryName = cd.toString('utf8', p + 46, p + 46 + nlen);
      if (flags & 1) throw new Error(`${name}: entry '${entryName}' is encrypted`);
      // zip64 extended information: only the fields that are 0xFFFFFFFF in the header, in this order
      let x = p + 46 + nlen;
      const xend = x + xlen;
      while (x + 4 <= xend) {
        const id = cd.readUInt16LE(x);
        const len = cd.readUInt16LE(x + 2);
        if (id === 0x0001) {
          let q = x + 4;
          const take = (): number => {
            if (q + 8 > x + 4 + len) throw new Error(`${name}: entry '${entryName}' has a short zip64 extra field`);
            const v = u64(cd, q, name);
            q += 8;
            return v;
          };
          if (size === 0xffffffff) size = take();
          if (csize === 0xffffffff) csize = take();
          if (off === 0xffffffff) off = take();
        }
        x += 4 + len;
      }
      if (method !== 0 && method !== 8) throw new Error(`${name}: entry '${entryName}' uses compression method ${method} (only stored and deflate are read)`);
      if (method === 0 && csize !== size) throw new Error(`${name}: stored entry '${entryName}' has compressed size ${csize} ≠ size ${size}`);
      out.push({ name: entryName, method, crc32: crc, compressedSize: csize, size, headerOffset: off });
      p += 46 + nlen + xlen + clen;
    }
    return out;
  }

  /** Entries from their local headers (sizes from the header or its zip64 extra; stops at a data descriptor). */
  private scanLocalHeaders(): ZipEntry[] {
    const { src } = this;
    const out: ZipEntry[] = [];
    let pos = 0;
    while (pos + 30 <= src.size && out.length < MAX_ENTRIES) {
      const h = src.read(pos, 30);
      if (h.readUInt32LE(0) !== SIG_LOCAL) break;
      const flags = h.readUInt16LE(6);
      const method = h.readUInt16LE(8);
      let csize = h.readUInt32LE(18);
      let size = h.readUInt32LE(22);
      const nlen = h.readUInt16LE(26);
      const xlen = h.readUInt16LE(28);
      if (pos + 30 + nlen + xlen > src.size) break; // header cut
      const name = src.read(pos + 30, nlen).toString('utf8');
      const extra = src.read(pos + 30 + nlen, xlen);
      for (let x = 0; x + 4 <= extra.length; ) {
        const id = extra.readUInt16LE(x);
        const len = extra.readUInt16LE(x + 2);
        if (id === 0x0001) {
          let q = x + 4;
          if (size === 0xffffffff && q + 8 <= x + 4 + len) (size = u64(extra, q, this.name)), (q += 8);
          if (csize === 0xffffffff && q + 8 <= x + 4 + len) csize = u64(extra, q, this.name);
        }
        x += 4 + len;
      }
      let crc = h.readUInt32LE(14);
      const dataStart = pos + 30 + nlen + xlen;
      if (flags & 8) {
        // sizes follow the data in a descriptor (PyTorchStreamWriter writes them so): find the first descriptor
        // signature whose recorded size equals its distance from the data start
        const d = this.findDescriptor(dataStart);
        if (!d) break; // the entry's data runs past the cut
        [crc, csize, size] = [d.crc, d.csize, d.size];
        out.push({ name, method, crc32: crc, compressedSize: csize, size, headerOffset: pos });
        pos = d.end;
        continue;
      }
      out.push({ name, method, crc32: crc, compressedSize: csize, size, headerOffset: pos });
      pos = dataStart + csize;
    }
    return out;
  }

  private findDescriptor(dataStart: number): { crc: number; csize: number; size: number; end: number } | null {
    const { src } = this;
    const CHUNK = 1 << 24;
    for (let at = dataStart; at < src.size; at += CHUNK - 24) {
      const buf = src.read(at, Math.min(CHUNK, src.size - at));
      for (let i = buf.indexOf(DESCRIPTOR_SIG); i >= 0; i = buf.indexOf(DESCRIPTOR_SIG, i + 1)) {
        const q = at + i;
        const dist = q - dataStart;
        if (i + 16 <= buf.length && buf.readUInt32LE(i + 8) === dist) {
          return { crc: buf.readUInt32LE(i + 4), csize: dist, size: buf.readUInt32LE(i + 12), end: q + 16 };
        }
        if (i + 24 <= buf.length && buf.readBigUInt64LE(i + 8) === BigInt(dist)) {
          return { crc: buf.readUInt32LE(i + 4), csize: dist, size: Number(buf.readBigUInt64LE(i + 16)), end: q + 24 };
        }
      }
      if (at + CHUNK >= src.size) break;
    }
    return null;
  }

  has(entry: string): boolean {
    return this.byName.has(entry);
  }

  get(entry: string): ZipEntry | undefined {
    return this.byName.get(entry);
  }

  /** Offset of an entry's data, after checking its local header. */
  dataOffset(e: ZipEntry): number {
    const { src, name } = this;
    if (e.headerOffset + 30 > src.size) throw new Error(`${name}: entry '${e.name}' starts past the end of the file (truncated?)`);
    const h = src.read(e.headerOffset, 30);
    if (h.readUInt32LE(0) !== SIG_LOCAL) throw new Error(`${name}: entry '${e.name}' has no local header at ${e.headerOffset}`);
    const nlen = h.readUInt16LE(26);
    const xlen = h.readUInt16LE(28);
    const local = src.read(e.headerOffset + 30, nlen).toString('utf8');
    if (local !== e.name) throw new Error(`${name}: entry '${e.name}' has local name '${local}'`);
    const start = e.headerOffset + 30 + nlen + xlen;
    if (start + e.compressedSize > src.size) {
      throw new Error(`${name}: entry '${e.name}' needs bytes [${start}, ${start + e.compressedSize}) but the file has ${src.size} (truncated)`);
    }
    return start;
  }

  /** The whole (inflated) content of an entry, CRC-checked. */
  read(entry: string, opts: { checkCrc?: boolean } = {}): Buffer {
    const e = this.byName.get(entry);
    if (!e) throw new Error(`${this.name}: no entry '${entry}' in the archive`);
    const raw = this.src.read(this.dataOffset(e), e.compressedSize);
    let data: Buffer;
    if (e.method === 8) {
      try {
        data = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
      } catch (err) {
        throw new Error(`${this.name}: entry '${e.name}' does not inflate (${(err as Error).message})`);
      }
    } else {
      data = raw;
    }
    if (data.length !== e.size) throw new Error(`${this.name}: entry '${e.name}' has ${data.length} bytes, the directory says ${e.size}`);
    if ((opts.checkCrc ?? true) && crc32(data) !== e.crc32) {
      throw new Error(`${this.name}: entry '${e.name}' fails its CRC-32 check (corrupted file)`);
    }
    return data;
  }
}
