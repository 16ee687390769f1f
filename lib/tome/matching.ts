/**
 * ToMe bipartite soft matching, exactly as the reference `bipartite_soft_matching` (ToMe `tome/merge.py`).
 *
 * For the current token order (N tokens):
 * 1. A = even positions (cls = A[0]), B = odd positions (a DeiT distillation token = B[0]);
 * 2. cosine similarity S = k̂_A k̂_Bᵀ of the head-averaged keys [N_A, N_B];
 * 3. cls row → −∞ (never a source), distillation column → −∞ (never a destination);
 * 4. r ← min(r, ⌊(N − protected)/2⌋);
 * 5. each A token keeps its best edge (max, argmax over B); A tokens ranked by that score, descending: the first r are
 *    the sources (src, in rank order: PYRA's W_r is indexed by this rank), the rest unmerged (unm), sorted back into
 *    ascending position when there is a cls token; dst = argmax of each source.
 * The merge (merge.ts) then outputs [unm ‖ all of B] (with a distillation token: [cls, dist, rest of unm, rest of B]).
 *
 * Gradient-free: the indices are computed in a `gradientFree` scope, so nothing about the matching enters the
 * gradient tape (tfjs has no gradient for TopK and rejects int32 gradients); gradients reach the keys only through
 * the attention output, as in the reference's `torch.no_grad()`.
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys } from '../check';
import { mergeCap } from './schedule';

/** Result of one matching step. Index tensors are int32 and carry no gradient. */
export interface Matching {
  /** Tokens before the merge. */
  n: number;
  /** |A| = ⌈N/2⌉ (even positions), |B| = ⌊N/2⌋ (odd positions). */
  na: number;
  nb: number;
  /** Tokens merged away (after the cap), 1 ≤ r ≤ ⌊(N − protected)/2⌋. */
  r: number;
  /** [B, r] A-side indices of the sources, by descending similarity (rank order). */
  src: tf.Tensor2D;
  /** [B, r] B-side index each source merges into (several sources may share one). */
  dst: tf.Tensor2D;
  /** [B, N_A − r] A-side indices of the unmerged tokens (ascending when classToken). */
  unm: tf.Tensor2D;
  classToken: boolean;
  distillToken: boolean;
}

export interface MatchingOptions {
  /** Position 0 is a cls token: its row is masked and unm is sorted so it stays first (default true). */
  classToken?: boolean;
  /** Position 1 is a DeiT distillation token (B[0]): its column is masked (default false). */
  distillToken?: boolean;
}

/**
 * Run `fn` with no gradient recorded: the tensors it returns are constants for the tape (like `torch.no_grad()`).
 * Implemented as an input-less `tf.customGrad`, whose forward runs untaped inside the engine's kernel scope.
 */
export function gradientFree<T extends tf.Tensor>(fn: () => T): T {
  let out: T | null = null;
  const f = tf.customGrad(() => {
    out = fn();
    return { value: out, gradFunc: () => [] };
  });
  const value = (f as unknown as () => tf.Tensor)();
  if (out === null) throw new Error('gradientFree: function did not run');
  return value as T;
}

/** Split [B, N, C] by position parity: a = rows 0, 2, 4, … [B, ⌈N/2⌉, C], b = rows 1, 3, … [B, ⌊N/2⌋, C]. Differentiable. */
export function splitParity(x: tf.Tensor3D): { a: tf.Tensor3D; b: tf.Tensor3D } {
  const [B, N, C] = x.shape;
  const na = Math.ceil(N / 2);
  const nb = Math.floor(N / 2);
  const padded = N % 2 ? tf.pad(x, [[0, 0], [0, 1], [0, 0]]) : x; // [B, 2·na, C]
  const pairs = padded.reshape([B, na, 2, C]); // [B, na, (even, odd), C]
  const a = pairs.slice([0, 0, 0, 0], [B, na, 1, C]).reshape([B, na, C]) as tf.Tensor3D;
  const b = pairs.slice([0, 0, 1, 0], [B, nb, 1, C]).reshape([B, nb, C]) as tf.Tensor3D;
  return { a, b };
}

