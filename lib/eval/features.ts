/**
 * Frozen-backbone features for the evaluation protocols (linear probe, kNN), computed once per image and cached.
 *
 * What is cached (DINOv2 `get_intermediate_layers(n, return_class_token=True, norm=True)`, as ExPLoRA's
 * `linprobe/linear.py` calls it):
 * - `cls` [N, n, D]: the CLS token of each of the last n blocks (oldest first), each passed through the final norm
 *   (when the model has one), from `vitForward`'s `intermediates`;
 * - `patchMean` [N, D]: the mean patch token of the last block (same norm), for the `avgpool` probe inputs;
 * - `labels` [N] int32.
 * The backbone runs in eval mode (no drop-path) and, if `hooks` are given (e.g. unmerged LoRA, ToMe), with them.
 * Caching means no train-time augmentation (DINOv2 re-crops every iteration); see linear-probe.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { Vit } from '../vit/params';
import { vitForward, VitHooks } from '../vit/forward';
import { fmtValue } from '../check';

/** Cached features of a dataset split (tensors owned by the cache: `disposeFeatures`). */
export interface FeatureCache {
  /** [N, n, D] CLS tokens of the last n blocks, oldest first (normed). */
  cls: tf.Tensor3D;
  /** [N, D] mean patch token of the last block (normed). */
  patchMean: tf.Tensor2D;
  /** [N] int32 class indices. */
  labels: tf.Tensor1D;
}

/** One batch of images [B, H, W, C] and labels [B]. */
export interface LabelledBatch {
  images: tf.Tensor4D;
  labels: tf.Tensor1D | ArrayLike<number>;
}

export interface ExtractOptions {
  /** Number of last blocks whose CLS tokens are kept (default 4, the DINOv2 probe's maximum). */
  nLast?: number;
  hooks?: VitHooks;
  /** Dispose each batch's tensors after use (default true, like `trainLoop`). */
  disposeBatches?: boolean;
}

/**
 * Run the frozen backbone once over every batch and cache the features.
 * @example const train = await extractFeatures(vit, batches(trainSet)); // one backbone pass per image
 */
export async function extractFeatures(
  vit: Vit,
  batches: Iterable<LabelledBatch> | AsyncIterable<LabelledBatch>,
  opts: ExtractOptions = {},
): Promise<FeatureCache> {
  const n = opts.nLast ?? 4;
  const D = vit.config.embedDim;
  if (!Number.isInteger(n) || n < 1 || n > vit.config.depth) {
    throw new Error(`extractFeatures: nLast must be an integer in [1, ${vit.config.depth}], got ${fmtValue(n)}`);
  }
  const clsParts: Float32Array[] = [];
  const meanParts: Float32Array[] = [];
  const labelParts: number[] = [];
  for await (const b of batches as AsyncIterable<LabelledBatch>) {
    try {
      const B = b.images.shape[0];
      const labels = b.labels instanceof tf.Tensor ? Array.from(b.labels.dataSync()) : Array.from(b.labels);
      if (labels.length !== B) throw new Error(`extractFeatures: batch has ${B} images but ${labels.length} labels`);
      const [c, m] = tf.tidy(() => {
        const o = vitForward(vit, b.images, { hooks: opts.hooks ?? {}, returnLayers: n });
        const cls = tf.stack(o.intermediates.map((l) => l.cls), 1); // [B, n, D]
        const last = o.intermediates[o.intermediates.length - 1];
        return [cls, tf.mean(last.patchTokens, 1)]; // [B, D]
      });
      clsParts.push(c.dataSync() as Float32Array);
      meanParts.push(m.dataSync() as Float32Array);
      tf.dispose([c, m]);
      labelParts.push(...labels);
    } finally {
      if (opts.disposeBatches ?? true) {
        b.images.dispose();
        if (b.labels instanceof tf.Tensor) b.labels.dispose();
      }
    }
  }
  const N = labelParts.length;
  if (N === 0) throw new Error('extractFeatures: no batches');
  return featureCache(concat(clsParts), concat(meanParts), Int32Array.from(labelParts), n, D);
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Build a cache from plain arrays (precomputed or synthetic features): cls [N·n·D], patchMean [N·D], labels [N]. */
export function featureCache(cls: Float32Array, patchMean: Float32Array, labels: Int32Array, nLast: number, dim: number): FeatureCache {
  const N = labels.length;
  if (cls.length !== N * nLast * dim) throw new Error(`featureCache: cls has ${cls.length} values, expected N·n·D = ${N}·${nLast}·${dim}`);
  if (patchMean.length !== N * dim) throw new Error(`featureCache: patchMean has ${patchMean.length} values, expected N·D = ${N}·${dim}`);
  if (labels.some((l) => !Number.isInteger(l) || l < 0)) throw new Error('featureCache: labels must be non-negative integers');
  // a NaN feature (a diverged or corrupt backbone) would make every probe and kNN result meaningless, silently
  for (const [name, arr, per] of [['cls', cls, nLast * dim], ['patchMean', patchMean, dim]] as const) {
    const i = arr.findIndex((v) => !Number.isFinite(v));
    if (i >= 0) throw new Error(`featureCache: ${name} feature ${arr[i]} of sample ${Math.floor(i / per)} (label ${labels[Math.floor(i / per)]}); the backbone produced non-finite features`);
  }
  return {
    cls: tf.tensor3d(cls, [N, nLast, dim]),
    patchMean: tf.tensor2d(patchMean, [N, dim]),
    labels: tf.tensor1d(labels, 'int32'),
  };
}

/**
 * A probe input [N, n·D (+ D)]: concatenated CLS tokens of the last `nLast` cached blocks (oldest first), plus the
 * mean patch token when `avgpool` (DINOv2 `create_linear_input`). Call inside a tidy or dispose the result.
 */
export function probeInput(c: FeatureCache, nLast: number, avgpool: boolean): tf.Tensor2D {
  const [N, n, D] = c.cls.shape;
  if (!Number.isInteger(nLast) || nLast < 1 || nLast > n) throw new Error(`probeInput: nLast must be in [1, ${n}] (cached blocks), got ${fmtValue(nLast)}`);
  return tf.tidy(() => {
    const cls = c.cls.slice([0, n - nLast, 0], [N, nLast, D]).reshape([N, nLast * D]); // [N, nLast·D]
    return (avgpool ? tf.concat([cls, c.patchMean], 1) : cls) as tf.Tensor2D;
  });
}

/** Number of images in a cache. */
export function featureCount(c: FeatureCache): number {
  return c.labels.shape[0];
}

/** Free a cache's tensors. */
export function disposeFeatures(c: FeatureCache): void {
  tf.dispose([c.cls, c.patchMean, c.labels]);
}
