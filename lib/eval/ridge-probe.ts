/**
 * Closed-form ridge-regression probe on frozen features: a converged linear readout that costs about a second, for
 * small-budget comparisons where an SGD probe may be far from converged (LOG.md, branch `science`).
 *
 * For each probe input (the same kinds as the DINOv2 probe: CLS of the last n blocks, ± mean patch token), the
 * training features are standardised per dimension (train mean / population std), the one-hot targets centred, and
 *   W = (XᵀX + λ·N·I)⁻¹ Xᵀ(Y − Ȳ),   scores = x_std·W + Ȳ   (λ per sample, so its scale does not depend on N);
 * the (input kind, λ) with the best validation top-1 is reported. Solved in float64 by Cholesky (F ≤ a few thousand).
 * Least squares, not the paper's cross-entropy, but the same family of linear classifiers.
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys } from '../check';
import { FeatureCache, probeInput, featureCount } from './features';

export interface RidgeProbeConfig {
  nLastBlocks: readonly number[];
  avgpool: readonly boolean[];
  /** Ridge strengths per sample (penalty λ·N). */
  lambdas: readonly number[];
  /** Classes (null = max label + 1 over train and val). */
  numClasses: number | null;
}

export const RIDGE_PROBE: RidgeProbeConfig = Object.freeze({
  nLastBlocks: [1, 4],
  avgpool: [false, true],
  lambdas: [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1],
  numClasses: null,
});

export interface RidgeResult {
  name: string;
  nLast: number;
  avgpool: boolean;
  lambda: number;
  valAcc: number;
}

export interface RidgeProbeRun {
  config: RidgeProbeConfig;
  results: RidgeResult[];
  /** Grid entries skipped: Gram + λ·N not numerically positive definite (near-collinear features, tiny λ). */
  skipped: string[];
  best: RidgeResult;
  /** Class scores [N, K] of classifier `name` (default best) on a cache. */
  predict(c: FeatureCache, name?: string): tf.Tensor2D;
  /** Top-1 of classifier `name` (default best) on a cache. */
  accuracy(c: FeatureCache, name?: string): number;
  dispose(): void;
}

/** Solve (A) X = B for symmetric positive-definite A [d, d] (row-major float64), B [d, k]. Throws if A is not SPD. */
export function choleskySolve(A: Float64Array, d: number, B: Float64Array, k: number): Float64Array {
  if (A.length !== d * d || B.length !== d * k) throw new Error(`choleskySolve: A has ${A.length} values (want ${d}·${d}), B ${B.length} (want ${d}·${k})`);
  const L = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let s = A[i * d + j];
      for (let t = 0; t < j; t++) s -= L[i * d + t] * L[j * d + t];
      if (i === j) {
        if (!(s > 0)) throw new Error(`choleskySolve: matrix is not positive definite (pivot ${i} = ${s})`);
        L[i * d + i] = Math.sqrt(s);
      } else L[i * d + j] = s / L[j * d + j];
    }
  }
  const X = new Float64Array(d * k);
  const y = new Float64Array(d);
  for (let c = 0; c < k; c++) {
    for (let i = 0; i < d; i++) {
      let s = B[i * k + c];
      for (let t = 0; t < i; t++) s -= L[i * d + t] * y[t];
      y[i] = s / L[i * d + i];
    }
    for (let i = d - 1; i >= 0; i--) {
      let s = y[i];
      for (let t = i + 1; t < d; t++) s -= L[t * d + i] * X[t * k + c];
      X[i * k + c] = s / L[i * d + i];
    }
  }
  return X;
}

function maxLabel(c: FeatureCache): number {
  return tf.tidy(() => tf.max(c.labels).dataSync()[0]);
}

/**
 * Fit ridge classifiers on `train` for every (input kind, λ) and select on `val`.
 * @example const r = ridgeProbe(trainFeats, valFeats); r.accuracy(testFeats); r.dispose();
 */
