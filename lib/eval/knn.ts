/**
 * Weighted k-nearest-neighbour classifier on frozen features (DINO `eval_knn.py` / DINOv2 `eval/knn.py`):
 * features are L2-normalised, the k most cosine-similar training samples vote for their class with weight
 * exp(similarity / T) (T = 0.07), and the class with the largest summed weight wins. Default k = 20 (also commonly
 * reported: 10, 100, 200). Top-1 and top-5 accuracies (top-5 only with ≥ 5 classes).
 *
 * Features: by default the last block's CLS token after the final norm (`knnFeatures(cache)`), which is DINOv2's
 * `x_norm_clstoken`, the backbone output its kNN evaluation uses.
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys, fmtValue, checkNumber } from '../check';
import { FeatureCache } from './features';

export interface KnnConfig {
  /** neighbours (one or several values; each ≤ the training-set size) */
  k: number | readonly number[];
  /** softmax-like temperature of the vote weights exp(sim / T) */
  temperature: number;
  /** classes (null = max label + 1 over both splits) */
  numClasses: number | null;
  /** test rows per similarity chunk (memory: chunk × Ntrain floats) */
  chunk: number;
}

export const KNN_DEFAULTS: KnnConfig = Object.freeze({ k: 20, temperature: 0.07, numClasses: null, chunk: 256 });

export interface KnnResult {
  k: number;
  top1: number;
  /** null with fewer than 5 classes */
  top5: number | null;
  /** predicted class per test row */
  predictions: Int32Array;
}

/** The last block's CLS tokens of a cache, [N, D] (caller disposes). */
export function knnFeatures(c: FeatureCache): tf.Tensor2D {
  const [N, n, D] = c.cls.shape;
  return tf.tidy(() => c.cls.slice([0, n - 1, 0], [N, 1, D]).reshape([N, D]) as tf.Tensor2D);
}

/**
 * Classify `test` features by weighted kNN over `train` features.
 * @param train [Ntrain, D] features and [Ntrain] int32 labels; @param test [Ntest, D] and [Ntest] labels.
 * @returns one result per k, in the order given.
 */
export function knnClassify(
  train: { features: tf.Tensor2D; labels: tf.Tensor1D },
  test: { features: tf.Tensor2D; labels: tf.Tensor1D },
  config: Partial<KnnConfig> = {},
): KnnResult[] {
  checkKeys('KnnConfig', config, ['k', 'temperature', 'numClasses', 'chunk']);
  const cfg: KnnConfig = { ...KNN_DEFAULTS, ...config };
  const ks = typeof cfg.k === 'number' ? [cfg.k] : [...cfg.k];
  const [Ntr, D] = train.features.shape;
  const [Nte, D2] = test.features.shape;
  if (D !== D2) throw new Error(`knnClassify: train features have width ${D}, test features ${D2}`);
  if (train.labels.shape[0] !== Ntr || test.labels.shape[0] !== Nte) {
    throw new Error(`knnClassify: ${Ntr}/${Nte} feature rows but ${train.labels.shape[0]}/${test.labels.shape[0]} labels (train/test)`);
  }
  for (const k of ks) if (!Number.isInteger(k) || k < 1 || k > Ntr) throw new Error(`knnClassify: k must be an integer in [1, ${Ntr}] (training samples), got ${fmtValue(k)}`);
  checkNumber('knnClassify: temperature', cfg.temperature, { gt: 0 });
  const maxOf = (t: tf.Tensor1D): number => tf.tidy(() => tf.max(t).dataSync()[0]);
  const C = cfg.numClasses ?? Math.max(maxOf(train.labels), maxOf(test.labels)) + 1;
  const kMax = Math.max(...ks);
  const correct1 = ks.map(() => 0);
  const correct5 = ks.map(() => 0);
  const preds = ks.map(() => new Int32Array(Nte));
  const trainN = tf.tidy(() => tf.transpose(l2normalize(train.features))); // [D, Ntr]
  const trainLabels = train.labels.toInt();
  try {
    for (let s = 0; s < Nte; s += cfg.chunk) {
      const b = Math.min(cfg.chunk, Nte - s);
      const out = tf.tidy(() => {
        const q = l2normalize(test.features.slice([s, 0], [b, D])); // [b, D]
        const sim = tf.matMul(q, trainN); // [b, Ntr] cosine similarities
        const { values, indices } = tf.topk(sim, kMax, true); // [b, kMax], sorted descending
        const nbLabels = tf.gather(trainLabels, indices.flatten()).reshape([b, kMax]); // [b, kMax]
        const w = tf.exp(tf.div(values, cfg.temperature)); // [b, kMax]
        const y = test.labels.slice([s], [b]).toInt();
        return ks.map((k) => {
          const oneHot = tf.oneHot(nbLabels.slice([0, 0], [b, k]), C); // [b, k, C]
          const votes = tf.sum(tf.mul(oneHot, w.slice([0, 0], [b, k]).expandDims(2)), 1); // [b, C]
          const top = tf.topk(votes, Math.min(5, C)).indices; // [b, ≤5]
          const top1 = top.slice([0, 0], [b, 1]).reshape([b]);
          const hit1 = tf.sum(tf.equal(top1, y).toInt());
          const hit5 = C >= 5 ? tf.sum(tf.any(tf.equal(top, y.expandDims(1)), 1).toInt()) : tf.scalar(0, 'int32');
          return [top1, hit1, hit5];
        });
      });
      out.forEach(([top1, hit1, hit5], i) => {
        preds[i].set(top1.dataSync() as Int32Array, s);
        correct1[i] += hit1.dataSync()[0];
        correct5[i] += hit5.dataSync()[0];
        tf.dispose([top1, hit1, hit5]);
      });
    }
  } finally {
    tf.dispose([trainN, trainLabels]);
  }
  return ks.map((k, i) => ({ k, top1: correct1[i] / Nte, top5: C >= 5 ? correct5[i] / Nte : null, predictions: preds[i] }));
}

function l2normalize(x: tf.Tensor2D): tf.Tensor2D {
  // x / max(‖x‖, 1e-12) (torch F.normalize)
  return tf.div(x, tf.maximum(tf.norm(x, 'euclidean', 1, true), 1e-12)) as tf.Tensor2D;
}

/** kNN on two feature caches with their last-block CLS features (DINOv2's default). */
export function knnEvaluate(train: FeatureCache, test: FeatureCache, config: Partial<KnnConfig> = {}): KnnResult[] {
  const a = knnFeatures(train);
  const b = knnFeatures(test);
  try {
    return knnClassify({ features: a, labels: train.labels }, { features: b, labels: test.labels }, config);
  } finally {
    tf.dispose([a, b]);
  }
}
