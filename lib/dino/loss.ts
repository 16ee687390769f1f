/**
 * The three DINOv2 losses with upstream's bookkeeping (DINOv2 `dinov2/loss/dino_clstoken_loss.py`,
 * `ibot_patch_loss.py`, `koleo_loss.py`, `ssl_meta_arch.py`). H(p, s) = −Σ_k p_k log softmax(s/τ_s)_k, τ_s = 0.1.
 *
 * - **DINO (CLS)**: teacher = the 2 global crops only. Pairs: every (teacher g_i, student local l_j) and the two
 *   cross-global pairs (teacher g2, student g1), (teacher g1, student g2) — the teacher chunks are swapped so a global
 *   crop is never matched with itself. Each pair contributes the batch mean of H; the sum is divided by
 *   (n_global − 1)·n_global + max(n_global·n_local, 1) = 2 + max(2·n_local, 1): 18 for 8 local crops. (Upstream's
 *   `max(·, 1)` makes the denominator 3, not 2, when there are no local crops; kept for parity.)
 * - **iBOT (masked patches)**: for image b with mask set M_b, (1/|M_b|)·Σ_{p∈M_b} H(P_t(b,p), s(b,p)); summed over
 *   images and divided by the number of global-crop images 2B (unmasked images count in the denominator).
 * - **KoLeo**: on L2-normalised pre-head backbone CLS vectors of one global-crop chunk, −(1/n)·Σ_i log(d_i + 1e-8),
 *   d_i = ‖ẑ_i − ẑ_nn(i) + 1e-8‖₂ (PyTorch `PairwiseDistance(eps=1e-8)` adds eps to the difference),
 *   nn(i) = argmax_{j≠i} ẑ_i·ẑ_j. Computed per chunk (g1, g2 separately) and summed.
 * - **Total** = 1·DINO + 0.1·(KoLeo_g1 + KoLeo_g2) + 1·iBOT (upstream's ×2 and ×½ on iBOT cancel).
 * Rows are crop-major everywhere: global [g1 of every image; g2 of every image], local [l1 …; l2 …; …].
 */
import * as tf from '@tensorflow/tfjs';
import { stopGradient } from './teacher';
import { fmtValue } from '../check';

/** Student temperature τ_s (DINOv2: 0.1). */
export const STUDENT_TEMP = 0.1;

/** Number of DINO loss terms upstream divides by: (nGlobal − 1)·nGlobal + max(nGlobal·nLocal, 1). 18 for 2 + 8. */
export function dinoPairCount(nGlobal: number, nLocal: number): number {
  if (nGlobal !== 2) throw new Error(`DINO loss: expected 2 global crops (the teacher views are swapped pairwise), got ${fmtValue(nGlobal)}`);
  if (!Number.isInteger(nLocal) || nLocal < 0) throw new Error(`DINO loss: local crop count must be an integer ≥ 0, got ${fmtValue(nLocal)}`);
  return (nGlobal - 1) * nGlobal + Math.max(nGlobal * nLocal, 1);
}

/** Swap the two crop chunks of [2B, K] rows: [g1; g2] → [g2; g1]. */
export function swapGlobalChunks<T extends tf.Tensor>(x: T): T {
  const n = x.shape[0];
  if (n % 2) throw new Error(`swapGlobalChunks: expected an even number of rows (2 global crops × B), got ${fmtValue(n)}`);
  const [a, b] = tf.split(x, 2, 0);
  return tf.concat([b, a], 0) as T;
}

export interface DinoClsLossInput {
  /** Student head logits of the global crops [2B, K] (crop-major: g1 rows, then g2 rows). */
  studentGlobal: tf.Tensor2D;
  /** Student head logits of the local crops [nLocal·B, K] (crop-major), or null without local crops. */
  studentLocal: tf.Tensor2D | null;
  /** Teacher targets of the global crops [2B, K] in crop order (g1; g2), NOT swapped: the loss swaps them. */
  teacherProbs: tf.Tensor2D;
  nLocal: number;
  studentTemp?: number;
}

/**
 * DINO CLS loss (see the module note). Returns the total and its local / global parts (already divided by the pair
 * count). Call inside a tidy.
 */
