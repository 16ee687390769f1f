/**
 * Evaluation of frozen encoders for the ExPLoRA miniature (issue 15): decode labelled splits once, then linear probe
 * (DINOv2 protocol, val-selected, test reported) and weighted kNN, with per-image test predictions kept so that
 * intervals over test images (paired bootstrap, McNemar) can be computed later, and process CPU time per phase.
 *
 * Used by `tools/explora-miniature.ts` and the source-model makers; meant for the ExPLoRA notebooks as well.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../lib/rng';
import { Vit } from '../lib/vit/params';
import { VitHooks } from '../lib/vit/forward';
import { extractFeatures, disposeFeatures, FeatureCache, LabelledBatch } from '../lib/eval/features';
import { linearProbe, DINOV2_LINEAR_PROBE, LinearProbeConfig } from '../lib/eval/linear-probe';
import { knnEvaluate } from '../lib/eval/knn';
import { ridgeProbe } from '../lib/eval/ridge-probe';
import { Dataset, Loader, subset } from '../data-loaders/dataset';
import { normalizeWith } from '../data-loaders/augment';
import { IMAGENET_STATS, NormStats } from '../data-loaders/transforms';

/** A decoded labelled split: images [N, H, W, C] (normalised), labels. */
export interface DecodedSplit {
  x: tf.Tensor4D;
  y: Int32Array;
}

/** Seconds of process CPU time (user + system) since `from` (a `process.cpuUsage()` value). */
export function cpuSeconds(from: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1e6;
}

/** A seeded subset of `n` samples of a split, in dataset order (the whole split when n = 0 or n ≥ its size). */
export function seededSubset(ds: Dataset, n: number, seed: number, what: string): Dataset {
  if (!n || n >= ds.length) return ds;
  return subset(ds, Rng.derive(seed, 'subset', what).permutation(ds.length).slice(0, n).sort((a, b) => a - b));
}

/** Decode a split once (no augmentation), normalised with `stats` (default ImageNet). The caller disposes `x`. */
export async function decodeSplit(ds: Dataset, stats: NormStats = IMAGENET_STATS): Promise<DecodedSplit> {
  const parts: tf.Tensor4D[] = [];
  const labels: number[] = [];
  for await (const b of new Loader(ds, { batchSize: 100, shuffle: false, transform: normalizeWith(stats) }).epoch(0)) {
    parts.push(b.images!);
    labels.push(...Array.from(b.labels!.dataSync()));
    b.labels!.dispose();
  }
  if (!parts.length) throw new Error(`decodeSplit(${ds.name}): empty split`);
  const x = tf.concat(parts) as tf.Tensor4D;
  tf.dispose(parts);
  return { x, y: Int32Array.from(labels) };
}

/** Batches of a decoded split (slices; `extractFeatures` disposes them). */
export function* splitBatches(s: DecodedSplit, bs = 200): Generator<LabelledBatch> {
  const n = s.y.length;
  for (let i = 0; i < n; i += bs) {
    const b = Math.min(bs, n - i);
    yield { images: s.x.slice([i, 0, 0, 0], [b, s.x.shape[1], s.x.shape[2], s.x.shape[3]]), labels: s.y.subarray(i, i + b) };
  }
}

export interface EvalSets {
  train: DecodedSplit;
  val: DecodedSplit;
  test: DecodedSplit;
}

export function disposeEvalSets(e: EvalSets): void {
  tf.dispose([e.train.x, e.val.x, e.test.x]);
}

export interface FrozenEvalConfig {
  /** Linear-probe settings over DINOv2's grid (epochs, iterations, batch); `nLastBlocks` is capped by the depth. */
  probe: Partial<LinearProbeConfig>;
  /** kNN neighbours and temperature. */
  knn: { k: number; temperature: number };
}

/**
 * The miniature's evaluation: the DINOv2 probe grid with standardised inputs (10 × 20 iterations of batch 256), kNN
 * k 20, and the closed-form ridge probe. Without `standardize` the 10 × 20 SGD probe is far from converged on these
 * features (LOG.md, branch `science`).
 */
export const MINIATURE_EVAL: FrozenEvalConfig = { probe: { epochs: 10, itersPerEpoch: 20, batchSize: 256, standardize: true }, knn: { k: 20, temperature: 0.07 } };

/** One evaluation of a frozen encoder. Accuracies in [0, 1]; `*Correct` = per-test-image 0/1 string (test order). */
export interface FrozenEval {
  probeVal: number;
  probeTest: number;
  probeBest: string;
  knn: number;
  /** Closed-form ridge probe (standardised inputs, λ and input kind selected on val): test top-1. */
  ridgeTest: number;
  ridgeVal: number;
  ridgeBest: string;
  probeCorrect: string;
  knnCorrect: string;
  ridgeCorrect: string;
  /** Process CPU seconds: feature extraction, SGD probe, kNN, ridge probe. */
  cpu: { extract: number; probe: number; knn: number; ridge: number };
  seconds: number;
}

