/**
 * Linear probing, DINOv2 protocol (DINOv2 `dinov2/eval/linear.py`, ExPLoRA `linprobe/linear.py`,
 * `scripts/linprobe.sh`): a grid of linear classifiers over (n last blocks ∈ {1, 4}) × (avgpool ∈ {false, true}) × (lr
 * ∈ {1e-4, 1e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1}) trained **simultaneously** on the same batches of frozen features — the
 * loss is the sum of the classifiers' cross-entropies, so each classifier gets exactly its own gradient — with SGD
 * (momentum 0.9, weight decay 0), each lr scaled by batch/256, cosine annealing to 0 over epochs × iterations; weights
 * N(0, 0.01), bias 0. The classifier with the best validation top-1 is reported.
 *
 * Modifications vs the reference: features are cached (one backbone pass per image, `extractFeatures`) instead of
 * re-augmenting every iteration, so there is no train-time RandomResizedCrop/flip; default iterations per epoch is
 * one pass over the cached set (DINOv2 uses 1500 at batch 256 on ImageNet: set `itersPerEpoch: 1500` for parity).
 *
 * `standardize: true` (off by default) feeds every classifier its input standardised with the training features'
 * per-dimension mean and standard deviation. That is a fixed affine map, so the set of linear classifiers is the same;
 * only SGD's conditioning changes. With small budgets it matters a lot: on the notebook-01 source MAE (1,800 probe
 * images, 10 × 20 iterations) the raw probe reached 55.5 % test top-1 and the standardised one 72.7 % (LOG.md, branch
 * `science`) — the raw probe was far from converged, so its accuracy measured SGD speed as much as the features.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../rng';
import { checkKeys, fmtValue, checkNumber } from '../check';
import { fillInit } from '../init';
import { makeVariable, newScope } from '../tree';
import { scheduleAt, Schedule } from '../train/schedule';
import { FeatureCache, probeInput, featureCount } from './features';
import { ReadPlan, readSync, readAsync } from '../reads';

export interface LinearProbeConfig {
  /** Last-block counts to try (each ≤ the cached n). DINOv2: [1, 4]. */
  nLastBlocks: readonly number[];
  /** With / without the mean patch token. DINOv2: [false, true]. */
  avgpool: readonly boolean[];
  /** Base learning rates (scaled by batchSize / 256). */
  lrs: readonly number[];
  batchSize: number;
  epochs: number;
  /** Iterations per epoch (null = ⌈N / batchSize⌉). */
  itersPerEpoch: number | null;
  momentum: number;
  weightDecay: number;
  /** std of the N(0, σ) weight init. */
  initStd: number;
  /** Classes (null = max label + 1 over train and val). */
  numClasses: number | null;
  seed: number;
  /** Standardise each probe input with the train features' per-dimension mean / std (same classifiers, better conditioning). Default false (DINOv2). */
  standardize?: boolean;
}

const KEYS: readonly (keyof LinearProbeConfig)[] = [
  'nLastBlocks', 'avgpool', 'lrs', 'batchSize', 'epochs', 'itersPerEpoch', 'momentum', 'weightDecay', 'initStd', 'numClasses', 'seed', 'standardize',
];

/** DINOv2's grid and optimiser (10 epochs; iterations per epoch = one pass over the cached features). */
export const DINOV2_LINEAR_PROBE: LinearProbeConfig = Object.freeze({
  nLastBlocks: [1, 4],
  avgpool: [false, true],
  lrs: [1e-4, 1e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1],
  batchSize: 256,
  epochs: 10,
  itersPerEpoch: null,
  momentum: 0.9,
  weightDecay: 0,
  initStd: 0.01,
  numClasses: null,
  seed: 0,
});

/** One classifier of the grid and its validation accuracy. */
export interface ProbeResult {
  /** e.g. `n4_avgpool_lr0.01` */
  name: string;
  nLast: number;
  avgpool: boolean;
  /** base lr (before the batch/256 scaling) */
  lr: number;
  valAcc: number;
}