/** Per-batch gather: x [B, N, C], idx [B, K] int32 → [B, K, C] (flattened gather; gradient = unsortedSegmentSum). */
export function batchGather(x: tf.Tensor3D, idx: tf.Tensor2D): tf.Tensor3D {
  const [B, N, C] = x.shape;
  const K = idx.shape[1];
  const offsets = tf.range(0, B * N, N, 'int32').reshape([B, 1]); // [B, 1] = b·N
  const flatIdx = tf.add(idx, offsets).reshape([B * K]); // [B·K]
  return tf.gather(x.reshape([B * N, C]), flatIdx).reshape([B, K, C]) as tf.Tensor3D; // [B·N, C] → [B·K, C] → [B, K, C]
}

/**
 * Bipartite soft matching on the merge metric (head-averaged keys).
 * @param metric [B, N, dh] keys averaged over heads (any float width)
 * @param r tokens to remove; capped at ⌊(N − protected)/2⌋
 * @returns the matching, or null when the effective r is 0 (nothing to merge)
 * @example const m = bipartiteSoftMatching(keyMean, 16); // m.src [B,16], m.dst [B,16], m.unm [B, ⌈N/2⌉ − 16]
 */
export function bipartiteSoftMatching(metric: tf.Tensor3D, r: number, opts: MatchingOptions = {}): Matching | null {
  checkKeys('bipartiteSoftMatching options', opts, ['classToken', 'distillToken']);
  if (metric.rank !== 3) throw new Error(`bipartiteSoftMatching: metric must be [B, N, C], got shape [${metric.shape}]`);
  if (!Number.isInteger(r) || r < 0) throw new Error(`bipartiteSoftMatching: r must be a non-negative integer, got ${r}`);
  const classToken = opts.classToken ?? true;
  const distillToken = opts.distillToken ?? false;
  const [B, N] = metric.shape;
  const prot = (classToken ? 1 : 0) + (distillToken ? 1 : 0);
  const rr = Math.min(r, mergeCap(N, prot));
  if (rr <= 0) return null;
  const na = Math.ceil(N / 2);
  const nb = Math.floor(N / 2);
  const packed = gradientFree(() => {
    const kn = tf.div(metric, tf.norm(metric, 'euclidean', -1, true)) as tf.Tensor3D; // [B,N,C]
    const { a, b } = splitParity(kn);
    let scores = tf.matMul(a, b, false, true) as tf.Tensor3D; // [B,na,nb]
    if (classToken || distillToken) {
      const mask = new Float32Array(na * nb);
      if (classToken) for (let j = 0; j < nb; j++) mask[j] = -Infinity; // row 0
      if (distillToken) for (let i = 0; i < na; i++) mask[i * nb] = -Infinity; // column 0
      scores = tf.add(scores, tf.tensor3d(mask, [1, na, nb])) as tf.Tensor3D;
    }
    const nodeMax = tf.max(scores, -1) as tf.Tensor2D; // [B,na]
    const nodeIdx = tf.argMax(scores, -1) as tf.Tensor2D; // [B,na] int32
    const edgeIdx = tf.topk(nodeMax, na, true).indices; // [B,na] descending (ties: lower index first)
    const src = edgeIdx.slice([0, 0], [B, rr]); // [B,r]
    let unm = edgeIdx.slice([0, rr], [B, na - rr]); // [B,na−r]
    if (classToken) unm = tf.neg(tf.topk(tf.neg(unm.cast('float32')), na - rr, true).values).cast('int32'); // ascending
    const dst = batchGather(nodeIdx.reshape([B, na, 1]) as tf.Tensor3D, src as tf.Tensor2D).reshape([B, rr]); // [B,r]
    return tf.concat([src, dst, unm], 1) as tf.Tensor2D; // [B, r + r + (na − r)]
  });
  const src = packed.slice([0, 0], [B, rr]) as tf.Tensor2D;
  const dst = packed.slice([0, rr], [B, rr]) as tf.Tensor2D;
  const unm = packed.slice([0, 2 * rr], [B, na - rr]) as tf.Tensor2D;
  packed.dispose();
  return { n: N, na, nb, r: rr, src, dst, unm, classToken, distillToken };
}
