/**
 * Applying a matching: the size-weighted average merge (ToMe `merge_wavg`), source tracking (`merge_source`) and the
 * differentiable scatter-add they are built on (ToMe `tome/merge.py`; PYRA `model/adaptive_merge.py`).
 *
 * One merge of any per-token tensor y [B, N, C] under a matching:
 *   A, B = even / odd rows; unm = A[unm]; s = A[src]; (PYRA: s ← modulate(s, B[dst]))
 *   B' = B + scatter_add_dst(s)      (several sources may hit one destination)
 *   out = [unm ‖ B']                 (with a distillation token: [unm₀, B'₀, unm₁…, B'₁…])
 * Size-weighted average: x' = merge(x ⊙ s) / merge(s), sizes' = merge(s) — a merged token is the size-weighted mean
 * of the patches it stands for, and its size counts them. Sizes are never modulated.
 *
 * The scatter-add is differentiable on every backend: `'segment'` (default) uses `tf.unsortedSegmentSum` over
 * batch-offset ids (gradient: gather), `'onehot'` a one-hot matMul ([B, N_B, r] × [B, r, C]; gradient: matMul).
 */
import * as tf from '@tensorflow/tfjs';
import { Matching, splitParity, batchGather } from './matching';

/** How the scatter-add into destinations is computed (both differentiable; equal up to float summation order). */
export type ScatterMode = 'segment' | 'onehot';

/** Modulates the gathered, size-weighted source rows given the size-weighted pre-merge destination rows (PYRA). */
export type SourceModulator = (src: tf.Tensor3D, dstPre: tf.Tensor3D) => tf.Tensor3D;

/**
 * out[b, j] = Σ_{k: idx[b,k] = j} values[b, k] for j < numRows. values [B, K, C], idx [B, K] int32 → [B, numRows, C].
 */
export function scatterAdd(values: tf.Tensor3D, idx: tf.Tensor2D, numRows: number, mode: ScatterMode = 'segment'): tf.Tensor3D {
  const [B, K, C] = values.shape;
  if (mode === 'onehot') {
    // int32 then cast: tfjs-backend-wasm 4.22's OneHot writes int bits into a float32 output (1 → 1.4e-45)
    const oh = tf.oneHot(idx, numRows).cast('float32') as tf.Tensor3D; // [B, K, numRows]
    return tf.matMul(oh, values, true, false) as tf.Tensor3D; // [B, numRows, K]·[B, K, C] → [B, numRows, C]
  }
  if (mode !== 'segment') throw new Error(`scatterAdd: mode must be 'segment' or 'onehot', got ${String(mode)}`);
  const offsets = tf.range(0, B * numRows, numRows, 'int32').reshape([B, 1]); // [B, 1] = b·numRows
  const ids = tf.add(idx, offsets).reshape([B * K]) as tf.Tensor1D; // [B·K]
  const summed = tf.unsortedSegmentSum(values.reshape([B * K, C]), ids, B * numRows); // [B·K, C] → [B·numRows, C]
  return summed.reshape([B, numRows, C]) as tf.Tensor3D;
}

/**
 * Merge any per-token tensor with a sum reduction (ToMe's `merge(x, mode="sum")`).
 * @param y [B, N, C] (already size-weighted when averaging)
 * @param modulate optional PYRA re-activation of the source rows (never applied to sizes)
 * @returns [B, N − r, C]
 */
export function mergeSum(m: Matching, y: tf.Tensor3D, modulate?: SourceModulator, mode: ScatterMode = 'segment'): tf.Tensor3D {
  const [B, N, C] = y.shape;
  if (N !== m.n || B !== m.src.shape[0]) {
    throw new Error(`mergeSum: tensor [${y.shape}] does not match the matching (batch ${m.src.shape[0]}, ${m.n} tokens)`);
  }
  const { a, b } = splitParity(y); // [B,na,C], [B,nb,C]
  const unm = batchGather(a, m.unm); // [B, na − r, C]
  let src = batchGather(a, m.src); // [B, r, C]
  if (modulate) src = modulate(src, batchGather(b, m.dst));
  const dst = tf.add(b, scatterAdd(src, m.dst, m.nb, mode)) as tf.Tensor3D; // [B, nb, C]
  if (m.distillToken) {
    const nu = m.na - m.r;
    return tf.concat(
      [unm.slice([0, 0, 0], [B, 1, C]), dst.slice([0, 0, 0], [B, 1, C]), unm.slice([0, 1, 0], [B, nu - 1, C]), dst.slice([0, 1, 0], [B, m.nb - 1, C])],
      1,
    ) as tf.Tensor3D;
  }
  return tf.concat([unm, dst], 1) as tf.Tensor3D; // [B, N − r, C]
}

/** Token sizes [B, N, 1]: the tracked sizes, or all ones before the first merge. */
export function sizesOrOnes(x: tf.Tensor3D, size: tf.Tensor3D | null): tf.Tensor3D {
  if (size) return size;
  const [B, N] = x.shape;
  return tf.ones([B, N, 1]) as tf.Tensor3D;
}

/**
 * Size-weighted average merge (ToMe `merge_wavg`; PYRA's merge when `modulate` is given).
 * @param x [B, N, D]; size [B, N, 1] or null (= ones)
 * @returns x' [B, N − r, D] and size' [B, N − r, 1]
 */
export function mergeWavg(
  m: Matching,
  x: tf.Tensor3D,
  size: tf.Tensor3D | null,
  opts: { modulate?: SourceModulator; scatter?: ScatterMode } = {},
): { x: tf.Tensor3D; size: tf.Tensor3D } {
  const s = sizesOrOnes(x, size);
  const merged = mergeSum(m, tf.mul(x, s) as tf.Tensor3D, opts.modulate, opts.scatter);
  const newSize = mergeSum(m, s, undefined, opts.scatter);
  return { x: tf.div(merged, newSize) as tf.Tensor3D, size: newSize };
}

/** Identity source map [B, N, N] (every token holds itself), the state before any merge. */
export function initialSource(batch: number, numTokens: number): tf.Tensor3D {
  return tf.tidy(() => tf.broadcastTo(tf.eye(numTokens).reshape([1, numTokens, numTokens]), [batch, numTokens, numTokens]) as tf.Tensor3D);
}

/**
 * Source tracking (ToMe `merge_source`): merge the 0/1 map [B, N, N0] with an amax reduction. Token groups are
 * disjoint, so the sum of merged rows is already 0/1; the min(·, 1) makes that explicit (= amax on 0/1 partitions).
 * @returns [B, N − r, N0]
 */
export function mergeSource(m: Matching, source: tf.Tensor3D | null, numTokens: number, batch: number): tf.Tensor3D {
  const src = source ?? initialSource(batch, numTokens);
  const out = tf.minimum(mergeSum(m, src, undefined, 'segment'), 1) as tf.Tensor3D;
  if (!source) src.dispose();
  return out;
}