export interface LinearProbeRun {
  config: LinearProbeConfig;
  /** every classifier, in grid order */
  results: ProbeResult[];
  /** best validation top-1 (first in grid order on ties) */
  best: ProbeResult;
  /** weights of classifier `name`: weight [F, K], bias [K] (new tensors; caller disposes) */
  weights: (name: string) => { weight: tf.Tensor2D; bias: tf.Tensor1D };
  /** logits [N, K] of classifier `name` (default: best) on a cache; caller disposes */
  predict: (c: FeatureCache, name?: string) => tf.Tensor2D;
  /** top-1 of classifier `name` (default: best) on a cache (e.g. the test split); a synchronous read */
  accuracy: (c: FeatureCache, name?: string) => number;
  /** the same with an awaited read (every backend, webgpu included) */
  accuracyAsync: (c: FeatureCache, name?: string) => Promise<number>;
  /** per-step losses (sum over the grid) */
  losses: number[];
  dispose: () => void;
}

function* maxLabel(c: FeatureCache): ReadPlan<number> {
  const m = tf.max(c.labels);
  try {
    return (yield [m])[0][0];
  } finally {
    m.dispose();
  }
}

/** Top-1 of logits computed in chunks (keeps memory flat for large splits). */
function* chunkedAccuracy(c: FeatureCache, logitsOf: (x: tf.Tensor2D) => tf.Tensor2D, input: (c: FeatureCache) => tf.Tensor2D): ReadPlan<number> {
  const x = input(c);
  try {
    const N = x.shape[0];
    let correct = 0;
    for (let s = 0; s < N; s += 4096) {
      const n = Math.min(4096, N - s);
      const hits = tf.tidy(() => {
        const logits = logitsOf(x.slice([s, 0], [n, x.shape[1]]));
        const y = c.labels.slice([s], [n]);
        return tf.sum(tf.equal(tf.argMax(logits, 1), y).toInt());
      });
      try {
        correct += (yield [hits])[0][0];
      } finally {
        hits.dispose();
      }
    }
    return correct / N;
  } finally {
    x.dispose();
  }
}

/**
 * Train the grid on `train` features and select on `val` features (one synchronous read of the loss per step).
 * @example const run = linearProbe(trainFeats, valFeats, {...DINOV2_LINEAR_PROBE, epochs: 5}); run.best.valAcc
 */
export function linearProbe(
  train: FeatureCache,
  val: FeatureCache,
  config: Partial<LinearProbeConfig> = {},
  opts: { onStep?: (step: number, loss: number) => void } = {},
): LinearProbeRun {
  return readSync(linearProbePlan(train, val, config, opts));
}

/** `linearProbe` with awaited reads: the same numbers, on every backend (webgpu included). */
export function linearProbeAsync(
  train: FeatureCache,
  val: FeatureCache,
  config: Partial<LinearProbeConfig> = {},
  opts: { onStep?: (step: number, loss: number) => void } = {},
): Promise<LinearProbeRun> {
  return readAsync(linearProbePlan(train, val, config, opts));
}

