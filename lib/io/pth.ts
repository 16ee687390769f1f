/**
 * PyTorch `torch.save` checkpoints (`.pth` / `.pt` / `.bin`) read as data, never as code.
 *
 * Formats (torch/serialization.py, `_save` / `_legacy_save`, torch 1.6 – 2.x):
 * - **zip** (default since 1.6): an archive `<name>/data.pkl` (the object graph, pickle protocol 2) plus one entry
 *   `<name>/data/<key>` per storage holding its raw little-endian bytes; tensors are `persistent_load` ids
 *   `('storage', <StorageType>, key, location, numel)` wrapped by `torch._utils._rebuild_tensor_v2(storage, offset,
 *   size, stride, requires_grad, hooks[, metadata])`.
 * - **legacy** (`_use_new_zipfile_serialization=False`): pickles back to back — magic number, protocol version
 *   1001, sys info, the object graph (ids `('storage', type, root_key, location, numel, view_metadata)`), the sorted
 *   list of storage keys — then for each key an int64 element count followed by the storage bytes.
 * The pre-1.0 tar format is refused with a message (torch ≥ 1.0 cannot write it; re-save with a current torch).
 *
 * The pickle is interpreted by lib/io/pickle.ts with a table of allowed globals: tensor rebuild records, storage types,
 * dtypes, `torch.Size`, `torch.device`, OrderedDict. Anything else (a model class, `argparse.Namespace`, a numpy
 * scalar, `posix.system`) is refused naming the global; `allow` lets plain-data classes through as inert records
 * (nothing is ever called: they become `PyObject`s holding their constructor arguments and state).
 *
 * Dtypes: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL. Non-contiguous tensors (any strides) and tensors sharing
 * a storage are gathered exactly. Every tensor is validated against its storage before any data is returned: a
 * truncated or mismatched file is an error naming the tensor, its shape and dtype, and the storage.
 */
import { ByteSource, ZipReader, fileSource, looksLikeZip } from './zip';
import { BASE_GLOBALS, GlobalSpec, PyDict, PyGlobal, PyObject, PyTuple, pyTypeName, unpickle } from './pickle';
import { DTYPE_BYTES, decodeRaw, gatherStrided, numel } from './dtype';
import type { SafeDtype, SafeFile, SafeTensor } from './safetensors';

/** Storage classes → element dtype (torch/storage.py `_dtype_to_storage_type_map`). */
const STORAGE_DTYPES: Record<string, SafeDtype> = {
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  DoubleStorage: 'F64',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
  UntypedStorage: 'U8',
};
const UNSUPPORTED_STORAGES = ['ComplexFloatStorage', 'ComplexDoubleStorage', 'QInt8Storage', 'QUInt8Storage', 'QInt32Storage', 'QUInt4x2Storage', 'QUInt2x4Storage'];
const TORCH_DTYPES: Record<string, SafeDtype> = {
  float32: 'F32', float: 'F32', float16: 'F16', half: 'F16', bfloat16: 'BF16', float64: 'F64', double: 'F64',
  int64: 'I64', long: 'I64', int32: 'I32', int: 'I32', int16: 'I16', short: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL',
};

/** Modules that can never be allowed (as torch's weights-only unpickler blocks them too). */
const BLOCKED_MODULES = /^(os|posix|nt|sys|subprocess|builtins|shutil|importlib|runpy|pty|socket|ctypes|pickle|marshal|code|codeop|webbrowser)(\.|$)/;

/** A storage named by a persistent id. */
export class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: SafeDtype,
    /** elements */
    readonly numel: number,
    readonly location: string,
    /** legacy views: the root storage and the element offset into it */
    readonly view: { root: StorageRef; offset: number } | null = null,
  ) {}
}

/** A tensor record: where its elements are, not the elements. */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    /** element offset into the storage */
    readonly offset: number,
    readonly shape: number[],
    /** element strides */
    readonly stride: number[],
    readonly requiresGrad: boolean,
    public isParameter = false,
  ) {}
  get dtype(): SafeDtype {
    return this.storage.dtype;
  }
}

const intList = (v: unknown, what: string, at: string): number[] => {
  const items = v instanceof PyTuple ? v.items : Array.isArray(v) ? v : null;
  if (!items || !items.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) {
    throw new Error(`${at}: tensor ${what} ${pyTypeName(v)} is not a tuple of non-negative integers`);
  }
  return items as number[];
};

