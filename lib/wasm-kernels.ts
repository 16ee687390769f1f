/**
 * Kernels the kit needs that `@tensorflow/tfjs-backend-wasm` 4.22 does not register (measured: wasm has 157 kernels,
 * cpu 172). Registered for the `wasm` backend only, by `init()`, so the native TensorFlow backend keeps its own.
 *
 * - `UnsortedSegmentSum` (the gradient of `tf.gather`): native JS over the wasm heap, linear time (the cpu backend's
 *   version loops once per segment over the whole input).
 * - `Conv2DBackpropFilter` (gradient of a conv filter) and `Einsum`: a generic fallback that copies the inputs to the
 *   cpu backend, runs its kernel and copies the result back. Correct, not fast: the kit's own patch embedding is a
 *   reshape + matMul and never needs it.
 */
import * as tf from '@tensorflow/tfjs';

/** Minimal view of the wasm backend we touch (see BackendWasm in tfjs-backend-wasm). */
interface WasmBackendLike {
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: unknown): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
  readSync(dataId: unknown): unknown;
}
interface CpuBackendLike {
  write(values: unknown, shape: number[], dtype: tf.DataType): unknown;
  readSync(dataId: unknown): unknown;
  disposeData(dataId: unknown, force?: boolean): boolean;
  firstUse?: boolean;
}

/** Sum rows of `x` into `numSegments` buckets: out[s, ...] = Σ_{i: ids[i]=s} x[i, ...]. Ids out of range are dropped. */
function unsortedSegmentSumWasm(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const x = args.inputs.x as tf.TensorInfo;
  const ids = args.inputs.segmentIds as tf.TensorInfo;
  const numSegments = (args.attrs as { numSegments: number }).numSegments;
  const idRank = ids.shape.length;
  for (let d = 0; d < idRank; d++) {
    if (ids.shape[d] !== x.shape[d]) {
      throw new Error(`UnsortedSegmentSum: segmentIds shape [${ids.shape}] is not a prefix of x shape [${x.shape}]`);
    }
  }
  const inner = x.shape.slice(idRank).reduce((a, b) => a * b, 1);
  const outShape = [numSegments, ...x.shape.slice(idRank)];
  // makeOutput first: growing the heap detaches typed-array views taken earlier.
  const out = backend.makeOutput(outShape, x.dtype);
  const xv = backend.typedArrayFromHeap(x);
  const iv = backend.typedArrayFromHeap(ids);
  const ov = backend.typedArrayFromHeap(out);
  ov.fill(0);
  const n = iv.length;
  for (let i = 0; i < n; i++) {
    const s = iv[i];
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++) ov[dst + j] += xv[src + j];
  }
  return out;
}

/** Wrap the cpu backend's kernel `name` so it runs for wasm tensors (copy in, run, copy out). */
function cpuFallback(name: string): tf.KernelConfig {
  const cpuKernel = tf.getKernel(name, 'cpu');
  if (!cpuKernel) throw new Error(`cpuFallback: the cpu backend has no kernel '${name}'`);
  return {
    kernelName: name,
    backendName: 'wasm',
    kernelFunc: (args) => {
      const wasm = args.backend as unknown as WasmBackendLike;
      const cpu = tf.findBackend('cpu') as unknown as CpuBackendLike;
      cpu.firstUse = false; // the cpu backend's "install tfjs-node" banner is noise here
      const temps: unknown[] = [];
      const toCpu = (t: tf.TensorInfo): tf.TensorInfo => {
        const dataId = cpu.write(wasm.readSync(t.dataId), t.shape, t.dtype);
        temps.push(dataId);
        return { dataId: dataId as tf.DataId, shape: t.shape, dtype: t.dtype };
      };
      const raw = args.inputs as unknown;
      const cpuInputs = Array.isArray(raw)
        ? (raw as tf.TensorInfo[]).map(toCpu)
        : Object.fromEntries(Object.entries(args.inputs).map(([k, t]) => [k, toCpu(t as tf.TensorInfo)]));
      try {
        const res = cpuKernel.kernelFunc({
          inputs: cpuInputs as unknown as tf.NamedTensorInfoMap,
          backend: cpu as unknown as tf.KernelBackend,
          attrs: args.attrs,
        });
        const back = (o: tf.TensorInfo): tf.TensorInfo => {
          const values = cpu.readSync(o.dataId);
          temps.push(o.dataId);
          return wasm.makeOutput(o.shape, o.dtype, undefined, values);
        };
        return Array.isArray(res) ? res.map(back) : back(res);
      } finally {
        for (const id of temps) cpu.disposeData(id, true);
      }
    },
  };
}

/** Kernel names this module provides for wasm. */
export const WASM_EXTRA_KERNELS = ['UnsortedSegmentSum', 'Conv2DBackpropFilter', 'Einsum'] as const;

/**
 * Register the missing kernels for `wasm` (idempotent; skips any kernel wasm already has).
 * @returns the names registered by this call or earlier.
 */
export function registerWasmKernels(): string[] {
  const done: string[] = [];
  for (const name of WASM_EXTRA_KERNELS) {
    if (!tf.getKernel(name, 'wasm')) {
      const cfg: tf.KernelConfig =
        name === 'UnsortedSegmentSum'
          ? { kernelName: name, backendName: 'wasm', kernelFunc: unsortedSegmentSumWasm as unknown as tf.KernelFunc }
          : cpuFallback(name);
      tf.registerKernel(cfg);
    }
    done.push(name);
  }
  return done;
}
