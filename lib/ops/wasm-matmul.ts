/**
 * A replacement for the wasm backend's `BatchMatMul` kernel that always runs XNNPACK's 2-D matMul.
 *
 * tfjs-backend-wasm 4.22 sends every matMul with a batch > 1, a broadcast batch or `transposeA`/`transposeB` to a
 * naive triple loop (src/cc/batch_mat_mul_impl.cc `slow_batch_matmul`): measured 7× slower for the attention
 * products, and tfjs's own matMul gradient uses both transposes, so every backward pass pays it. This kernel:
 * - transposes an operand explicitly (the backend's Transpose kernel, into scratch) when asked to;
 * - runs one 2-D product when `b` has a single matrix (the batch of `a` folds into rows; `b` keeps its tensor id, so
 *   XNNPACK's packed weights stay cached with it, as in the stock kernel);
 * - otherwise one 2-D product per (broadcast) batch element on heap regions;
 * - very small matrices (M·K·N ≤ 512) run a plain JS loop (operator set-up would dominate).
 * Registered for 'wasm' only, by lib/ops/fast.ts, when fast ops are on; `setFastOps(false)` puts the stock kernel back
 * (lib/ops/wasm-replace.ts), so the plain path really is the stock one.
 */
import * as tf from '@tensorflow/tfjs';
import { Heap } from './wasm-heap';
import { replaceWasmKernel } from './wasm-replace';

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

function sizeOf(shape: number[]): number {
  let s = 1;
  for (const d of shape) s *= d;
  return s;
}

/** Flat batch index of an input with outer shape `inShape` for output batch index `o` of outer shape `outShape`. */
function broadcastIndex(o: number, outShape: number[], inShape: number[]): number {
  const L = outShape.length;
  const pad = L - inShape.length;
  let idx = 0;
  let stride = 1;
  let rem = o;
  for (let d = L - 1; d >= 0; d--) {
    const od = outShape[d];
    const c = rem % od;
    rem = (rem - c) / od;
    if (d >= pad) {
      const id = inShape[d - pad];
      idx += (id === 1 ? 0 : c) * stride;
      stride *= id;
    }
  }
  return idx;
}

export function batchMatMulWasm({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const a = inputs.a as tf.TensorInfo;
  const b = inputs.b as tf.TensorInfo;
  const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
  if (a.dtype !== 'float32' || b.dtype !== 'float32') {
    throw new Error('BatchMatMul for non non-float32 tensors not yet supported.');
  }
  const ra = a.shape.length;
  const rb = b.shape.length;
  const K = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const Kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const M = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const N = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (K !== Kb) {
    throw new Error(
      `Error in matMul: inner shapes (${K}) and (${Kb}) of Tensors with shapes ${a.shape} and ${b.shape} and ` +
        `transposeA=${transposeA} and transposeB=${transposeB} must match.`,
    );
  }
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  const heap = new Heap(backend);
  const out = heap.output([...outer, M, N]);
  const batchA = sizeOf(outerA);
  const batchB = sizeOf(outerB);
  const batch = sizeOf(outer);
  if (batch * M * N === 0) return out;
  if (K === 0) {
    heap.f32().fill(0, heap.offset(out) >>> 2, (heap.offset(out) >>> 2) + batch * M * N);
    return out;
  }
  try {
    // operands as [batch, M, K] and [batch, K, N], row-major, on the heap
    let aOff = heap.offset(a);
    let bOff = heap.offset(b);
    if (transposeA) {
      const s = heap.alloc(batchA * M * K);
      heap.transpose(heap.offset(a), batchA, K, M, s);
      aOff = s;
    }
    if (transposeB) {
      const s = heap.alloc(batchB * K * N);
      heap.transpose(heap.offset(b), batchB, N, K, s);
      bOff = s;
    }
    const outOff = heap.offset(out);
    if (M * K * N <= 512) {
      smallProducts(heap.f32(), aOff >>> 2, bOff >>> 2, outOff >>> 2, M, K, N, batch, outer, outerA, outerB);
      return out;
    }
    if (batchB === 1 && batchA === batch) {
      // a's batch folds into rows: one [batch·M, K]·[K, N] product; b keeps its own id when not transposed
      const ai = heap.tempId(aOff, batch * M * K);
      const bi = transposeB ? heap.tempId(bOff, K * N) : heap.id(b);
      try {
        heap.matmulIds(ai, batch * M, K, bi, N, heap.id(out));
      } finally {
        heap.dropId(ai);
        if (transposeB) heap.dropId(bi);
      }
      return out;
    }
    for (let o = 0; o < batch; o++) {
      const ia = batchA === batch && outerA.length === outer.length ? o : broadcastIndex(o, outer, outerA);
      const ib = batchB === batch && outerB.length === outer.length ? o : broadcastIndex(o, outer, outerB);
      heap.matmul(aOff + ia * M * K * 4, M, K, bOff + ib * K * N * 4, N, outOff + o * M * N * 4);
    }
  } finally {
    heap.release();
  }
  return out;
}

function smallProducts(
  H: Float32Array, a0: number, b0: number, o0: number, M: number, K: number, N: number,
  batch: number, outer: number[], outerA: number[], outerB: number[],
): void {
  for (let o = 0; o < batch; o++) {
    const pa = a0 + broadcastIndex(o, outer, outerA) * M * K;
    const pb = b0 + broadcastIndex(o, outer, outerB) * K * N;
    const po = o0 + o * M * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += H[pa + i * K + k] * H[pb + k * N + j];
        H[po + i * N + j] = s;
      }
    }
  }
}

/** Put the replacement in place of the stock wasm BatchMatMul (idempotent). */
export function installBatchMatMul(): void {
  replaceWasmKernel('BatchMatMul', batchMatMulWasm as unknown as tf.KernelFunc);
}
