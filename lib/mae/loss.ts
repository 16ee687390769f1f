/**
 * The MAE reconstruction loss (MAE `models_mae.py` `forward_loss`).
 *
 * - norm_pix target: per patch vector t (V = p²·C values), t ← (t − mean(t)) / √(var(t) + 1e-6) with the **unbiased**
 *   variance Σ(t − mean)²/(V − 1) (torch `Tensor.var` default).
 * - per-patch MSE ℓ_i = mean over the V values of (pred − target)²;
 * - loss = Σ_i m_i·ℓ_i / Σ_i m_i over all patches of the batch, m = 1 for removed (masked) patches only.
 */
import * as tf from '@tensorflow/tfjs';

/** Epsilon added to the unbiased variance in the norm-pix target (MAE: 1e-6). */
export const NORM_PIX_EPS = 1e-6;

/** Normalise every patch vector along the last axis: (t − μ)/√(var_unbiased + 1e-6). [..., V] → [..., V]. */
export function normPixTarget(target: tf.Tensor): tf.Tensor {
  const V = target.shape[target.rank - 1];
  if (V < 2) throw new Error(`normPixTarget: patch vectors need ≥ 2 values for an unbiased variance, got ${V}`);
  return tf.tidy(() => {
    const axis = target.rank - 1;
    const mean = tf.mean(target, axis, true);
    const xc = tf.sub(target, mean);
    const varU = tf.div(tf.sum(tf.square(xc), axis, true), V - 1);
    return tf.div(xc, tf.sqrt(tf.add(varU, NORM_PIX_EPS)));
  });
}

/** Per-patch mean squared error: pred, target [B, N, V] → [B, N]. */
export function perPatchMse(pred: tf.Tensor3D, target: tf.Tensor3D): tf.Tensor2D {
  if (pred.shape.join() !== target.shape.join()) {
    throw new Error(`perPatchMse: prediction [${pred.shape}] and target [${target.shape}] differ`);
  }
  return tf.tidy(() => tf.mean(tf.squaredDifference(pred, target), -1) as tf.Tensor2D);
}

/**
 * Mean per-patch MSE over the masked patches only: Σ m·ℓ / Σ m. pred, target [B, N, V]; mask [B, N] (1 = removed).
 * Visible patches (m = 0) contribute neither to the value nor to the gradient.
 */
export function maskedPatchMse(pred: tf.Tensor3D, target: tf.Tensor3D, mask: tf.Tensor2D): tf.Scalar {
  const [B, N] = pred.shape;
  if (mask.shape[0] !== B || mask.shape[1] !== N) {
    throw new Error(`maskedPatchMse: mask must be [${B}, ${N}] like the prediction, got [${mask.shape}]`);
  }
  return tf.tidy(() => {
    const l = perPatchMse(pred, target); // [B, N]
    return tf.div(tf.sum(tf.mul(l, mask)), tf.sum(mask)) as tf.Scalar;
  });
}
