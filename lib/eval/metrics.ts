/**
 * Evaluation metrics of the beyond-RGB experiments, computed in plain JS from integer predictions and labels
 * (exact; no tensors kept).
 *
 * - Classification (`classificationMetrics`): accuracy, and the WILDS metrics of iWildCam — **macro F1** (headline)
 *   and macro recall — as WILDS computes them (`wilds/common/metrics/all_metrics.py`: `sklearn.metrics.f1_score(y_true,
 *   y_pred, average='macro', labels=torch.unique(y_true))`): the mean over the classes **present in the labels** of
 *   F1_c = 2·TP_c / (2·TP_c + FP_c + FN_c) (0 when a present class is never predicted); a prediction of a class absent
 *   from the labels only counts as a false negative of the true class.
 * - Segmentation (`SegmentationMeter`, `iouFromConfusion`): a K×K confusion matrix accumulated over the whole
 *   evaluation set (rows = truth, columns = prediction); IoU_c = TP / (TP + FP + FN), NaN for a class that occurs in
 *   neither prediction nor truth; mIoU = mean over the non-NaN classes (mmsegmentation's `nanmean`). For SpaceNet
 *   building masks (K = 2) `iou[1]` is the building IoU.
 */
import * as tf from '@tensorflow/tfjs';

function checkInts(a: ArrayLike<number>, what: string): void {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isInteger(a[i]) || a[i] < 0) throw new Error(`${what}[${i}] = ${a[i]} is not a class index (a non-negative integer)`);
  }
}

export interface ClassificationMetrics {
  n: number;
  accuracy: number;
  /** WILDS macro F1 over the classes present in yTrue. */
  macroF1: number;
  /** WILDS macro recall over the classes present in yTrue. */
  macroRecall: number;
  /** The classes present in yTrue (sorted), and their F1 / recall. */
  labels: number[];
  perClassF1: number[];
  perClassRecall: number[];
}

/** Accuracy, macro F1 and macro recall (WILDS definitions) of integer predictions against integer labels. */
export function classificationMetrics(yTrue: ArrayLike<number>, yPred: ArrayLike<number>): ClassificationMetrics {
  if (yTrue.length !== yPred.length) throw new Error(`classificationMetrics: ${yTrue.length} labels but ${yPred.length} predictions`);
  if (yTrue.length === 0) throw new Error('classificationMetrics: no samples');
  checkInts(yTrue, 'yTrue');
  checkInts(yPred, 'yPred');
  const tp = new Map<number, number>();
  const fp = new Map<number, number>();
  const fn = new Map<number, number>();
  const inc = (m: Map<number, number>, k: number): void => {
    m.set(k, (m.get(k) ?? 0) + 1);
  };
  let correct = 0;
  for (let i = 0; i < yTrue.length; i++) {
    const t = yTrue[i];
    const p = yPred[i];
    if (t === p) {
      correct++;
      inc(tp, t);
    } else {
      inc(fp, p);
      inc(fn, t);
    }
  }
  const labels = [...new Set(Array.from(yTrue))].sort((a, b) => a - b);
  const perClassF1 = labels.map((c) => {
    const a = tp.get(c) ?? 0;
    const den = 2 * a + (fp.get(c) ?? 0) + (fn.get(c) ?? 0);
    return den === 0 ? 0 : (2 * a) / den;
  });
  const perClassRecall = labels.map((c) => {
    const a = tp.get(c) ?? 0;
    return a / (a + (fn.get(c) ?? 0));
  });
  const mean = (xs: number[]): number => xs.reduce((s, v) => s + v, 0) / xs.length;
  return {
    n: yTrue.length,
    accuracy: correct / yTrue.length,
    macroF1: mean(perClassF1),
    macroRecall: mean(perClassRecall),
    labels,
    perClassF1,
    perClassRecall,
  };
}

/** WILDS macro F1 (see `classificationMetrics`). */
export function macroF1(yTrue: ArrayLike<number>, yPred: ArrayLike<number>): number {
  return classificationMetrics(yTrue, yPred).macroF1;
}

/** Arg-max class of each row of logits [N, K] (reads the tensor; call outside a training step). */
export function argmaxRows(logits: tf.Tensor2D): Int32Array {
  return tf.tidy(() => tf.argMax(logits, -1).dataSync() as Int32Array).slice();
}