/** The frozen features of the three evaluation splits (what `evaluateFrozen` extracts; the owner disposes them). */
export type EvalFeatures = Record<'train' | 'val' | 'test', FeatureCache>;

/** Extract the evaluation features of a frozen encoder once (e.g. the source model, shared by every seed). */
export async function extractEvalFeatures(vit: Vit, sets: EvalSets, hooks?: VitHooks): Promise<EvalFeatures> {
  const nLast = Math.min(4, vit.config.depth);
  const f: Partial<EvalFeatures> = {};
  try {
    for (const k of ['train', 'val', 'test'] as const) f[k] = await extractFeatures(vit, splitBatches(sets[k]), { nLast, hooks });
    return f as EvalFeatures;
  } catch (e) {
    Object.values(f).forEach((c) => c && disposeFeatures(c));
    throw e;
  }
}

/**
 * Linear probe (train on `train`, select on `val`, report `test`) and kNN (train → test) of a frozen encoder.
 * `probeSeed` seeds the classifiers' init and the probe's batch order. `cached`: features of this encoder from
 * `extractEvalFeatures` (not extracted again, not disposed here; the record's `cpu.extract` is then 0).
 */
export async function evaluateFrozen(vit: Vit, sets: EvalSets, probeSeed: number, cfg: FrozenEvalConfig = MINIATURE_EVAL, hooks?: VitHooks, cached?: EvalFeatures): Promise<FrozenEval> {
  const t0 = Date.now();
  let c0 = process.cpuUsage();
  const nLast = Math.min(4, vit.config.depth);
  const f: Partial<Record<'train' | 'val' | 'test', FeatureCache>> = cached ? { ...cached } : {};
  try {
    if (!cached) Object.assign(f, await extractEvalFeatures(vit, sets, hooks));
    const extract = cpuSeconds(c0);
    c0 = process.cpuUsage();
    const probe = linearProbe(f.train!, f.val!, { ...DINOV2_LINEAR_PROBE, ...cfg.probe, nLastBlocks: nLast > 1 ? [1, nLast] : [1], seed: probeSeed });
    let probeTest: number;
    let probeCorrect: string;
    try {
      const correct = tf.tidy(() => tf.equal(tf.argMax(probe.predict(f.test!), 1), f.test!.labels).toInt().dataSync() as Int32Array);
      probeCorrect = Array.from(correct).join('');
      probeTest = correct.reduce((a, b) => a + b, 0) / correct.length;
    } finally {
      probe.dispose();
    }
    const probeCpu = cpuSeconds(c0);
    c0 = process.cpuUsage();
    const kr = knnEvaluate(f.train!, f.test!, { k: Math.min(cfg.knn.k, sets.train.y.length), temperature: cfg.knn.temperature })[0];
    const knnCorrect = Array.from(kr.predictions, (p, i) => (p === sets.test.y[i] ? '1' : '0')).join('');
    const knnCpu = cpuSeconds(c0);
    c0 = process.cpuUsage();
    const ridge = ridgeProbe(f.train!, f.val!, { nLastBlocks: nLast > 1 ? [1, nLast] : [1] });
    let ridgeCorrect: string;
    try {
      ridgeCorrect = Array.from(tf.tidy(() => tf.equal(tf.argMax(ridge.predict(f.test!), 1), f.test!.labels).toInt().dataSync() as Int32Array)).join('');
    } finally {
      ridge.dispose();
    }
    return {
      probeVal: probe.best.valAcc,
      probeTest,
      probeBest: probe.best.name,
      knn: kr.top1,
      ridgeTest: [...ridgeCorrect].filter((c) => c === '1').length / ridgeCorrect.length,
      ridgeVal: ridge.best.valAcc,
      ridgeBest: ridge.best.name,
      probeCorrect,
      knnCorrect,
      ridgeCorrect,
      cpu: { extract, probe: probeCpu, knn: knnCpu, ridge: cpuSeconds(c0) },
      seconds: (Date.now() - t0) / 1000,
    };
  } finally {
    if (!cached) Object.values(f).forEach((c) => c && disposeFeatures(c));
  }
}

/** kNN top-1 of a frozen encoder, `train` → `test` (a cheap sanity check of features, e.g. on the source domain). */
export async function knnTop1(vit: Vit, train: DecodedSplit, test: DecodedSplit, k = 20, hooks?: VitHooks): Promise<number> {
  const a = await extractFeatures(vit, splitBatches(train), { nLast: 1, hooks });
  const b = await extractFeatures(vit, splitBatches(test), { nLast: 1, hooks });
  try {
    return knnEvaluate(a, b, { k: Math.min(k, train.y.length) })[0].top1;
  } finally {
    disposeFeatures(a);
    disposeFeatures(b);
  }
}