function rebuildTensor(args: unknown[], at: string): TensorRef {
  const [storage, offset, size, stride, requiresGrad] = args;
  if (!(storage instanceof StorageRef)) throw new Error(`${at}: tensor storage is ${pyTypeName(storage)}`);
  if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < 0) throw new Error(`${at}: bad storage offset ${String(offset)}`);
  const shape = intList(size, 'size', at);
  const strides = intList(stride, 'stride', at);
  if (shape.length !== strides.length) throw new Error(`${at}: size [${shape}] and stride [${strides}] differ in rank`);
  return new TensorRef(storage, offset, shape, strides, requiresGrad === true);
}

/** The globals a torch checkpoint may name (data constructors only). */
export const TORCH_GLOBALS: Readonly<Record<string, GlobalSpec>> = (() => {
  const g: Record<string, GlobalSpec> = { ...BASE_GLOBALS };
  g['torch._utils._rebuild_tensor_v2'] = { reduce: (a, at) => rebuildTensor(a, at) };
  g['torch._utils._rebuild_tensor'] = { reduce: (a, at) => rebuildTensor(a, at) };
  const param = (a: unknown[], at: string): TensorRef => {
    const t = a[0];
    if (!(t instanceof TensorRef)) throw new Error(`${at}: Parameter data is ${pyTypeName(t)}`);
    t.isParameter = true;
    return t;
  };
  g['torch._utils._rebuild_parameter'] = { reduce: param };
  g['torch._utils._rebuild_parameter_with_state'] = { reduce: param };
  g['torch._tensor._rebuild_from_type_v2'] = {
    reduce: (a, at) => {
      const [fn, newType, args] = a;
      if (!(fn instanceof PyGlobal) || !fn.spec.reduce) throw new Error(`${at}: rebuild function is ${pyTypeName(fn)}`);
      if (!(newType instanceof PyGlobal) || !['torch.Tensor', 'torch.nn.parameter.Parameter'].includes(newType.path)) {
        throw new Error(`${at}: tensor subclass ${pyTypeName(newType)} is not supported`);
      }
      if (!(args instanceof PyTuple)) throw new Error(`${at}: rebuild arguments are ${pyTypeName(args)}`);
      return fn.spec.reduce(args.items, at);
    },
  };
  g['torch.Tensor'] = { value: 'torch.Tensor' };
  g['torch.nn.parameter.Parameter'] = { value: 'torch.nn.parameter.Parameter' };
  g['torch.Size'] = {
    reduce: (a, at) => {
      const items = a[0] instanceof PyTuple ? a[0].items : Array.isArray(a[0]) ? a[0] : null;
      if (!items) throw new Error(`${at}: torch.Size(...) of ${pyTypeName(a[0])}`);
      return new PyTuple(items);
    },
  };
  g['torch.device'] = { reduce: (a) => a.map(String).join(':') };
  g['torch.serialization._get_layout'] = { reduce: (a) => String(a[0]) };
  for (const [name, dt] of Object.entries(STORAGE_DTYPES)) g[`torch.${name}`] = { value: dt };
  for (const [name, dt] of Object.entries(TORCH_DTYPES)) g[`torch.${name}`] = { value: `dtype:${dt}` };
  return Object.freeze(g);
})();

/** Inert record spec for an allowed plain-data class (constructor args and state are kept, nothing is called). */
function inertSpec(path: string): GlobalSpec {
  return {
    newobj: (args) => new PyObject(path, args),
    reduce: (args) => new PyObject(path, args),
    build: (obj, state) => {
      if (obj instanceof PyObject) obj.state = state;
      return obj;
    },
  };
}

