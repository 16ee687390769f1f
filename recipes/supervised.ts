/**
 * Supervised training of a ViT classifier on a labelled `Dataset` (all parameters train): the recipe as data, the loop
 * and a plain accuracy evaluation. Used to pre-train the small source backbones the notebooks fine-tune with LoRA /
 * ToMe / PYRA (the kit's stand-in for an ImageNet-21k supervised checkpoint, see `source-vit.ts`).
 *
 * Batches come from the data-loaders `Loader` (seeded order and augmentation per (seed, step)), so the same seed on the
 * same backend gives the same weights. Augmentation: optional RandomResizedCrop + horizontal flip, then per-channel
 * normalisation; evaluation: normalisation only.
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys } from '../lib/check';
import { Vit, vitVariables } from '../lib/vit/params';
import { imgHW } from '../lib/vit/config';
import { vitForward, VitHooks } from '../lib/vit/forward';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainLoop, StepInfo, NonFinitePolicy } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';
import { Schedule } from '../lib/train/schedule';
import { Dataset, Loader, disposeBatch, SampleTransform } from '../data-loaders/dataset';
import { compose, normalizeWith, randomHFlip, randomResizedCrop } from '../data-loaders/augment';
import { NormStats, IMAGENET_STATS } from '../data-loaders/transforms';

export interface SupervisedRecipe {
  steps: number;
  batch: number;
  /** Peak lr (AdamW, betas 0.9/0.999), reached after `warmupSteps` linear steps from 0, then cosine to `minLr`. */
  lr: number;
  minLr: number;
  warmupSteps: number;
  /** Decoupled weight decay on ≥ 2-D weights (not pos_embed / cls_token). */
  weightDecay: number;
  labelSmoothing: number;
  /** RandomResizedCrop scale range (null = no crop). */
  rrcScale: readonly [number, number] | null;
  hflip: boolean;
  /** Global gradient-norm clip (0 = none). */
  clipGradNorm: number;
}

const RECIPE_KEYS: readonly (keyof SupervisedRecipe)[] = [
  'steps', 'batch', 'lr', 'minLr', 'warmupSteps', 'weightDecay', 'labelSmoothing', 'rrcScale', 'hflip', 'clipGradNorm',
];

/** A small-data from-scratch recipe (DeiT-like, scaled down): tweak with a spread, `{...SUPERVISED_RECIPE, steps: 50}`. */
export const SUPERVISED_RECIPE: SupervisedRecipe = Object.freeze({
  steps: 800,
  batch: 64,
  lr: 1e-3,
  minLr: 1e-5,
  warmupSteps: 40,
  weightDecay: 0.05,
  labelSmoothing: 0.1,
  rrcScale: [0.7, 1] as const,
  hflip: true,
  clipGradNorm: 1,
});

/** Validate a recipe (unknown keys, non-positive sizes). */
export function checkRecipe(r: SupervisedRecipe): SupervisedRecipe {
  checkKeys('SupervisedRecipe', r, RECIPE_KEYS);
  for (const k of ['steps', 'batch'] as const) {
    if (!Number.isInteger(r[k]) || r[k] <= 0) throw new Error(`SupervisedRecipe.${k}: expected a positive integer, got ${r[k]}`);
  }
  if (!Number.isInteger(r.warmupSteps) || r.warmupSteps < 0 || r.warmupSteps > r.steps) {
    throw new Error(`SupervisedRecipe.warmupSteps: expected an integer in [0, steps = ${r.steps}], got ${r.warmupSteps}`);
  }
  if (!(r.lr > 0)) throw new Error(`SupervisedRecipe.lr: expected > 0, got ${r.lr}`);
  return r;
}

/** The recipe's lr schedule (per step). */
export function recipeLr(r: SupervisedRecipe): Schedule {
  return { kind: 'cosine', base: r.lr, min: r.minLr, totalIters: r.steps, warmupIters: r.warmupSteps, warmupStart: 0 };
}

/** Training transform of a recipe for `size`-pixel inputs: [RRC] → [flip] → normalise. */
export function recipeTransform(r: SupervisedRecipe, size: number, stats: NormStats = IMAGENET_STATS): SampleTransform {
  const ts: SampleTransform[] = [];
  if (r.rrcScale) ts.push(randomResizedCrop({ size, scale: [r.rrcScale[0], r.rrcScale[1]] }));
  if (r.hflip) ts.push(randomHFlip(0.5));
  ts.push(normalizeWith(stats));
  return compose(...ts);
}

/** Accuracy of `vit` (eval mode, optional hooks) on a labelled dataset, in dataset order. */
export async function datasetAccuracy(
  vit: Vit,
  ds: Dataset,
  opts: { hooks?: VitHooks; batch?: number; transform?: SampleTransform } = {},
): Promise<number> {
  const loader = new Loader(ds, { batchSize: opts.batch ?? 100, shuffle: false, transform: opts.transform ?? normalizeWith(IMAGENET_STATS) });
  let correct = 0;
  let seen = 0;
  for await (const b of loader.epoch(0)) {
    try {
      if (!b.labels) throw new Error(`datasetAccuracy(${ds.name}): batch ${b.step} has no labels`);
      const pred = tf.tidy(() => tf.argMax(vitForward(vit, b.images!, { hooks: opts.hooks }).logits!, 1).dataSync());
      const y = b.labels.dataSync();
      for (let i = 0; i < y.length; i++) correct += pred[i] === y[i] ? 1 : 0;
      seen += y.length;
    } finally {
      disposeBatch(b);
    }
  }
  return correct / seen;
}