export function ridgeProbe(train: FeatureCache, val: FeatureCache, config: Partial<RidgeProbeConfig> = {}): RidgeProbeRun {
  checkKeys('RidgeProbeConfig', config, ['nLastBlocks', 'avgpool', 'lambdas', 'numClasses']);
  const cfg: RidgeProbeConfig = { ...RIDGE_PROBE, ...config };
  const cached = train.cls.shape[1];
  for (const n of cfg.nLastBlocks) if (!Number.isInteger(n) || n < 1 || n > cached) throw new Error(`ridgeProbe: nLastBlocks entry ${n} is outside [1, ${cached}] (blocks cached by extractFeatures)`);
  if (!cfg.lambdas.length || cfg.lambdas.some((l) => !(l > 0))) throw new Error(`ridgeProbe: lambdas must be positive numbers, got [${cfg.lambdas.join(', ')}]`);
  const N = featureCount(train);
  const K = cfg.numClasses ?? Math.max(maxLabel(train), maxLabel(val)) + 1;
  if (maxLabel(train) >= K || maxLabel(val) >= K) throw new Error(`ridgeProbe: labels reach ${Math.max(maxLabel(train), maxLabel(val))} but numClasses is ${K}`);
  const kinds: Array<{ key: string; nLast: number; avgpool: boolean; mean: tf.Tensor2D; invStd: tf.Tensor2D; F: number }> = [];
  const models = new Map<string, { kind: number; W: tf.Tensor2D; b: tf.Tensor1D }>();
  const results: RidgeResult[] = [];
  /** Grid entries whose system was not numerically positive definite (skipped). */
  const skipped: string[] = [];
  const disposeAll = (): void => {
    kinds.forEach((k) => tf.dispose([k.mean, k.invStd]));
    models.forEach((m) => tf.dispose([m.W, m.b]));
  };
  const stdInput = (c: FeatureCache, k: (typeof kinds)[number]): tf.Tensor2D => tf.tidy(() => tf.mul(tf.sub(probeInput(c, k.nLast, k.avgpool), k.mean), k.invStd) as tf.Tensor2D);
  const accOf = (x: tf.Tensor2D, W: tf.Tensor2D, b: tf.Tensor1D, labels: tf.Tensor1D): number =>
    tf.tidy(() => tf.sum(tf.equal(tf.argMax(tf.add(tf.matMul(x, W), b), 1), labels).toInt()).dataSync()[0]) / labels.shape[0];
  try {
    for (const n of cfg.nLastBlocks) {
      for (const a of cfg.avgpool) {
        const key = `n${n}_${a ? 'avgpool' : 'cls'}`;
        if (kinds.some((k) => k.key === key)) throw new Error(`ridgeProbe: duplicate grid entry nLast ${n}, avgpool ${a}`);
        const { mean, invStd } = tf.tidy(() => {
          const { mean: m, variance } = tf.moments(probeInput(train, n, a), 0, true);
          return { mean: m as tf.Tensor2D, invStd: tf.div(1, tf.add(tf.sqrt(variance), 1e-6)) as tf.Tensor2D };
        });
        const kind = { key, nLast: n, avgpool: a, mean, invStd, F: mean.shape[1] };
        kinds.push(kind);
        const xtr = stdInput(train, kind);
        const xva = stdInput(val, kind);
        const [gram, xty, ybar] = tf.tidy(() => {
          const y = tf.oneHot(train.labels.toInt(), K).toFloat(); // [N, K]
          const yb = tf.mean(y, 0); // [K]
          return [tf.matMul(xtr, xtr, true, false), tf.matMul(xtr, tf.sub(y, yb), true, false), yb];
        });
        const G = Float64Array.from(gram.dataSync());
        const XtY = Float64Array.from(xty.dataSync());
        gram.dispose();
        xty.dispose();
        const F = kind.F;
        try {
          for (const lam of cfg.lambdas) {
            const A = G.slice();
            for (let i = 0; i < F; i++) A[i * F + i] += lam * N;
            let sol: Float64Array;
            try {
              sol = choleskySolve(A, F, XtY, K);
            } catch (e) {
              // Near-collinear features (e.g. a collapsed encoder) with a tiny λ: the float32 Gram matrix plus λ·N is not
              // numerically positive definite. That grid entry is skipped (a larger λ regularises it); none left = error.
              if (!/not positive definite/.test((e as Error).message)) throw e;
              skipped.push(`${key}_lambda${lam}`);
              continue;
            }
            const W = tf.tensor2d(Float32Array.from(sol), [F, K]);
            const b = ybar.clone() as tf.Tensor1D;
            const name = `${key}_lambda${lam}`;
            models.set(name, { kind: kinds.length - 1, W, b });
            results.push({ name, nLast: n, avgpool: a, lambda: lam, valAcc: accOf(xva, W, b, val.labels) });
          }
        } finally {
          tf.dispose([xtr, xva, ybar]);
        }
      }
    }
  } catch (e) {
    disposeAll();
    throw e;
  }
  if (!results.length) {
    disposeAll();
    throw new Error(`ridgeProbe: no grid entry could be solved (Gram + λ·N not positive definite for ${skipped.join(', ')}): use larger lambdas`);
  }
  const best = results.reduce((b, r) => (r.valAcc > b.valAcc ? r : b), results[0]);
  const get = (name: string): { kind: number; W: tf.Tensor2D; b: tf.Tensor1D } => {
    const m = models.get(name);
    if (!m) throw new Error(`ridgeProbe: no classifier '${name}'; valid: ${[...models.keys()].join(', ')}`);
    return m;
  };
  return {
    config: cfg,
    results,
    skipped,
    best,
    predict: (c, name = best.name) => {
      const m = get(name);
      return tf.tidy(() => tf.add(tf.matMul(stdInput(c, kinds[m.kind]), m.W), m.b) as tf.Tensor2D);
    },
    accuracy: (c, name = best.name) => {
      const m = get(name);
      const x = stdInput(c, kinds[m.kind]);
      try {
        return accOf(x, m.W, m.b, c.labels);
      } finally {
        x.dispose();
      }
    },
    dispose: disposeAll,
  };
}