export function dinoClsLoss(a: DinoClsLossInput): { loss: tf.Scalar; local: tf.Scalar; global: tf.Scalar; pairs: number } {
  const tau = a.studentTemp ?? STUDENT_TEMP;
  const [n2, K] = a.teacherProbs.shape;
  if (n2 % 2) throw new Error(`DINO loss: teacher targets must have 2·B rows (2 global crops), got ${fmtValue(n2)}`);
  const B = n2 / 2;
  if (a.studentGlobal.shape[0] !== n2 || a.studentGlobal.shape[1] !== K) {
    throw new Error(`DINO loss: student global logits must be [${n2}, ${K}] (2 global crops × B=${B}), got [${a.studentGlobal.shape}]`);
  }
  const pairs = dinoPairCount(2, a.nLocal);
  const nl = a.studentLocal ? a.studentLocal.shape[0] : 0;
  if (nl !== a.nLocal * B || (a.studentLocal && a.studentLocal.shape[1] !== K)) {
    throw new Error(`DINO loss: student local logits must be [${a.nLocal}·${B} = ${a.nLocal * B}, ${K}] (nLocal × B), got ${a.studentLocal ? `[${a.studentLocal.shape}]` : 'none'}`);
  }
  const t = swapGlobalChunks(a.teacherProbs); // [2B, K]: rows of g1 now hold the g2 targets and vice versa
  // global: Σ over the two cross pairs of mean_b H = 2 · mean over 2B rows
  const lsmG = tf.logSoftmax(tf.div(a.studentGlobal, tau), -1);
  const global = tf.div(tf.mul(tf.neg(tf.mean(tf.sum(tf.mul(t, lsmG), 1))), 2), pairs) as tf.Scalar;
  let local: tf.Scalar = tf.scalar(0);
  if (a.nLocal > 0 && a.studentLocal) {
    // Σ_i Σ_j mean_b H(t_i, l_j) = −(1/B) Σ_b Σ_k (Σ_i t_{i,b,k}) (Σ_j lsm_{j,b,k})
    const tSum = tf.sum(a.teacherProbs.reshape([2, B, K]), 0); // [B, K] (order of i is irrelevant)
    const lsmL = tf.logSoftmax(tf.div(a.studentLocal, tau), -1).reshape([a.nLocal, B, K]); // [nLocal, B, K]
    const lSum = tf.sum(lsmL, 0); // [B, K]
    local = tf.div(tf.neg(tf.div(tf.sum(tf.mul(tSum, lSum)), B)), pairs) as tf.Scalar;
  }
  return { loss: tf.add(local, global) as tf.Scalar, local, global, pairs };
}

/**
 * Per-masked-row weights 1/|M_b| (upstream's `masks_weight`) from per-image mask counts, in the row order of the
 * flattened masked positions (image-major). `counts[b]` = |M_b|.
 */
export function ibotWeights(counts: readonly number[]): Float32Array {
  const total = counts.reduce((a, b) => a + b, 0);
  const w = new Float32Array(total);
  let o = 0;
  for (const c of counts) for (let i = 0; i < c; i++) w[o++] = 1 / Math.max(c, 1);
  return w;
}

/**
 * iBOT masked-patch loss: −(1/nImages)·Σ_rows w_row·Σ_k P_t log softmax(s/τ_s) with w = 1/|M_b| of the row's image.
 * student/teacherProbs [M, K] over the M masked positions; weights [M]; nImages = 2B (all global-crop images).
 * Call inside a tidy.
 */
