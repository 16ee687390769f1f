/**
 * Low-level access to the tfjs wasm backend for the kit's fused kernels (lib/ops/wasm-fused.ts): views of tensors on
 * the wasm heap, scratch allocations, and direct calls of the backend's XNNPACK matMul and softmax on *regions* of the
 * heap (so per-head attention products need neither slices nor copies through the engine).
 *
 * This touches internals of `@tensorflow/tfjs-backend-wasm` (its `dataIdMap`, the emscripten module, the exported
 * `_FusedMatMul` / `Softmax` functions and `tfjs.registerTensor` / `tfjs.disposeData`). They were read from version
 * 4.22.0, the one the kit pins; `wasmInternalsOk()` checks the version and the shape of these internals, and the fast
 * paths are only used when it returns true (otherwise the plain ops of lib/ops/nn.ts run).
 *
 * Facts the code relies on (tfjs-backend-wasm 4.22.0, src/cc/batch_mat_mul_impl.cc):
 * - `_FusedMatMul(aId, aShape, aRank, bId, bShape, bRank, transA, transB, act, biasId, preluId, alpha, outId)` runs
 *   XNNPACK's fully-connected operator only for rank-3 shapes with batch 1 and no transposes; the operator (with the
 *   packed copy of `b`) is cached under (bId, biasId) until tensor `bId` is disposed on the wasm side. A region used
 *   as `b` therefore gets a fresh id for every call and is disposed right after.
 * - Growing the heap detaches typed-array views: allocate first, then take views (`f32()` re-reads the buffer).
 */
import * as tf from '@tensorflow/tfjs';

/**
 * The WebAssembly memory as the kit uses it. Declared locally rather than as `WebAssembly.Memory`: tslab compiles the
 * library for notebooks with its own TypeScript settings, whose lib has no `WebAssembly` namespace.
 */
export interface WasmMemoryLike {
  readonly buffer: ArrayBuffer;
  grow(deltaPages: number): number;
}

/** The emscripten module of the wasm backend (the members we use). */
interface WasmModule {
  HEAPU8: Uint8Array;
  asm?: { memory?: WasmMemoryLike };
  _malloc(bytes: number): number;
  _free(ptr: number): void;
  cwrap(name: string, ret: null, args: string[]): (...args: unknown[]) => void;
  tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
}

/** The wasm backend object (the members we use). */
export interface WasmBackend {
  wasm: WasmModule;
  dataIdMap: { get(dataId: unknown): { id: number; memoryOffset: number; shape: number[]; dtype: tf.DataType } | undefined };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: unknown): tf.TensorInfo;
  disposeData(dataId: unknown, force?: boolean): boolean;
}

/** The tfjs-backend-wasm version whose internals this module was written against. */
export const WASM_INTERNALS_VERSION = '4.22.0';

function installedWasmVersion(): string | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require('@tensorflow/tfjs-backend-wasm/package.json').version as string;
  } catch {
    return null;
  }
}

let internalsChecked: { backend: unknown; ok: boolean; reason: string } | null = null;

/**
 * Whether the active backend is wasm with the internals the fused kernels need (version and members checked once per
 * backend instance). `reason` says why not.
 */
export function wasmInternalsOk(): { ok: boolean; reason: string } {
  if (tf.getBackend() !== 'wasm') return { ok: false, reason: `backend is '${tf.getBackend()}', not 'wasm'` };
  const b = tf.backend() as unknown;
  if (internalsChecked && internalsChecked.backend === b) return internalsChecked;
  let ok = false;
  let reason = '';
  const v = installedWasmVersion();
  const be = b as Partial<WasmBackend>;
  if (v !== WASM_INTERNALS_VERSION) {
    reason = `tfjs-backend-wasm ${v} is not the validated ${WASM_INTERNALS_VERSION}`;
  } else if (
    !be.wasm ||
    typeof be.wasm._malloc !== 'function' ||
    typeof be.wasm.cwrap !== 'function' ||
    typeof be.wasm.tfjs?.registerTensor !== 'function' ||
    typeof be.wasm.tfjs?.disposeData !== 'function' ||
    typeof be.dataIdNextNumber !== 'number' ||
    typeof be.dataIdMap?.get !== 'function'
  ) {
    reason = 'the wasm backend object does not have the expected internals';
  } else {
    ok = true;
  }
  internalsChecked = { backend: b, ok, reason };
  return internalsChecked;
}

interface Fns {
  fusedMatMul: (...args: unknown[]) => void;
  softmax: (...args: unknown[]) => void;
  transpose: (...args: unknown[]) => void;
}
const fnCache = new WeakMap<object, Fns>();

