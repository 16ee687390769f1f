/**
 * The segmentation evaluation of a recipe session (`eval.kind: 'segmentation'`, recipes/recipe.ts): how well an
 * encoder's patch tokens segment buildings. Each evaluation trains a **new** segmentation head (lib/seg/head.ts) on the
 * masks of `train` — with the encoder frozen (its tokens computed once, then `steps` head steps on seeded batches of the
 * cached tokens) or adapted by LoRA on Q,V of every block (trained with the head, the encoder's forward in every step)
 * — and reports on `test`: the IoU of class 1 (building), mIoU and pixel accuracy from one confusion matrix over the
 * whole split (mmseg's convention; not a mean of per-image IoUs).
 *
 * Everything is a function of the recipe's seed (head initialisation, LoRA initialisation, batch order), so the
 * evaluation at step 0 (the source encoder: LoRA B = 0) and after the last step of the same run differ only in the
 * encoder: the per-seed difference is paired. Every tensor made here is freed before it returns.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../lib/rng';
import type { Vit } from '../lib/vit/params';
import type { VitHooks } from '../lib/vit/forward';
import { flattenTree } from '../lib/tree';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStepAuto } from '../lib/train/step';
import { SegmentationMeter } from '../lib/eval/metrics';
import { createSegHead, disposeSegHead, segCrossEntropy, segHeadForward, segHeadVariables, SegHead } from '../lib/seg/head';
import { vitSegTokens } from '../lib/seg/features';
import { createLora, disposeLora, loraHooks, qvTarget } from '../lib/peft/lora';
import { isDataParallel } from '../lib/parallel/context';
import { Dataset, Loader, disposeBatch } from '../data-loaders/dataset';
import { RecipeError } from './schema';
import { sampleTransform } from './data';
import type { SegmentationEval, SplitSet } from './recipe';

/** One image batch with its masks [B, H, W, 1] (class ids) and the dataset rows it holds. */
export interface MaskBatch {
  images: tf.Tensor4D;
  masks: tf.Tensor4D;
  indices: number[];
}

function fileOf(ds: Dataset, i: number): string {
  const p = ds.info(i).path;
  return p ? `${ds.name} sample ${i} (${p})` : `${ds.name} sample ${i}`;
}

/**
 * Check a batch's masks: present, [B, H, W, 1] with the images' H, W, class ids 0…K−1. Errors name the recipe key
 * (`at`), the file and the field.
 */
export function checkMaskBatch(b: { images?: tf.Tensor4D; masks?: tf.Tensor4D; indices: number[] }, ds: Dataset, at: string, K: number): void {
  if (!b.masks) throw new RecipeError(at, `${fileOf(ds, b.indices[0])}: no field 'mask'; the segmentation evaluation needs a mask per image (SpaceNet: the chip's GeoJSON)`);
  const [B, H, W] = b.images!.shape;
  const m = b.masks.shape;
  if (m.length !== 4 || m[0] !== B || m[1] !== H || m[2] !== W || m[3] !== 1) {
    throw new RecipeError(at, `${fileOf(ds, b.indices[0])}: field 'mask' is [${m}] for images [${b.images!.shape}]; expected [${B}, ${H}, ${W}, 1]`);
  }
  const v = b.masks.dataSync();
  const per = H * W;
  for (let k = 0; k < v.length; k++) {
    const x = v[k];
    if (!Number.isInteger(x) || x < 0 || x >= K) {
      const r = Math.floor(k / per);
      const px = k % per;
      throw new RecipeError(at, `${fileOf(ds, b.indices[r])}: field 'mask' holds ${x} at pixel (${Math.floor(px / W)}, ${px % W}); expected class ids 0…${K - 1} (numClasses ${K})`);
    }
  }
}

/** Batches of a split set in dataset order, masks checked (the caller disposes each batch's tensors). */
export async function* maskBatches(ds: Dataset, set: SplitSet, batch: number, at: string, K: number): AsyncGenerator<MaskBatch> {
  const loader = new Loader(ds, { batchSize: batch, shuffle: false, transform: sampleTransform(set.transform, `${at}.transform`) });
  const it = loader.epoch(0);
  for (;;) {
    let r: IteratorResult<Awaited<ReturnType<Loader['batchAt']>>>;
    try {
      r = await it.next();
    } catch (e) {
      // the loader's own sample check (a mask that is not the image's H×W×1) names the dataset, sample and file
      throw new RecipeError(at, (e as Error).message);
    }
    if (r.done) return;
    const b = r.value;
    try {
      checkMaskBatch(b, ds, at, K);
    } catch (e) {
      disposeBatch(b);
      throw e;
    }
    b.labels?.dispose();
    yield { images: b.images!, masks: b.masks!, indices: b.indices };
  }
}