/** numpy scalars (`numpy.core.multiarray.scalar(dtype, bytes)`) and dtypes decoded as data (opt-in: 'numpy'). */
function numpyGlobals(): Record<string, GlobalSpec> {
  const NP: Record<string, [number, (b: Buffer) => number | bigint | boolean]> = {
    f8: [8, (b) => b.readDoubleLE(0)], f4: [4, (b) => b.readFloatLE(0)], f2: [2, (b) => b.readUInt16LE(0)],
    i8: [8, (b) => b.readBigInt64LE(0)], i4: [4, (b) => b.readInt32LE(0)], i2: [2, (b) => b.readInt16LE(0)], i1: [1, (b) => b.readInt8(0)],
    u8: [8, (b) => b.readBigUInt64LE(0)], u4: [4, (b) => b.readUInt32LE(0)], u2: [2, (b) => b.readUInt16LE(0)], u1: [1, (b) => b.readUInt8(0)],
    b1: [1, (b) => b[0] !== 0],
  };
  const dtype: GlobalSpec = {
    reduce: (a, at) => {
      const code = String(a[0]).replace(/^[<>=|]/, '');
      if (!(code in NP)) throw new Error(`${at}: numpy dtype '${String(a[0])}' is not decoded`);
      return new PyObject('numpy.dtype', [code]);
    },
    build: (obj, state) => {
      if (obj instanceof PyObject) obj.state = state;
      return obj;
    },
  };
  const scalar: GlobalSpec = {
    reduce: (a, at) => {
      const [dt, raw] = a;
      if (!(dt instanceof PyObject) || dt.cls !== 'numpy.dtype' || !(raw instanceof Uint8Array)) throw new Error(`${at}: numpy scalar of ${pyTypeName(dt)}`);
      const code = String(dt.args[0]);
      const [n, read] = NP[code];
      const st = dt.state instanceof PyTuple ? dt.state.items : [];
      if (st[1] === '>') throw new Error(`${at}: big-endian numpy scalar`);
      if (raw.length !== n) throw new Error(`${at}: numpy ${code} scalar with ${raw.length} bytes`);
      const v = read(Buffer.from(raw));
      return code === 'f2' ? decodeRaw('F16', Buffer.from(raw), 1, at)[0] : typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
    },
  };
  return {
    'numpy.dtype': dtype,
    'numpy.core.multiarray.scalar': scalar,
    'numpy._core.multiarray.scalar': scalar,
  };
}

export interface PthOptions {
  /**
   * Plain-data classes to let through as inert records (`PyObject`s; nothing is called), e.g. `['argparse.Namespace']`
   * for training checkpoints that store their arguments; `'numpy'` decodes numpy scalars (metrics) as numbers.
   */
  allow?: readonly string[];
  /** Verify each zip entry's CRC-32 when read (default true). */
  checkCrc?: boolean;
}

function globalsFor(opts: PthOptions): Record<string, GlobalSpec> {
  const g: Record<string, GlobalSpec> = { ...TORCH_GLOBALS };
  for (const name of opts.allow ?? []) {
    if (name === 'numpy') {
      Object.assign(g, numpyGlobals());
      continue;
    }
    if (!/^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$/.test(name)) throw new Error(`allow: '${name}' is not a 'module.Class' name`);
    if (BLOCKED_MODULES.test(name)) throw new Error(`allow: '${name}' can never be allowed (module blocked)`);
    if (!(name in g)) g[name] = inertSpec(name);
  }
  return g;
}

const HINT = (path: string): string =>
  BLOCKED_MODULES.test(path)
    ? `module '${path.split('.')[0]}' can run commands and is never allowed: this file tries to execute code when loaded by torch.load`
    : `if it is plain data, pass allow: ['${path}'] to read it as an inert record (nothing is called); allow: ['numpy'] decodes numpy scalars`;

class TruncatedPickle extends Error {}

/** An opened checkpoint: the object graph (tensors as `TensorRef`s) and validated reads of tensor data. */
export class TorchCheckpoint {
  /** The unpickled object (dicts are `PyDict`, tensors `TensorRef`). */
  readonly root: unknown;
  readonly format: 'zip' | 'legacy';
  private readonly zip: ZipReader | null;
  private readonly prefix: string;
  private readonly checkCrc: boolean;
  /** legacy: byte range of each storage */
  private readonly legacyData = new Map<string, { offset: number; nbytes: number } | { error: string }>();