function* linearProbePlan(
  train: FeatureCache,
  val: FeatureCache,
  config: Partial<LinearProbeConfig>,
  opts: { onStep?: (step: number, loss: number) => void },
): ReadPlan<LinearProbeRun> {
  checkKeys('LinearProbeConfig', config, KEYS);
  const cfg: LinearProbeConfig = { ...DINOV2_LINEAR_PROBE, ...config };
  const cachedN = train.cls.shape[1];
  const D = train.cls.shape[2];
  for (const n of cfg.nLastBlocks) {
    if (!Number.isInteger(n) || n < 1 || n > cachedN) throw new Error(`linearProbe: nLastBlocks entry ${n} is outside [1, ${cachedN}] (blocks cached by extractFeatures)`);
  }
  if (val.cls.shape[1] < Math.max(...cfg.nLastBlocks) || val.cls.shape[2] !== D) {
    throw new Error(`linearProbe: val features [${val.cls.shape}] do not fit the grid (train features [${train.cls.shape}], nLastBlocks [${cfg.nLastBlocks.join(', ')}])`);
  }
  if (!Array.isArray(cfg.lrs) || !cfg.lrs.length || cfg.lrs.some((l) => typeof l !== 'number' || !(l > 0) || !Number.isFinite(l))) {
    throw new Error(`linearProbe: lrs must be positive numbers, got ${fmtValue(cfg.lrs)}`);
  }
  checkNumber('linearProbe: momentum', cfg.momentum, { min: 0, lt: 1 });
  checkNumber('linearProbe: weightDecay', cfg.weightDecay, { min: 0 });
  checkNumber('linearProbe: initStd', cfg.initStd, { min: 0 });
  checkNumber('linearProbe: seed', cfg.seed, { integer: true });
  if (cfg.itersPerEpoch !== null) checkNumber('linearProbe: itersPerEpoch', cfg.itersPerEpoch, { integer: true, min: 1 });
  if (cfg.numClasses !== null) checkNumber('linearProbe: numClasses', cfg.numClasses, { integer: true, min: 1 });
  if (!cfg.avgpool.length || !cfg.nLastBlocks.length) throw new Error('linearProbe: empty grid (nLastBlocks / avgpool)');
  if (!Number.isInteger(cfg.batchSize) || cfg.batchSize < 1) throw new Error(`linearProbe: batchSize must be a positive integer, got ${fmtValue(cfg.batchSize)}`);
  checkNumber('linearProbe: epochs', cfg.epochs, { gt: 0 });
  const N = featureCount(train);
  const maxTrain = yield* maxLabel(train);
  const maxVal = yield* maxLabel(val);
  const K = cfg.numClasses ?? Math.max(maxTrain, maxVal) + 1;
  if (maxTrain >= K || maxVal >= K) throw new Error(`linearProbe: labels reach ${Math.max(maxTrain, maxVal)} but numClasses is ${K}`);
  const bs = Math.min(cfg.batchSize, N);
  const itersPerEpoch = cfg.itersPerEpoch ?? Math.ceil(N / bs);
  const total = Math.max(1, Math.round(cfg.epochs * itersPerEpoch));

  // The distinct probe inputs, built once: [N, F] per (nLast, avgpool); with `standardize`, the train mean / std per
  // input dimension (kept to map every later input the same way).
  const inputs = new Map<string, tf.Tensor2D>();
  const stdz = new Map<string, { mean: tf.Tensor2D; invStd: tf.Tensor2D }>();
  const key = (n: number, a: boolean): string => `${n}|${a}`;
  for (const n of cfg.nLastBlocks) {
    for (const a of cfg.avgpool) {
      if (inputs.has(key(n, a))) continue;
      const x = probeInput(train, n, a);
      if (cfg.standardize) {
        const st = tf.tidy(() => {
          const { mean, variance } = tf.moments(x, 0, true); // [1, F]
          return { mean: mean as tf.Tensor2D, invStd: tf.div(1, tf.add(tf.sqrt(variance), 1e-6)) as tf.Tensor2D };
        });
        stdz.set(key(n, a), st);
        inputs.set(key(n, a), tf.tidy(() => tf.mul(tf.sub(x, st.mean), st.invStd) as tf.Tensor2D));
        x.dispose();
      } else inputs.set(key(n, a), x);
    }
  }

  // Classifiers sharing an input kind (same nLast, avgpool) live in one variable per kind, side by side along the
  // output axis: W_g [F, G·K], b_g [G·K]; classifier j of the group owns columns j·K..(j+1)·K−1. One matmul per kind,
  // and SGD with a per-column lr is the same update as G separate SGD optimisers.
  const scope = newScope('linprobe');
  const grid: Array<Omit<ProbeResult, 'valAcc'>> = [];
  const groups: Array<{ key: string; nLast: number; avgpool: boolean; names: string[]; F: number; W: tf.Variable; b: tf.Variable; bufW: tf.Variable; bufB: tf.Variable; lrW: tf.Tensor2D; lrB: tf.Tensor1D }> = [];
  const where = new Map<string, { group: number; col: number }>();
  for (const n of cfg.nLastBlocks) {
    for (const a of cfg.avgpool) {
      const k = key(n, a);
      if (groups.some((g) => g.key === k)) throw new Error(`linearProbe: duplicate grid entry nLast ${n}, avgpool ${a}`);
      const F = n * D + (a ? D : 0);
      const G = cfg.lrs.length;
      const w = new Float32Array(F * G * K);
      const names: string[] = [];
      cfg.lrs.forEach((lr, j) => {
        const name = `n${n}_${a ? 'avgpool' : 'cls'}_lr${lr}`;
        if (where.has(name)) throw new Error(`linearProbe: duplicate learning rate ${lr}`);
        where.set(name, { group: groups.length, col: j });
        names.push(name);
        grid.push({ name, nLast: n, avgpool: a, lr });
        const wj = fillInit(F * K, { kind: 'normal', std: cfg.initStd }, Rng.derive(cfg.seed, name)); // [F, K]
        for (let f = 0; f < F; f++) w.set(wj.subarray(f * K, (f + 1) * K), f * G * K + j * K);
      });
      const lrCols = new Float32Array(G * K);
      cfg.lrs.forEach((lr, j) => lrCols.fill((lr * bs) / 256, j * K, (j + 1) * K)); // each lr scaled by batch/256
      groups.push({
        key: k, nLast: n, avgpool: a, names, F,
        W: makeVariable(scope, `${k}.weight`, w, [F, G * K]),
        b: makeVariable(scope, `${k}.bias`, new Float32Array(G * K), [G * K]),
        bufW: makeVariable(scope, `${k}.weight.momentum`, new Float32Array(F * G * K), [F, G * K], false),
        bufB: makeVariable(scope, `${k}.bias.momentum`, new Float32Array(G * K), [G * K], false),
        lrW: tf.tensor2d(lrCols, [1, G * K]),
        lrB: tf.tensor1d(lrCols),
      });
    }
  }
  const vars = groups.flatMap((g) => [g.W, g.b]);
  const sched: Schedule = { kind: 'cosine', base: 1, min: 0, totalIters: total, warmupIters: 0 }; // cosine annealing to 0
  const rng = Rng.derive(cfg.seed, 'linear-probe', 'sampler');
  let order = rng.permutation(N);
  let pos = 0;
  const losses: number[] = [];
  const mu = cfg.momentum;
  const disposeGroups = (): void => {
    groups.forEach((g) => tf.dispose([g.W, g.b, g.bufW, g.bufB, g.lrW, g.lrB]));
    stdz.forEach((st) => tf.dispose([st.mean, st.invStd]));
  };
  let trained = false;
  try {
    for (let step = 0; step < total; step++) {
      const idx: number[] = [];
      while (idx.length < bs) {
        if (pos >= N) {
          order = rng.permutation(N);
          pos = 0;
        }
        idx.push(order[pos++]);
      }
      const t = scheduleAt(sched, step);
      // One synchronous tidy: forward, gradients, SGD-momentum update (PyTorch semantics: buf = g on the first step).
      const lossT = tf.tidy(() => {
        const ids = tf.tensor1d(idx, 'int32');
        const y = tf.gather(train.labels, ids) as tf.Tensor1D;
        const onehot = tf.oneHot(y, K).expandDims(1); // [b, 1, K]
        const { value, grads } = tf.variableGrads(() => {
          const terms = groups.map((g) => {
            const x = tf.gather(inputs.get(g.key)!, ids) as tf.Tensor2D; // [b, F]
            const logits = tf.add(tf.matMul(x, g.W), g.b).reshape([idx.length, g.names.length, K]); // [b, G, K]
            const nll = tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits, -1), onehot), -1)); // [b, G]
            return tf.sum(tf.mean(nll, 0)); // Σ over the group's classifiers of the batch-mean CE
          });
          return tf.addN(terms) as tf.Scalar;
        }, vars);
        for (const g of groups) {
          for (const [p, buf, lr] of [[g.W, g.bufW, g.lrW], [g.b, g.bufB, g.lrB]] as Array<[tf.Variable, tf.Variable, tf.Tensor]>) {
            let grad = grads[p.name];
            if (cfg.weightDecay > 0) grad = tf.add(grad, tf.mul(p, cfg.weightDecay));
            const nb = step === 0 || mu === 0 ? grad : tf.add(tf.mul(buf, mu), grad);
            buf.assign(nb);
            p.assign(tf.sub(p, tf.mul(nb, tf.mul(lr, t))));
          }
        }
        return value;
      });
      let loss: number;
      try {
        loss = (yield [lossT])[0][0];
      } finally {
        lossT.dispose();
      }
      if (!Number.isFinite(loss)) throw new Error(`linearProbe: loss is ${loss} at step ${step} (lower the largest lr?)`);
      losses.push(loss);
      opts.onStep?.(step, loss);
    }
    trained = true;
  } finally {
    if (!trained) disposeGroups(); // an error, or a read that failed
    for (const x of inputs.values()) x.dispose();
  }
  /** Weights of one classifier: [F, K] and [K] (new tensors). */
  const weightsOf = (name: string): { weight: tf.Tensor2D; bias: tf.Tensor1D } => {
    const w = where.get(name);
    if (!w) throw new Error(`linearProbe: no classifier '${name}'; valid: ${[...where.keys()].join(', ')}`);
    const g = groups[w.group];
    return tf.tidy(() => ({ weight: g.W.slice([0, w.col * K], [g.F, K]) as tf.Tensor2D, bias: g.b.slice([w.col * K], [K]) as tf.Tensor1D }));
  };
  const logitsFn = (name: string) => {
    const { weight, bias } = weightsOf(name);
    tf.keep(weight);
    tf.keep(bias);
    return {
      f: (x: tf.Tensor2D) => tf.tidy(() => tf.add(tf.matMul(x, weight), bias) as tf.Tensor2D),
      release: () => tf.dispose([weight, bias]),
    };
  };
  const inputOf = (name: string) => {
    const g = grid.find((e) => e.name === name)!;
    const st = stdz.get(key(g.nLast, g.avgpool));
    if (!st) return (c: FeatureCache) => probeInput(c, g.nLast, g.avgpool);
    return (c: FeatureCache) =>
      tf.tidy(() => {
        const x = probeInput(c, g.nLast, g.avgpool);
        return tf.mul(tf.sub(x, st.mean), st.invStd) as tf.Tensor2D;
      });
  };
  function* accuracyOf(c: FeatureCache, name: string): ReadPlan<number> {
    const l = logitsFn(name);
    try {
      return yield* chunkedAccuracy(c, l.f, inputOf(name));
    } finally {
      l.release();
    }
  }
  const results: ProbeResult[] = [];
  let selected = false;
  try {
    for (const g of grid) results.push({ ...g, valAcc: yield* accuracyOf(val, g.name) });
    selected = true;
  } finally {
    if (!selected) disposeGroups();
  }
  const best = results.reduce((b, r) => (r.valAcc > b.valAcc ? r : b), results[0]);
  return {
    config: cfg,
    results,
    best,
    weights: weightsOf,
    losses,
    predict: (c, name = best.name) => {
      const l = logitsFn(name);
      const x = inputOf(name)(c);
      const out = l.f(x);
      x.dispose();
      l.release();
      return out;
    },
    accuracy: (c, name = best.name) => readSync(accuracyOf(c, name)),
    accuracyAsync: (c, name = best.name) => readAsync(accuracyOf(c, name)),
    dispose: disposeGroups,
  };
}