/** Scores of a segmentation over a split. */
export interface SegScores {
  /** IoU per class (NaN where a class is in neither truth nor prediction). */
  iou: number[];
  miou: number;
  accuracy: number;
  pixels: number;
  /** The predicted class ids of the first `preview` images (`encodeSegPreview`), '' when none. */
  preview: string;
}

/**
 * Score `predict` (images → logits [B, H, W, K], in a tidy of its own) over batches: one confusion matrix over every
 * pixel of every batch. Frees each batch.
 */
export async function scoreSegmentation(batches: AsyncIterable<MaskBatch>, predict: (images: tf.Tensor4D) => tf.Tensor4D, K: number, preview = 0): Promise<SegScores> {
  const meter = new SegmentationMeter(K);
  const kept: Uint8Array[] = [];
  let shape: [number, number] = [0, 0];
  let n = 0;
  for await (const b of batches) {
    try {
      const logits = predict(b.images);
      try {
        meter.update(logits, b.masks);
        if (n < preview) {
          const ids = tf.tidy(() => tf.argMax(logits, -1).toInt().dataSync()); // [B, H, W]
          const [B, H, W] = logits.shape;
          shape = [H, W];
          for (let r = 0; r < B && n < preview; r++, n++) kept.push(Uint8Array.from(ids.subarray(r * H * W, (r + 1) * H * W)));
        }
      } finally {
        logits.dispose();
      }
    } finally {
      tf.dispose([b.images, b.masks]);
    }
  }
  const res = meter.result();
  return { iou: res.iou, miou: res.miou, accuracy: res.accuracy, pixels: res.pixels, preview: kept.length ? encodeSegPreview(kept, shape) : '' };
}

/** `n×H×W:` then one hex digit per pixel (class ids < 16), images in order, row-major. */
export function encodeSegPreview(masks: readonly Uint8Array[], [H, W]: readonly [number, number]): string {
  let s = `${masks.length}x${H}x${W}:`;
  for (const m of masks) {
    if (m.length !== H * W) throw new Error(`encodeSegPreview: a mask of ${m.length} pixels for ${H}×${W}`);
    for (const v of m) {
      if (v > 15) throw new Error(`encodeSegPreview: class id ${v} does not fit one hex digit`);
      s += v.toString(16);
    }
  }
  return s;
}

/** The masks of `encodeSegPreview`: [n, H, W] class ids. */
export function decodeSegPreview(s: string): { n: number; H: number; W: number; ids: Uint8Array } {
  const m = /^(\d+)x(\d+)x(\d+):([0-9a-f]*)$/.exec(s);
  if (!m) throw new Error(`decodeSegPreview: not a preview string (${s.slice(0, 40)}…)`);
  const [n, H, W] = [+m[1], +m[2], +m[3]];
  if (m[4].length !== n * H * W) throw new Error(`decodeSegPreview: ${m[4].length} pixels for ${n}×${H}×${W}`);
  return { n, H, W, ids: Uint8Array.from(m[4], (c) => parseInt(c, 16)) };
}

/** What the evaluation needs from a session. */
export interface SegEvalArgs {
  /** The encoder to evaluate and its hooks (none for a merged copy). */
  vit: Vit;
  hooks: VitHooks;
  spec: SegmentationEval;
  /** The datasets of `spec.train` and `spec.test`. */
  data: (key: 'train' | 'test', set: SplitSet) => Promise<Dataset>;
  step: number;
  seed: number;
}

/** Row indices of head step `s` over `n` cached images: seeded permutation per epoch, full batches. */
function rowsAt(seed: number, s: number, n: number, batch: number): number[] {
  const b = Math.min(batch, n);
  const ipe = Math.max(1, Math.floor(n / b));
  const perm = Rng.derive(seed, 'seg-head', Math.floor(s / ipe)).permutation(n);
  const k = s % ipe;
  return perm.slice(k * b, (k + 1) * b);
}

/**
 * Train a new head (frozen encoder, or encoder + LoRA) on `train` and score it on `test`; returns the evaluation row
 * (`segIoU` = IoU of class 1, `segMIoU`, `segPixelAcc`, `segHeadLoss` = mean loss of the last 10 head steps,
 * `segTrainImages`, `segPreview` when asked).
 */
