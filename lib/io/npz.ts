/**
 * numpy `.npy` / `.npz` reading (numpy/lib/format.py: magic `\x93NUMPY`, version, header length, a Python dict literal
 * `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`, then the raw array; `.npz` = a ZIP of `<name>.npy`,
 * stored by `np.savez` or deflated by `np.savez_compressed`). Used for Google's big_vision / vit_jax checkpoints
 * (AugReg ViT `.npz`, keys like `Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel`).
 *
 * The header is parsed as data (a fixed grammar, never evaluated). Object arrays (`|O`, i.e. pickles) are refused, as
 * are big-endian and complex dtypes; every array's byte count is checked against its shape (errors name the array).
 */
import { ZipReader, fileSource } from './zip';
import { DTYPE_BYTES, decodeRaw, numel } from './dtype';
import type { SafeDtype, SafeFile, SafeTensor } from './safetensors';

const DESCR: Record<string, SafeDtype> = {
  f4: 'F32', f8: 'F64', f2: 'F16', i8: 'I64', i4: 'I32', i2: 'I16', i1: 'I8', u1: 'U8', b1: 'BOOL',
};

/** Parse one `.npy` buffer. `where` names the array in errors. */
export function decodeNpy(buf: Buffer, where: string): SafeTensor {
  if (buf.length < 10 || buf[0] !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(`${where}: not a .npy array (bad magic)`);
  const major = buf[6];
  let hlen: number;
  let start: number;
  if (major === 1) {
    hlen = buf.readUInt16LE(8);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) throw new Error(`${where}: truncated .npy header`);
    hlen = buf.readUInt32LE(8);
    start = 12;
  } else {
    throw new Error(`${where}: unsupported .npy version ${major}`);
  }
  if (start + hlen > buf.length) throw new Error(`${where}: .npy header runs past the data (truncated)`);
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', start, start + hlen);
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeStr = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeStr === undefined) throw new Error(`${where}: .npy header is not understood: ${header.trim()}`);
  if (descr.includes('O')) throw new Error(`${where}: object array (pickled Python objects) refused — loading never runs code`);
  const m = /^([<>|=])([a-z])(\d+)$/.exec(descr);
  const code = m ? `${m[2]}${m[3]}` : '';
  if (!m || !(code in DESCR)) throw new Error(`${where}: dtype '${descr}' is not supported (supported: ${Object.keys(DESCR).join(', ')})`);
  if (m[1] === '>' && DESCR[code] !== 'U8' && DESCR[code] !== 'I8' && DESCR[code] !== 'BOOL') throw new Error(`${where}: big-endian dtype '${descr}' is not supported`);
  const dims = shapeStr.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (!dims.every((d) => /^\d+L?$/.test(d))) throw new Error(`${where}: bad shape (${shapeStr})`);
  const shape = dims.map((d) => parseInt(d, 10));
  const dtype = DESCR[code];
  const n = numel(shape);
  const nb = n * DTYPE_BYTES[dtype];
  const dataStart = start + hlen;
  if (buf.length - dataStart !== nb) {
    throw new Error(`${where}: ${buf.length - dataStart} data bytes for shape [${shape}] ${descr} (expected ${nb}; truncated or mismatched)`);
  }
  const flat = decodeRaw(dtype, buf.subarray(dataStart), n, where);
  if (fortran === 'False' || shape.length < 2) return { dtype, shape, data: flat };
  // column-major → row-major
  const out = new (flat.constructor as { new (n: number): typeof flat })(n);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  const fstride = new Array<number>(rank);
  let acc = 1;
  for (let d = 0; d < rank; d++) {
    fstride[d] = acc;
    acc *= shape[d];
  }
  for (let k = 0; k < n; k++) {
    let src = 0;
    for (let d = 0; d < rank; d++) src += idx[d] * fstride[d];
    out[k] = flat[src];
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return { dtype, shape, data: out };
}

/** Read a `.npz` archive: arrays by name (without `.npy`), all validated. */
export function readNpz(file: string): SafeFile {
  const src = fileSource(file);
  try {
    const zip = new ZipReader(src, file);
    const tensors = new Map<string, SafeTensor>();
    for (const e of zip.entries) {
      if (!e.name.endsWith('.npy')) throw new Error(`${file}: entry '${e.name}' is not a .npy array`);
      const key = e.name.slice(0, -4);
      let raw: Buffer;
      try {
        raw = zip.read(e.name);
      } catch (err) {
        throw new Error(`${file}: array '${key}': ${(err as Error).message.replace(`${file}: `, '')}`);
      }
      tensors.set(key, decodeNpy(raw, `${file}: array '${key}'`));
    }
    if (zip.truncated) throw new Error(`${file}: the archive has lost its central directory (truncated file); the last complete array is '${[...tensors.keys()].pop() ?? 'none'}'`);
    return { tensors, metadata: {} };
  } finally {
    src.close();
  }
}