/** The cwrapped wasm functions of a backend instance (created once per instance). */
function fns(be: WasmBackend): Fns {
  let f = fnCache.get(be);
  if (!f) {
    const w = be.wasm;
    f = {
      fusedMatMul: w.cwrap('_FusedMatMul', null, [
        'number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number', 'number', 'number', 'number', 'number',
      ]),
      softmax: w.cwrap('Softmax', null, ['number', 'number', 'number', 'number']),
      // (xId, xShape, rank, dtype (0 = float32), outId, perm, permLength)
      transpose: w.cwrap('Transpose', null, ['number', 'array', 'number', 'number', 'number', 'array', 'number']),
    };
    fnCache.set(be, f);
  }
  return f;
}

function shapeBytes(s: number[]): Uint8Array {
  return new Uint8Array(new Int32Array(s).buffer);
}

/**
 * Heap helper bound to one wasm backend. Offsets are byte offsets into the wasm heap; sizes are element counts
 * (float32).
 */
export class Heap {
  readonly be: WasmBackend;
  private readonly fn: Fns;
  private scratch: number[] = [];

  constructor(backend: unknown) {
    this.be = backend as WasmBackend;
    this.fn = fns(this.be);
  }

  /** Byte offset of a tensor's data. */
  offset(t: tf.TensorInfo): number {
    const d = this.be.dataIdMap.get(t.dataId);
    if (!d) throw new Error('wasm heap: tensor is not on the wasm backend (or disposed)');
    return d.memoryOffset;
  }

  /** Backend-side id of a tensor (what the wasm functions take). */
  id(t: tf.TensorInfo): number {
    const d = this.be.dataIdMap.get(t.dataId);
    if (!d) throw new Error('wasm heap: tensor is not on the wasm backend (or disposed)');
    return d.id;
  }

  /** A fresh float32 view over the whole heap (take it after every allocation). */
  f32(): Float32Array {
    return new Float32Array(this.be.wasm.HEAPU8.buffer);
  }

  /** The backend's WebAssembly.Memory (for kernels that import it, lib/ops/wasm-simd.ts). */
  memory(): WasmMemoryLike | undefined {
    return this.be.wasm.asm?.memory;
  }

  /** A new output tensor (allocated on the heap, uninitialised). */
  output(shape: number[], dtype: tf.DataType = 'float32'): tf.TensorInfo {
    return this.be.makeOutput(shape, dtype);
  }

  /** Scratch memory of `n` floats (byte offset), freed by `release()`. */
  alloc(n: number): number {
    const p = this.be.wasm._malloc(Math.max(4, n * 4)) >>> 0;
    if (p === 0) throw new Error(`wasm heap: out of memory allocating ${n} floats (${(n * 4) / 2 ** 20} MiB)`);
    this.scratch.push(p);
    return p;
  }

  /** Free every scratch allocation of this helper. */
  release(): void {
    for (const p of this.scratch) this.be.wasm._free(p);
    this.scratch = [];
  }

  /** Register a heap region (byte offset, `size` floats) as a backend-side tensor id; drop it with `dropId`. */
  tempId(offset: number, size: number): number {
    const id = this.be.dataIdNextNumber++;
    this.be.wasm.tfjs.registerTensor(id, size, offset);
    return id;
  }

  /** Forget a region id from `tempId` (also drops any XNNPACK operator cached for it; the memory is not freed). */
  dropId(id: number): void {
    this.be.wasm.tfjs.disposeData(id);
  }

  /** out[M, N] = a[M, K] · b[K, N] (+ bias) on backend-side ids (tensors or regions). XNNPACK caches by (b, bias). */
  matmulIds(a: number, M: number, K: number, b: number, N: number, out: number, bias = 0): void {
    this.fn.fusedMatMul(a, shapeBytes([1, M, K]), 3, b, shapeBytes([1, K, N]), 3, 0, 0, 0, bias, 0, 0, out);
  }

  /**
   * out[M, N] = a[M, K] · b[K, N] (+ bias[N]) on heap regions (byte offsets), through XNNPACK. Regions are row-major
   * and contiguous. `out` must not overlap `a` or `b`.
   */
  matmul(a: number, M: number, K: number, b: number, N: number, out: number, bias = -1): void {
    const ai = this.tempId(a, M * K);
    const bi = this.tempId(b, K * N);
    const oi = this.tempId(out, M * N);
    const ci = bias >= 0 ? this.tempId(bias, N) : 0;
    try {
      // act 0 = linear; prelu id 0; leaky alpha 0
      this.fn.fusedMatMul(ai, shapeBytes([1, M, K]), 3, bi, shapeBytes([1, K, N]), 3, 0, 0, 0, ci, 0, 0, oi);
    } finally {
      const w = this.be.wasm.tfjs;
      w.disposeData(ai);
      w.disposeData(bi); // drops the cached XNNPACK operator packed from this region
      w.disposeData(oi);
      if (ci) w.disposeData(ci);
    }
  }

