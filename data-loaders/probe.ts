/**
 * Cheap measurements of what a dataset lets a model learn, used to document the embedded default:
 *
 * - `ridgeProbe`: a linear classifier (one-vs-all ridge regression to one-hot targets, features standardised, λ picked
 *   on a validation split) — the "linear probe on raw pixels" when fed flattened pixels.
 * - `randomConvFeatures`: a fixed random nonlinear feature map (seeded 5×5 conv filters → ReLU → spatial mean/max
 *   pooling), a stand-in for "a small model can learn this" that needs no training.
 * - `domainGap`: per-channel statistics of two image sets and the accuracy of a linear probe telling them apart.
 *
 * Everything runs on the tfjs backend in use, inside tidies, and leaves no tensors behind.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../lib/rng';
import { Img } from './image';

/** Flatten images (all the same shape) into an [n, H·W·C] matrix. */
export function flattenImages(imgs: Img[]): { x: Float32Array; n: number; d: number } {
  if (imgs.length === 0) throw new Error('flattenImages: no images');
  const d = imgs[0].data.length;
  const x = new Float32Array(imgs.length * d);
  imgs.forEach((img, i) => {
    if (img.data.length !== d) throw new Error(`flattenImages: image ${i} has ${img.data.length} values, image 0 has ${d}`);
    x.set(img.data, i * d);
  });
  return { x, n: imgs.length, d };
}

export interface RidgeProbeResult {
  /** Accuracy on the test split with the chosen λ. */
  testAcc: number;
  /** Accuracy on the validation split with the chosen λ. */
  valAcc: number;
  lambda: number;
  /** 1 / number of classes. */
  chance: number;
  /** Predicted class of every test row with the chosen λ (for other metrics, e.g. macro F1). */
  testPred?: Int32Array;
}

/** Solve (K + λI) A = Y for symmetric positive definite K (n×n, row-major) via Cholesky; Y is n×k. */
function cholSolve(K: Float64Array, n: number, lambda: number, Y: Float64Array, k: number): Float64Array {
  const L = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = K[i * n + j] + (i === j ? lambda : 0);
      for (let t = 0; t < j; t++) s -= L[i * n + t] * L[j * n + t];
      if (i === j) {
        if (s <= 0) throw new Error(`ridgeProbe: matrix not positive definite at ${i} (λ = ${lambda})`);
        L[i * n + i] = Math.sqrt(s);
      } else L[i * n + j] = s / L[j * n + j];
    }
  }
  const Z = new Float64Array(n * k);
  for (let c = 0; c < k; c++) {
    for (let i = 0; i < n; i++) {
      let s = Y[i * k + c];
      for (let t = 0; t < i; t++) s -= L[i * n + t] * Z[t * k + c];
      Z[i * k + c] = s / L[i * n + i];
    }
    for (let i = n - 1; i >= 0; i--) {
      let s = Z[i * k + c];
      for (let t = i + 1; t < n; t++) s -= L[t * n + i] * Z[t * k + c];
      Z[i * k + c] = s / L[i * n + i];
    }
  }
  return Z;
}

/**
 * Linear probe: standardise features with train statistics, fit ridge regression to centred one-hot targets in the
 * dual (kernel XXᵀ, n×n), choose λ among `lambdas` (relative to the kernel's mean diagonal) by validation accuracy.
 */
export function ridgeProbe(
  train: { x: Float32Array; y: ArrayLike<number> },
  val: { x: Float32Array; y: ArrayLike<number> },
  test: { x: Float32Array; y: ArrayLike<number> },
  numClasses: number,
  lambdas: readonly number[] = [1e-3, 1e-2, 1e-1, 1, 10],
): RidgeProbeResult {
  const n = train.y.length;
  const d = train.x.length / n;
  if (!Number.isInteger(d)) throw new Error(`ridgeProbe: ${train.x.length} train values are not ${n} rows`);
  // standardise with train statistics
  const mean = new Float64Array(d);
  const sd = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += train.x[i * d + j] / n;
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) sd[j] += (train.x[i * d + j] - mean[j]) ** 2 / n;
  for (let j = 0; j < d; j++) sd[j] = Math.sqrt(sd[j]) + 1e-6;
  const std = (x: Float32Array): Float32Array => {
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = (x[i] - mean[i % d]) / sd[i % d];
    return out;
  };
  const [Ktr, Kva, Kte] = tf.tidy(() => {
    const Xtr = tf.tensor2d(std(train.x), [n, d]);
    const k = (x: Float32Array): tf.Tensor => tf.matMul(tf.tensor2d(std(x), [x.length / d, d]), Xtr, false, true);
    return [k(train.x), k(val.x), k(test.x)].map((t) => t.dataSync() as Float32Array);
  });
  const K = Float64Array.from(Ktr);
  let diag = 0;
  for (let i = 0; i < n; i++) diag += K[i * n + i] / n;
  const Y = new Float64Array(n * numClasses);
  for (let i = 0; i < n; i++) for (let c = 0; c < numClasses; c++) Y[i * numClasses + c] = (train.y[i] === c ? 1 : 0) - 1 / numClasses;
  const acc = (Kx: Float32Array, y: ArrayLike<number>, A: Float64Array, pred?: Int32Array): number => {
    const m = y.length;
    let ok = 0;
    for (let i = 0; i < m; i++) {
      let best = -Infinity;
      let arg = -1;
      for (let c = 0; c < numClasses; c++) {
        let s = 0;
        for (let t = 0; t < n; t++) s += Kx[i * n + t] * A[t * numClasses + c];
        if (s > best) {
          best = s;
          arg = c;
        }
      }
      if (arg === y[i]) ok++;
      if (pred) pred[i] = arg;
    }
    return ok / m;
  };
  let bestRes: RidgeProbeResult | null = null;
  for (const l of lambdas) {
    const A = cholSolve(K, n, l * diag, Y, numClasses);
    const va = acc(Kva, val.y, A);
    if (!bestRes || va > bestRes.valAcc) {
      const testPred = new Int32Array(test.y.length);
      bestRes = { valAcc: va, testAcc: acc(Kte, test.y, A, testPred), lambda: l, chance: 1 / numClasses, testPred };
    }
  }
  return bestRes!;
}