  constructor(
    readonly file: string,
    private readonly src: ByteSource,
    opts: PthOptions = {},
  ) {
    const globals = globalsFor(opts);
    const storages = new Map<string, StorageRef>();
    const checkCrc = opts.checkCrc ?? true;
    this.checkCrc = checkCrc;
    if (looksLikeZip(src)) {
      this.format = 'zip';
      this.zip = new ZipReader(src, file);
      const pkl = this.zip.entries.filter((e) => /^[^/]+\/data\.pkl$/.test(e.name));
      if (pkl.length !== 1) {
        const names = this.zip.entries.slice(0, 5).map((e) => e.name).join(', ');
        throw new Error(`${file}: not a torch.save archive (${pkl.length} '<name>/data.pkl' entries; entries: ${names || 'none'})`);
      }
      this.prefix = pkl[0].name.slice(0, -'data.pkl'.length);
      const bo = `${this.prefix}byteorder`;
      if (this.zip.has(bo) && this.zip.read(bo).toString('utf8').trim() !== 'little') throw new Error(`${file}: big-endian checkpoint (byteorder entry) is not supported`);
      const data = this.zip.read(pkl[0].name, { checkCrc });
      this.root = unpickle(data, {
        globals,
        source: `${file}:${pkl[0].name}`,
        refuseHint: HINT,
        persistentLoad: (pid, at) => {
          const t = pid instanceof PyTuple ? pid.items : null;
          if (!t || t[0] !== 'storage' || t.length < 5) throw new Error(`${at}: unknown persistent id ${pyTypeName(pid)}`);
          const [, type, key, location, n] = t;
          return this.storageRef(storages, type, String(key), String(location), n, null, at);
        },
      }).value;
      return;
    }
    this.format = 'legacy';
    this.zip = null;
    this.prefix = '';
    const head = src.read(0, Math.min(src.size, 512));
    if (src.size >= 262 && head.toString('latin1', 257, 262) === 'ustar') {
      throw new Error(`${file}: pre-1.0 torch tar checkpoint (not supported: load and re-save it with a current torch)`);
    }
    if (head[0] !== 0x80) throw new Error(`${file}: neither a torch zip archive nor a legacy torch pickle (first byte 0x${(head[0] ?? 0).toString(16)})`);
    // several pickles back to back; read a growing window so the storage bytes after them are not loaded
    let pos = 0;
    const next = (what: string, extra: Partial<Parameters<typeof unpickle>[1]> = {}): unknown => {
      let win = Math.min(src.size - pos, 1 << 20);
      for (;;) {
        const buf = src.read(pos, win);
        try {
          const r = unpickle(buf, { globals, source: `${file} (${what})`, refuseHint: HINT, ...extra });
          pos += r.end;
          return r.value;
        } catch (e) {
          const msg = (e as Error).message;
          const truncated = /truncated|unterminated/.test(msg);
          if (truncated && pos + win < src.size) {
            win = Math.min(src.size - pos, win * 4);
            continue;
          }
          if (truncated) throw new TruncatedPickle(msg);
          throw e;
        }
      }
    };
    const magic = next('magic number');
    if (magic !== 0x1950a86a20f9469cfc6cn) throw new Error(`${file}: bad magic number (not a torch checkpoint)`);
    const proto = next('protocol version');
    if (proto !== 1001) throw new Error(`${file}: unsupported legacy protocol version ${String(proto)}`);
    const sys = next('sys info');
    if (sys instanceof PyDict && sys.map.get('little_endian') === false) throw new Error(`${file}: big-endian checkpoint is not supported`);
    this.root = next('object graph', {
      persistentLoad: (pid, at) => {
        const t = pid instanceof PyTuple ? pid.items : null;
        if (!t) throw new Error(`${at}: unknown persistent id ${pyTypeName(pid)}`);
        if (t[0] === 'module') throw new Error(`${at}: the checkpoint pickles a whole nn.Module (torch.save(model)); save model.state_dict() instead`);
        if (t[0] !== 'storage' || t.length < 6) throw new Error(`${at}: unknown persistent id ${pyTypeName(pid)}`);
        const [, type, key, location, n, view] = t;
        let v: { key: string; offset: number; size: number } | null = null;
        if (view instanceof PyTuple) v = { key: String(view.items[0]), offset: Number(view.items[1]), size: Number(view.items[2]) };
        return this.storageRef(storages, type, String(key), String(location), n, v, at);
      },
    });
    const keys = next('storage keys');
    if (!Array.isArray(keys)) throw new Error(`${file}: storage key list is ${pyTypeName(keys)}`);
    for (const k of keys.map(String)) {
      const s = storages.get(k);
      if (!s) {
        this.legacyData.set(k, { error: `storage '${k}' is listed but no tensor uses it` });
        continue;
      }
      const nb = s.numel * DTYPE_BYTES[s.dtype];
      if (pos + 8 > src.size) {
        this.legacyData.set(k, { error: `storage '${k}' starts past the end of the file (truncated)` });
        pos = src.size;
        continue;
      }
      const count = src.read(pos, 8).readBigInt64LE(0);
      if (count !== BigInt(s.numel)) {
        this.legacyData.set(k, { error: `storage '${k}' records ${count} elements, its tensors expect ${s.numel}` });
      } else if (pos + 8 + nb > src.size) {
        this.legacyData.set(k, { error: `storage '${k}' needs bytes [${pos + 8}, ${pos + 8 + nb}) but the file has ${src.size} (truncated)` });
      } else {
        this.legacyData.set(k, { offset: pos + 8, nbytes: nb });
      }
      pos += 8 + nb;
    }
  }