export async function evaluateSegmentation(a: SegEvalArgs): Promise<Record<string, number | string>> {
  const e = a.spec;
  if (isDataParallel()) {
    // its head steps would sum replicated gradients over the workers (trainStep reduces in a data-parallel worker)
    throw new RecipeError('recipe.eval.kind', "the segmentation evaluation runs in one thread: run this recipe with workers: 1");
  }
  const K = e.numClasses;
  const cfg = a.vit.config;
  const D = cfg.embedDim;
  const p = cfg.patchSize;
  const head: SegHead = createSegHead({ mode: e.head.mode, layers: e.head.layers, numClasses: K, embedDim: D, patchSize: p }, { seed: a.seed });
  const trainDs = await a.data('train', e.train);
  const testDs = await a.data('test', e.test);
  let lora: ReturnType<typeof createLora> | null = null;
  let opt: Optimizer | null = null;
  const cache: { feats: tf.Tensor3D[]; masks: tf.Tensor4D | null } = { feats: [], masks: null };
  try {
    let hooks = a.hooks;
    if (e.encoder === 'lora') {
      if (a.hooks.linear) throw new RecipeError('recipe.eval.encoder', "'lora' adapts a merged copy of the encoder; this session's encoder is evaluated live with its own adapters");
      lora = createLora(a.vit.params, { rank: e.loraRank, alpha: 1, targets: [qvTarget()] }, { seed: a.seed });
      hooks = { linear: loraHooks(lora) };
    }
    const vars = new Map([...segHeadVariables(head), ...(lora ? flattenTree(lora.params) : [])]);
    opt = new Optimizer(ADAMW_DEFAULTS, vars);
    const tokensOf = (x: tf.Tensor4D, training = false, rng: Rng | null = null): { tokens: tf.Tensor3D[]; grid: [number, number] } =>
      vitSegTokens(a.vit, x, { layers: e.head.layers, hooks, training, rng });
    const losses: number[] = [];
    const step = async (s: number, loss: () => tf.Scalar): Promise<void> => {
      const r = await trainStepAuto({ params: vars, optimizer: opt!, loss, lr: e.lr, weightDecay: e.weightDecay, iteration: s });
      losses.push(r.loss);
    };
    let grid: [number, number] = [0, 0];
    if (e.encoder === 'frozen') {
      // tokens of every training image, once: layers × [N, L, D]; masks [N, H, W, 1]
      const parts: tf.Tensor3D[][] = [];
      const masks: tf.Tensor4D[] = [];
      try {
        for await (const b of maskBatches(trainDs, e.train, e.featureBatch, 'recipe.eval.train', K)) {
          try {
            const t = tf.tidy(() => {
              const o = tokensOf(b.images);
              grid = o.grid;
              return o.tokens;
            });
            parts.push(t);
            masks.push(b.masks);
          } finally {
            b.images.dispose();
          }
        }
        cache.feats = e.head.layers > 0 ? parts[0].map((_, l) => tf.concat(parts.map((q) => q[l])) as tf.Tensor3D) : [];
        cache.masks = tf.concat(masks) as tf.Tensor4D;
      } finally {
        tf.dispose([...parts.flat(), ...masks]);
      }
      const N = cache.masks.shape[0];
      for (let s = 0; s < e.steps; s++) {
        const rows = rowsAt(a.seed, s, N, e.batch);
        await step(s, () => {
          const idx = tf.tensor1d(rows, 'int32');
          return segCrossEntropy(segHeadForward(head, cache.feats.map((f) => tf.gather(f, idx)), grid), tf.gather(cache.masks!, idx));
        });
      }
    } else {
      const loader = new Loader(trainDs, { batchSize: Math.min(e.batch, trainDs.length), seed: a.seed, transform: sampleTransform(e.train.transform, 'recipe.eval.train.transform') });
      for (let s = 0; s < e.steps; s++) {
        const b = await loader.batchAt(s);
        try {
          checkMaskBatch(b, trainDs, 'recipe.eval.train', K);
          const rng = Rng.derive(a.seed, 'seg-lora', s);
          await step(s, () => {
            const o = tokensOf(b.images!, true, rng);
            return segCrossEntropy(segHeadForward(head, o.tokens, o.grid), b.masks!);
          });
        } finally {
          disposeBatch(b);
        }
      }
    }
    const sc = await scoreSegmentation(
      maskBatches(testDs, e.test, e.featureBatch, 'recipe.eval.test', K),
      (x) => tf.tidy(() => {
        const o = tokensOf(x);
        return segHeadForward(head, o.tokens, o.grid);
      }),
      K,
      e.previewImages,
    );
    const tail = losses.slice(-10);
    const row: Record<string, number | string> = {
      segIoU: sc.iou[1],
      segMIoU: sc.miou,
      segPixelAcc: sc.accuracy,
      segHeadLoss: tail.length ? tail.reduce((x, y) => x + y, 0) / tail.length : NaN,
      segTrainImages: trainDs.length,
    };
    if (sc.preview) row.segPreview = sc.preview;
    return row;
  } finally {
    tf.dispose([...cache.feats, ...(cache.masks ? [cache.masks] : [])]);
    opt?.dispose();
    if (lora) disposeLora(lora);
    disposeSegHead(head);
  }
}