/**
 * Fixed random nonlinear features: `filters` random 5×5×C kernels (seeded, zero-mean), ReLU, then per filter the
 * spatial mean and max over the image and the mean over a 2×2 grid of quadrants → [n, filters·6].
 */
export function randomConvFeatures(imgs: Img[], seed: number, filters = 48): Float32Array {
  const { height: H, width: W, channels: C } = imgs[0];
  const rng = Rng.derive(seed, 'random-conv');
  const kw = new Float32Array(5 * 5 * C * filters);
  for (let i = 0; i < kw.length; i++) kw[i] = rng.normal(0, 1 / Math.sqrt(25 * C));
  const { x, n } = flattenImages(imgs);
  const out = new Float32Array(n * filters * 6);
  const chunk = 128;
  for (let s = 0; s < n; s += chunk) {
    const m = Math.min(chunk, n - s);
    const feats = tf.tidy(() => {
      let xb = tf.tensor4d(x.subarray(s * H * W * C, (s + m) * H * W * C), [m, H, W, C]);
      // per-image standardisation, so the features see structure rather than overall brightness
      const mu = tf.mean(xb, [1, 2, 3], true);
      const sdv = tf.sqrt(tf.add(tf.mean(tf.square(tf.sub(xb, mu)), [1, 2, 3], true), 1e-6));
      xb = tf.div(tf.sub(xb, mu), sdv);
      const y = tf.relu(tf.conv2d(xb, tf.tensor4d(kw, [5, 5, C, filters]), 1, 'same')); // [m, H, W, F]
      const h2 = Math.floor(H / 2);
      const w2 = Math.floor(W / 2);
      const quads = [
        y.slice([0, 0, 0, 0], [m, h2, w2, filters]),
        y.slice([0, 0, w2, 0], [m, h2, W - w2, filters]),
        y.slice([0, h2, 0, 0], [m, H - h2, w2, filters]),
        y.slice([0, h2, w2, 0], [m, H - h2, W - w2, filters]),
      ].map((q) => tf.mean(q, [1, 2]));
      return tf.concat([tf.mean(y, [1, 2]), tf.max(y, [1, 2]), ...quads], 1).dataSync() as Float32Array; // [m, 6F]
    });
    out.set(feats, s * filters * 6);
  }
  return out;
}

/** Per-channel mean/std of a set of images. */
export function imageSetStats(imgs: Img[]): { mean: number[]; std: number[] } {
  const C = imgs[0].channels;
  const s = new Float64Array(C);
  const q = new Float64Array(C);
  let cnt = 0;
  for (const img of imgs) {
    for (let i = 0; i < img.data.length; i++) {
      s[i % C] += img.data[i];
      q[i % C] += img.data[i] ** 2;
    }
    cnt += img.height * img.width;
  }
  const mean = Array.from(s, (v) => v / cnt);
  return { mean, std: Array.from(q, (v, c) => Math.sqrt(Math.max(0, v / cnt - mean[c] ** 2))) };
}

/** Mean HSV saturation of RGB images ([0, 1]). */
export function meanSaturation(imgs: Img[]): number {
  let s = 0;
  let n = 0;
  for (const img of imgs) {
    for (let i = 0; i < img.data.length; i += 3) {
      const mx = Math.max(img.data[i], img.data[i + 1], img.data[i + 2]);
      const mn = Math.min(img.data[i], img.data[i + 1], img.data[i + 2]);
      s += mx > 0 ? (mx - mn) / mx : 0;
      n++;
    }
  }
  return s / n;
}

/**
 * Domain gap between two image sets of the same shape: per-channel statistics, mean saturation, and the test accuracy
 * of a linear probe on raw pixels classifying the domain (0.5 = indistinguishable). Images are split 60/20/20.
 */
export function domainGap(a: Img[], b: Img[]): {
  statsA: { mean: number[]; std: number[] };
  statsB: { mean: number[]; std: number[] };
  saturationA: number;
  saturationB: number;
  domainProbeAcc: number;
} {
  const all = [...a.map((img) => ({ img, y: 0 })), ...b.map((img) => ({ img, y: 1 }))];
  Rng.derive(0, 'domain-gap').shuffle(all);
  const n = all.length;
  const cut1 = Math.floor(n * 0.6);
  const cut2 = Math.floor(n * 0.8);
  const part = (lo: number, hi: number): { x: Float32Array; y: number[] } => ({
    x: flattenImages(all.slice(lo, hi).map((e) => e.img)).x,
    y: all.slice(lo, hi).map((e) => e.y),
  });
  const res = ridgeProbe(part(0, cut1), part(cut1, cut2), part(cut2, n), 2);
  return {
    statsA: imageSetStats(a),
    statsB: imageSetStats(b),
    saturationA: meanSaturation(a),
    saturationB: meanSaturation(b),
    domainProbeAcc: res.testAcc,
  };
}