export function ibotPatchLoss(studentMasked: tf.Tensor2D, teacherProbs: tf.Tensor2D, weights: tf.Tensor1D | Float32Array, nImages: number, studentTemp = STUDENT_TEMP): tf.Scalar {
  const [M, K] = teacherProbs.shape;
  if (studentMasked.shape[0] !== M || studentMasked.shape[1] !== K) {
    throw new Error(`iBOT loss: student masked logits [${studentMasked.shape}] do not match teacher targets [${M}, ${K}]`);
  }
  const w = weights instanceof Float32Array ? tf.tensor1d(weights) : weights;
  if (w.shape[0] !== M) throw new Error(`iBOT loss: ${w.shape[0]} weights for ${M} masked rows`);
  if (!(Number.isInteger(nImages) && nImages > 0)) throw new Error(`iBOT loss: nImages (2B) must be a positive integer, got ${fmtValue(nImages)}`);
  if (M === 0) return tf.scalar(0);
  const h = tf.sum(tf.mul(teacherProbs, tf.logSoftmax(tf.div(studentMasked, studentTemp), -1)), 1); // [M]
  return tf.div(tf.neg(tf.sum(tf.mul(h, w))), nImages) as tf.Scalar;
}

/**
 * KoLeo loss of one chunk x [n, D] (n ≥ 2): −mean_i log(‖ẑ_i − ẑ_nn(i) + eps‖ + eps), ẑ = x/max(‖x‖, eps).
 * The nearest neighbour is chosen without gradient (argmax), the distance is differentiable. Call inside a tidy.
 */
export function koleoLoss(x: tf.Tensor2D, eps = 1e-8): tf.Scalar {
  const n = x.shape[0];
  if (x.rank !== 2 || n < 2) throw new Error(`KoLeo loss: expected [n ≥ 2, D] vectors (a nearest neighbour needs 2 samples), got [${x.shape}]`);
  const z = tf.div(x, tf.maximum(tf.sqrt(tf.sum(tf.square(x), -1, true)), eps)) as tf.Tensor2D; // [n, D]
  // The neighbour is picked without gradient: argMax → one-hot selection matrix [n, n], then z_nn = S·z (exactly the
  // neighbour's row; the gradient flows to z only). No read-back, so it runs on every backend (webgpu cannot read
  // synchronously in Node), and no integer index sits on the tape (tfjs's GatherV2 gradient rejects int indices).
  const select = tf.tidy(() => {
    const zs = stopGradient(z);
    const dots = tf.matMul(zs, zs, false, true); // [n, n]
    const eye = tf.eye(n);
    const masked = tf.add(tf.mul(dots, tf.sub(1, eye)), tf.neg(eye)); // diagonal := −1 (upstream's trick)
    // int32 one-hot then cast (tfjs-backend-wasm 4.22 writes int bits into a float32 OneHot output)
    return stopGradient(tf.oneHot(tf.argMax(masked, 1), n).cast('float32')); // [n, n]
  });
  const nn = tf.matMul(select, z); // [n, D]
  const d = tf.norm(tf.add(tf.sub(z, nn), eps), 'euclidean', 1); // [n]
  return tf.neg(tf.mean(tf.log(tf.add(d, eps)))) as tf.Scalar;
}

/** KoLeo summed over the global-crop chunks: cls [nChunks·B, D] split crop-major into `nChunks` (2) parts. */
export function koleoPerChunk(cls: tf.Tensor2D, nChunks = 2): tf.Scalar {
  if (cls.shape[0] % nChunks) throw new Error(`KoLeo: ${cls.shape[0]} rows do not split into ${nChunks} global-crop chunks`);
  return tf.addN(tf.split(cls, nChunks, 0).map((c) => koleoLoss(c as tf.Tensor2D))) as tf.Scalar;
}

/** Loss weights (DINOv2 defaults: dino 1, koleo 0.1, ibot 1). */
export interface DinoLossWeights {
  dino: number;
  koleo: number;
  ibot: number;
}

export const DINO_LOSS_WEIGHTS: DinoLossWeights = Object.freeze({ dino: 1, koleo: 0.1, ibot: 1 });

/** total = w.dino·dino + w.koleo·koleo + w.ibot·ibot. */
export function combineDinoLosses(parts: { dino: tf.Scalar; koleo: tf.Scalar; ibot: tf.Scalar }, w: DinoLossWeights = DINO_LOSS_WEIGHTS): tf.Scalar {
  return tf.addN([tf.mul(parts.dino, w.dino), tf.mul(parts.koleo, w.koleo), tf.mul(parts.ibot, w.ibot)]) as tf.Scalar;
}