  private storageRef(
    storages: Map<string, StorageRef>,
    type: unknown,
    key: string,
    location: string,
    n: unknown,
    view: { key: string; offset: number; size: number } | null,
    at: string,
  ): StorageRef {
    if (type instanceof PyGlobal && typeof type.spec.value === 'string') type = type.spec.value;
    if (typeof type !== 'string' || !(Object.values(STORAGE_DTYPES) as string[]).includes(type)) {
      const name = type instanceof PyGlobal ? type.path : pyTypeName(type);
      const unsup = UNSUPPORTED_STORAGES.find((u) => name.endsWith(u));
      throw new Error(`${at}: storage '${key}' has type ${name}${unsup ? ' (complex / quantized tensors are not supported)' : ''}`);
    }
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw new Error(`${at}: storage '${key}' has a bad element count ${String(n)}`);
    let root = storages.get(key);
    if (!root) {
      root = new StorageRef(key, type as SafeDtype, n, location);
      storages.set(key, root);
    } else if (root.dtype !== type || root.numel !== n) {
      throw new Error(`${at}: storage '${key}' is referenced as ${type}×${n} and as ${root.dtype}×${root.numel}`);
    }
    if (!view) return root;
    const vkey = `${view.key}`;
    let v = storages.get(`view:${vkey}`);
    if (!v) {
      if (view.offset + view.size > root.numel) throw new Error(`${at}: storage view '${vkey}' exceeds its root '${key}'`);
      v = new StorageRef(vkey, root.dtype, view.size, location, { root, offset: view.offset });
      storages.set(`view:${vkey}`, v);
    }
    return v;
  }

  /** Bytes of a storage (the whole storage), validated. */
  private storageBytes(s: StorageRef, where: string): Buffer {
    if (s.view) {
      const eb = DTYPE_BYTES[s.dtype];
      return this.storageBytes(s.view.root, where).subarray(s.view.offset * eb, (s.view.offset + s.numel) * eb);
    }
    const nb = s.numel * DTYPE_BYTES[s.dtype];
    if (this.zip) {
      const name = `${this.prefix}data/${s.key}`;
      const e = this.zip.get(name);
      if (!e) throw new Error(`${where}: storage entry '${name}' is missing from the archive${this.zip.truncated ? ' (its directory is lost: truncated or damaged file)' : ''}`);
      if (e.size < nb) throw new Error(`${where}: storage '${s.key}' has ${e.size} bytes, ${s.numel} ${s.dtype} values need ${nb} (truncated or mismatched)`);
      try {
        return this.zip.read(name, { checkCrc: this.checkCrc }).subarray(0, nb);
      } catch (err) {
        throw new Error(`${where}: ${(err as Error).message}`);
      }
    }
    const d = this.legacyData.get(s.key);
    if (!d) throw new Error(`${where}: storage '${s.key}' has no data in the file (truncated)`);
    if ('error' in d) throw new Error(`${where}: ${d.error}`);
    return this.src.read(d.offset, d.nbytes);
  }