  /** out = a·b with a and b whole tensors (ids known to the backend); the operator for `b` stays cached with it. */
  matmulTensors(a: tf.TensorInfo, M: number, K: number, b: tf.TensorInfo, N: number, out: tf.TensorInfo, bias: tf.TensorInfo | null): void {
    this.fn.fusedMatMul(
      this.id(a), shapeBytes([1, M, K]), 3, this.id(b), shapeBytes([1, K, N]), 3, 0, 0, 0, bias ? this.id(bias) : 0, 0, 0, this.id(out),
    );
  }

  /**
   * Batched matrix transpose on regions: x [batch, R, C] → out [batch, C, R] (wasm Transpose kernel).
   * `out` must not overlap `x`.
   */
  transpose(x: number, batch: number, R: number, C: number, out: number): void {
    const n = batch * R * C;
    const xi = this.tempId(x, n);
    const oi = this.tempId(out, n);
    try {
      if (batch === 1) this.fn.transpose(xi, shapeBytes([R, C]), 2, 0, oi, shapeBytes([1, 0]), 2);
      else this.fn.transpose(xi, shapeBytes([batch, R, C]), 3, 0, oi, shapeBytes([0, 2, 1]), 3);
    } finally {
      this.be.wasm.tfjs.disposeData(xi);
      this.be.wasm.tfjs.disposeData(oi);
    }
  }

  /** Row softmax over `rows` rows of `cols` floats, from region x to region out (may be the same region). */
  softmax(x: number, out: number, rows: number, cols: number): void {
    const xi = this.tempId(x, rows * cols);
    const oi = x === out ? xi : this.tempId(out, rows * cols);
    try {
      this.fn.softmax(xi, oi, cols, rows);
    } finally {
      this.be.wasm.tfjs.disposeData(xi);
      if (oi !== xi) this.be.wasm.tfjs.disposeData(oi);
    }
  }
}

/** The wasm heap could not grow for an allocation (the 4 GiB wasm32 limit, or the machine's memory). */
export class WasmOutOfMemory extends Error {
  constructor(
    /** Bytes requested. */
    readonly requested: number,
    /** Heap size when it failed, bytes. */
    readonly heap: number,
    /** What was running (e.g. 'step 12'), when known. */
    readonly during: string | null,
  ) {
    const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;
    super(
      `wasm heap out of memory${during ? ` at ${during}` : ''}: an allocation of ${mib(requested)} did not fit (heap ${mib(heap)}, ` +
        `wasm32 limit 4096 MiB); use a smaller batch per worker, more workers, or activation recomputation (vitForward checkpoint)`,
    );
    this.name = 'WasmOutOfMemory';
  }
}

let activity: string | null = null;

/** Name what is running now (e.g. 'step 12'), for the out-of-memory message; null clears it. */
export function setHeapActivity(what: string | null): void {
  activity = what;
}

const guarded = new WeakSet<object>();

/**
 * Make the wasm backend's allocations fail loudly. tfjs-backend-wasm 4.22 does not check `_malloc`'s result: when the
 * heap cannot grow, the tensor silently gets offset 0 and later writes corrupt other tensors (measured: after three
 * 1 GiB tensors a fourth "succeeded" at offset 0, the next op died with "memory access out of bounds", and `1 + 1`
 * then read 2.022). The guard throws `WasmOutOfMemory` (bytes asked, heap size, the current activity) before anything
 * is written; the backend stays usable. Idempotent per backend instance.
 */
export function guardWasmMalloc(backend: unknown): boolean {
  const be = backend as Partial<WasmBackend>;
  const w = be.wasm;
  if (!w || typeof w._malloc !== 'function' || guarded.has(w)) return false;
  // emscripten's `_malloc` is a stub that replaces itself with the real export on its first call: call it once so
  // the wrapper below is not overwritten.
  w._free(w._malloc(4));
  const malloc = w._malloc.bind(w);
  w._malloc = (bytes: number): number => {
    const p = malloc(bytes);
    if (p === 0 && bytes > 0) throw new WasmOutOfMemory(bytes, w.HEAPU8.buffer.byteLength, activity);
    return p;
  };
  guarded.add(w);
  return true;
}