/** K×K confusion counts (rows = truth, columns = prediction), pixels/samples with truth `ignoreIndex` skipped. */
export function confusionMatrix(yTrue: ArrayLike<number>, yPred: ArrayLike<number>, K: number, opts: { ignoreIndex?: number } = {}): Float64Array {
  if (yTrue.length !== yPred.length) throw new Error(`confusionMatrix: ${yTrue.length} labels but ${yPred.length} predictions`);
  const m = new Float64Array(K * K);
  for (let i = 0; i < yTrue.length; i++) {
    const t = yTrue[i];
    if (t === opts.ignoreIndex) continue;
    const p = yPred[i];
    if (!Number.isInteger(t) || t < 0 || t >= K) throw new Error(`confusionMatrix: truth[${i}] = ${t} is outside the ${K} classes 0…${K - 1}`);
    if (!Number.isInteger(p) || p < 0 || p >= K) throw new Error(`confusionMatrix: prediction[${i}] = ${p} is outside the ${K} classes 0…${K - 1}`);
    m[t * K + p] += 1;
  }
  return m;
}

export interface IouResult {
  /** Per-class IoU, NaN where the class occurs in neither truth nor prediction. */
  iou: number[];
  /** Mean of the non-NaN IoUs. */
  miou: number;
  /** Pixel accuracy. */
  accuracy: number;
  /** Pixels counted. */
  pixels: number;
}

/** IoU per class, mIoU and pixel accuracy from a K×K confusion matrix. */
export function iouFromConfusion(conf: ArrayLike<number>, K: number): IouResult {
  if (conf.length !== K * K) throw new Error(`iouFromConfusion: ${conf.length} counts for ${K} classes (expected ${K * K})`);
  const iou: number[] = [];
  let diag = 0;
  let total = 0;
  for (let c = 0; c < K; c++) {
    let row = 0;
    let col = 0;
    for (let k = 0; k < K; k++) {
      row += conf[c * K + k];
      col += conf[k * K + c];
    }
    const inter = conf[c * K + c];
    const union = row + col - inter;
    iou.push(union > 0 ? inter / union : NaN);
    diag += inter;
    total += row;
  }
  const valid = iou.filter((v) => !Number.isNaN(v));
  return {
    iou,
    miou: valid.length ? valid.reduce((s, v) => s + v, 0) / valid.length : NaN,
    accuracy: total > 0 ? diag / total : NaN,
    pixels: total,
  };
}

/**
 * Accumulates a segmentation confusion matrix over batches. `update(logits, masks)`: logits [B, H, W, K] (arg-max
 * taken) or predicted class ids [B, H, W(, 1)], masks [B, H, W, 1] of class ids; shapes must agree (the error names
 * both). Reads the tensors (call outside a train step); leaves no tensors behind.
 */
export class SegmentationMeter {
  readonly confusion: Float64Array;
  constructor(
    readonly numClasses: number,
    readonly opts: { ignoreIndex?: number } = {},
  ) {
    if (!Number.isInteger(numClasses) || numClasses < 2) throw new Error(`SegmentationMeter: numClasses must be an integer ≥ 2, got ${numClasses}`);
    this.confusion = new Float64Array(numClasses * numClasses);
  }
  update(pred: tf.Tensor, masks: tf.Tensor): void {
    const K = this.numClasses;
    const ids =
      pred.rank === 4 && pred.shape[3] === K && K > 1
        ? tf.tidy(() => tf.argMax(pred, -1).dataSync())
        : pred.rank === 4 && pred.shape[3] === 1
          ? pred.dataSync()
          : pred.rank === 3
            ? pred.dataSync()
            : null;
    if (!ids) throw new Error(`SegmentationMeter.update: predictions [${pred.shape}] are neither logits [B, H, W, ${K}] nor class ids [B, H, W, 1]`);
    const [B, H, W] = pred.shape;
    const okMask = (masks.rank === 4 && masks.shape[3] === 1) || masks.rank === 3;
    if (!okMask || masks.shape[0] !== B || masks.shape[1] !== H || masks.shape[2] !== W) {
      throw new Error(`SegmentationMeter.update: masks [${masks.shape}] do not match the predictions [${pred.shape}]; expected [${B}, ${H}, ${W}, 1]`);
    }
    const t = masks.dataSync();
    const c = confusionMatrix(Array.from(t, Math.round), Array.from(ids, Math.round), K, this.opts);
    for (let i = 0; i < c.length; i++) this.confusion[i] += c[i];
  }
  result(): IouResult {
    return iouFromConfusion(this.confusion, this.numClasses);
  }
}