  /** Check a tensor against its storage without reading the data (throws naming the tensor, shape and storage). */
  check(key: string, t: TensorRef): void {
    const where = `${this.file}: tensor '${key}' [${t.shape}] ${t.dtype}`;
    const n = numel(t.shape);
    let last = t.offset;
    for (let i = 0; i < t.shape.length; i++) last += t.shape[i] > 0 ? (t.shape[i] - 1) * t.stride[i] : 0;
    if (n > 0 && last >= t.storage.numel) {
      throw new Error(`${where} reaches element ${last} of storage '${t.storage.key}', which has ${t.storage.numel} (mismatched file)`);
    }
    let root = t.storage;
    while (root.view) root = root.view.root;
    const nb = root.numel * DTYPE_BYTES[root.dtype];
    if (this.zip) {
      const name = `${this.prefix}data/${root.key}`;
      const e = this.zip.get(name);
      if (!e) throw new Error(`${where}: its storage entry '${name}' is missing (${this.zip.truncated ? 'the archive directory is lost: truncated or damaged file' : 'damaged archive'})`);
      if (e.size !== nb) throw new Error(`${where}: storage '${root.key}' has ${e.size} bytes but ${root.numel} ${root.dtype} values need ${nb} (truncated or mismatched)`);
      try {
        this.zip.dataOffset(e); // local header and data range inside the file
      } catch (err) {
        throw new Error(`${where}: ${(err as Error).message}`);
      }
    } else {
      const d = this.legacyData.get(root.key);
      if (!d) throw new Error(`${where}: storage '${root.key}' has no data in the file (truncated)`);
      if ('error' in d) throw new Error(`${where}: ${d.error}`);
    }
  }

  /** Read one tensor's data (contiguous copy of any strided view). */
  readTensor(key: string, t: TensorRef, cache?: Map<StorageRef, Buffer>): SafeTensor {
    this.check(key, t);
    const where = `${this.file}: tensor '${key}'`;
    let bytes = cache?.get(t.storage);
    if (!bytes) {
      bytes = this.storageBytes(t.storage, where);
      cache?.set(t.storage, bytes);
    }
    const eb = DTYPE_BYTES[t.dtype];
    const raw = gatherStrided(bytes, eb, t.offset, t.shape, t.stride);
    return { dtype: t.dtype, shape: [...t.shape], data: decodeRaw(t.dtype, raw, numel(t.shape), where) };
  }

  /** A zip checkpoint whose central directory is gone (entries were recovered from local headers). */
  get truncated(): boolean {
    return this.zip?.truncated ?? false;
  }

  close(): void {
    this.src.close();
  }
}

/** Open a torch checkpoint: the object graph is read, tensor data is not (see `TorchCheckpoint.readTensor`). */
export function openTorchCheckpoint(file: string, opts: PthOptions = {}): TorchCheckpoint {
  const src = fileSource(file);
  try {
    return new TorchCheckpoint(file, src, opts);
  } catch (e) {
    src.close();
    if (e instanceof TruncatedPickle) throw new Error(`${file}: the pickle ends early (truncated file): ${e.message}`);
    throw e;
  }
}

/** A flattened view of the object graph: tensors by dotted key, and the other leaves as JSON-able values. */
export interface FlatState {
  tensors: Map<string, TensorRef>;
  /** Non-tensor leaves by dotted key (numbers, strings, booleans, null; bigints as strings; inert objects as records). */
  values: Record<string, unknown>;
}

function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof PyTuple) return v.items.map(plain);
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Uint8Array) return `<${v.length} bytes>`;
  if (v instanceof PyObject) return { __class__: v.cls, state: plain(v.state) };
  if (v instanceof PyDict) return Object.fromEntries([...v.map].map(([k, x]) => [String(k), plain(x)]));
  if (v instanceof Set) return [...v].map(plain);
  if (v instanceof StorageRef) return `<storage ${v.key}>`;
  if (v instanceof PyGlobal) return v.spec.value ?? v.path;
  return v;
}

/**
 * Flatten nested dicts (and lists / tuples, by index) into dotted keys. Inert objects (PyObject) are kept whole as
 * values. Cycles are an error.
 */
export function flattenState(root: unknown, prefix = ''): FlatState {
  const tensors = new Map<string, TensorRef>();
  const values: Record<string, unknown> = {};
  const seen = new Set<unknown>();
  const walk = (v: unknown, key: string): void => {
    if (v instanceof TensorRef) {
      tensors.set(key, v);
      return;
    }
    if (v instanceof PyDict || v instanceof PyTuple || Array.isArray(v)) {
      if (seen.has(v)) throw new Error(`checkpoint object graph has a cycle at '${key}'`);
      seen.add(v);
      const entries: Array<[string, unknown]> =
        v instanceof PyDict ? [...v.map].map(([k, x]) => [String(k), x]) : (v instanceof PyTuple ? v.items : (v as unknown[])).map((x, i) => [String(i), x]);
      if (entries.length === 0 && key) values[key] = v instanceof PyDict ? {} : [];
      for (const [k, x] of entries) walk(x, key ? `${key}.${k}` : k);
      seen.delete(v);
      return;
    }
    values[key] = plain(v);
  };
  walk(root, prefix);
  return { tensors, values };
}