export interface SupervisedResult {
  /** Mean training loss over the last 10 % of steps. */
  finalLoss: number;
  /** Loss of every step. */
  losses: number[];
  /** Top-1 accuracy on each step's (augmented) training batch, in training mode. */
  trainAccuracy: number[];
  /** Steps skipped for non-finite values (`nonFinite: 'skip'`). */
  skipped: number;
  /** Validation accuracy at each evaluation (step = steps done). */
  evals: Array<{ step: number; accuracy: number }>;
  seconds: number;
}

export interface SupervisedOptions {
  seed: number;
  /** Evaluated every `evalEvery` steps and at the end (when given). */
  val?: Dataset;
  evalEvery?: number;
  stats?: NormStats;
  onStep?: (info: StepInfo) => void | Promise<void>;
  onEval?: (e: { step: number; accuracy: number }) => void;
  /** Non-finite loss / gradient / lr: 'error' (default) or 'skip' the step (see `trainStep`). */
  nonFinite?: NonFinitePolicy;
}

/**
 * Train every parameter of `vit` (a classifier: numClasses = the dataset's classes) on `train` with `recipe`, with the
 * kit's generic `trainLoop` (AdamW, the default decay mask, global grad clip). Drop-path follows the model config
 * (training mode). Each step reports the loss and the batch's top-1 accuracy as the named metric `accuracy`. Returns
 * losses, training accuracies and validation accuracies.
 */
export async function trainSupervised(vit: Vit, train: Dataset, recipe: SupervisedRecipe, opts: SupervisedOptions): Promise<SupervisedResult> {
  checkKeys('trainSupervised options', opts, ['seed', 'val', 'evalEvery', 'stats', 'onStep', 'onEval', 'nonFinite']);
  checkRecipe(recipe);
  if (!vit.params.head) throw new Error('trainSupervised: the ViT has no head (numClasses = 0)');
  const classes = train.classes?.length;
  if (classes !== undefined && classes !== vit.config.numClasses) {
    throw new Error(`trainSupervised: ${train.name} has ${classes} classes but the ViT's head has ${vit.config.numClasses}`);
  }
  const [H, W] = imgHW(vit.config);
  if (H !== W) throw new Error(`trainSupervised: square inputs only, got ${H}×${W}`);
  const stats = opts.stats ?? IMAGENET_STATS;
  const loader = new Loader(train, { batchSize: recipe.batch, seed: opts.seed, transform: recipeTransform(recipe, H, stats) });
  const params = vitVariables(vit);
  const optimizer = new Optimizer(ADAMW_DEFAULTS, params);
  const evals: Array<{ step: number; accuracy: number }> = [];
  const evalTransform = normalizeWith(stats);
  const evaluate = async (step: number): Promise<void> => {
    if (!opts.val) return;
    const e = { step, accuracy: await datasetAccuracy(vit, opts.val, { transform: evalTransform }) };
    evals.push(e);
    opts.onEval?.(e);
  };
  const t0 = Date.now();
  const losses: number[] = [];
  const trainAccuracy: number[] = [];
  try {
    await trainLoop({
      params,
      optimizer,
      steps: recipe.steps,
      seed: opts.seed,
      lr: recipeLr(recipe),
      weightDecay: { kind: 'constant', value: recipe.weightDecay },
      clipGradNorm: recipe.clipGradNorm,
      batch: async (step) => {
        const b = await loader.batchAt(step);
        return { images: b.images!, labels: b.labels! };
      },
      nonFinite: opts.nonFinite,
      loss: (b, rng) => {
        const logits = vitForward(vit, b.images, { training: true, rng }).logits!;
        const accuracy = tf.mean(tf.cast(tf.equal(tf.argMax(logits, -1), tf.cast(b.labels, 'int32')), 'float32')) as tf.Scalar;
        return { loss: crossEntropy(logits, b.labels, recipe.labelSmoothing), metrics: { accuracy } };
      },
      onStep: async (info) => {
        losses.push(info.loss);
        trainAccuracy.push(info.metrics?.accuracy ?? NaN);
        if (opts.onStep) await opts.onStep(info);
        const done = info.step + 1;
        if (opts.evalEvery && done % opts.evalEvery === 0 && done < recipe.steps) await evaluate(done);
      },
    });
    await evaluate(recipe.steps);
  } finally {
    optimizer.dispose();
  }
  const skipped = optimizer.skipped;
  const kept = losses.filter((l) => Number.isFinite(l));
  const tail = kept.slice(-Math.max(1, Math.round(kept.length / 10)));
  return { finalLoss: tail.reduce((a, b) => a + b, 0) / tail.length, losses, trainAccuracy, skipped, evals, seconds: (Date.now() - t0) / 1000 };
}
