/**
 * Classification losses.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * Mean cross-entropy with label smoothing ε (timm `LabelSmoothingCrossEntropy`):
 * loss = (1 − ε)·NLL(y) + ε·mean_k(−log p_k), i.e. CE against (1 − ε)·onehot + ε/K.
 * @param logits [B, K]; @param labels [B] int32 class indices.
 */
export function crossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D, smoothing = 0): tf.Scalar {
  const [B, K] = logits.shape;
  if (labels.shape[0] !== B) throw new Error(`crossEntropy: ${B} logits rows but ${labels.shape[0]} labels`);
  if (!(smoothing >= 0 && smoothing < 1)) throw new Error(`crossEntropy: smoothing must be in [0, 1), got ${smoothing}`);
  return tf.tidy(() => {
    const logp = tf.logSoftmax(logits, -1); // [B,K]
    const onehot = tf.oneHot(labels.toInt(), K); // [B,K]
    const nll = tf.neg(tf.sum(tf.mul(logp, onehot), -1)); // [B]
    if (smoothing === 0) return tf.mean(nll) as tf.Scalar;
    const smooth = tf.neg(tf.mean(logp, -1)); // [B]
    return tf.mean(tf.add(tf.mul(nll, 1 - smoothing), tf.mul(smooth, smoothing))) as tf.Scalar;
  });
}

/** Top-1 accuracy of logits [B, K] against labels [B] (a number; a synchronous read — `accuracyAsync` on webgpu). */
export function accuracy(logits: tf.Tensor2D, labels: tf.Tensor1D): number {
  return tf.tidy(() => top1(logits, labels).dataSync()[0]);
}

/** `accuracy` with an awaited read (every backend, webgpu included). */
export async function accuracyAsync(logits: tf.Tensor2D, labels: tf.Tensor1D): Promise<number> {
  const a = tf.tidy(() => top1(logits, labels));
  try {
    return (await a.data())[0];
  } finally {
    a.dispose();
  }
}

function top1(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.mean(tf.equal(tf.argMax(logits, -1), labels.toInt()).toFloat()) as tf.Scalar;
}