/** Top-level keys in the order checkpoints use to wrap a state dict (timm/MAE 'model', DINOv2 'teacher', …). */
export const WRAPPER_KEYS = ['state_dict', 'model', 'teacher', 'student', 'module', 'model_ema', 'net', 'network'] as const;

export interface ReadPthOptions extends PthOptions {
  /**
   * Which part of the checkpoint to return, as a dotted path into its dicts ('model', 'teacher', 'model.encoder'),
   * '' for everything, or 'auto' (default): the whole file when its top level is a state dict, else the first of
   * `WRAPPER_KEYS` that is present.
   */
  select?: string;
}

/** Follow a dotted path into nested PyDicts. */
export function selectPath(root: unknown, path: string, file: string): unknown {
  let v = root;
  for (const part of path ? path.split('.') : []) {
    if (!(v instanceof PyDict)) throw new Error(`${file}: cannot select '${path}': '${part}' is inside ${pyTypeName(v)}`);
    if (!v.map.has(part)) {
      const keys = [...v.map.keys()].map(String);
      throw new Error(`${file}: no '${path}' in the checkpoint (keys here: ${keys.slice(0, 12).join(', ')}${keys.length > 12 ? ', …' : ''})`);
    }
    v = v.map.get(part);
  }
  return v;
}

/** The part `select: 'auto'` picks. */
export function autoSelect(root: unknown): string {
  if (!(root instanceof PyDict)) return '';
  const allTensors = [...root.map.values()].every((v) => v instanceof TensorRef);
  if (allTensors) return '';
  for (const k of WRAPPER_KEYS) if (root.map.get(k) instanceof PyDict) return k;
  return '';
}

/**
 * Read a torch checkpoint into memory as a `SafeFile` (torch layout, the checkpoint's own key names), so it can be
 * fed to a key map and `loadTensors`. All tensors are validated before any is read; `metadata.pth` holds JSON with
 * the format, the selected part, the top-level keys and the non-tensor values of the selected part.
 */
export function readTorchCheckpoint(file: string, opts: ReadPthOptions = {}): SafeFile {
  const ck = openTorchCheckpoint(file, opts);
  try {
    const path = opts.select === undefined || opts.select === 'auto' ? autoSelect(ck.root) : opts.select;
    const part = selectPath(ck.root, path, file);
    const flat = flattenState(part);
    for (const [k, t] of flat.tensors) ck.check(k, t);
    if (ck.truncated) throw new Error(`${file}: the archive has lost its central directory (truncated file), although the selected tensors are present; refusing it`);
    // read each storage once; drop it when its last tensor is done (shared storages are read once)
    const uses = new Map<StorageRef, number>();
    for (const t of flat.tensors.values()) uses.set(t.storage, (uses.get(t.storage) ?? 0) + 1);
    const cache = new Map<StorageRef, Buffer>();
    const tensors = new Map<string, SafeTensor>();
    for (const [k, t] of flat.tensors) {
      tensors.set(k, ck.readTensor(k, t, cache));
      const left = uses.get(t.storage)! - 1;
      uses.set(t.storage, left);
      if (left === 0) cache.delete(t.storage);
    }
    const top = ck.root instanceof PyDict ? [...ck.root.map.keys()].map(String) : [];
    return {
      tensors,
      metadata: { pth: JSON.stringify({ format: ck.format, selected: path, topLevelKeys: top, values: flat.values }) },
    };
  } finally {
    ck.close();
  }
}

/** One line per tensor, without reading data: key, dtype, shape (for inspecting an unknown checkpoint). */
export function describeTorchCheckpoint(file: string, opts: PthOptions = {}): { format: 'zip' | 'legacy'; tensors: Array<{ key: string; dtype: SafeDtype; shape: number[] }>; values: Record<string, unknown> } {
  const ck = openTorchCheckpoint(file, opts);
  try {
    const flat = flattenState(ck.root);
    return { format: ck.format, tensors: [...flat.tensors].map(([key, t]) => ({ key, dtype: t.dtype, shape: t.shape })), values: flat.values };
  } finally {
    ck.close();
  }
}
