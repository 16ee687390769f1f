/**
 * The source model of notebook 01 (ExPLoRA with MAE): a small MAE pre-trained on the embedded natural domain, the
 * stand-in for ImageNet. `tools/make-source-mae.ts` trains it and writes `notebooks/assets/source-mae-<tag>.safetensors`
 * (metadata kind `vitpeft-source-mae/1`, the model below, the recipe, the loss curve); `sourceMaeRecipe` is the same
 * training as a recipe (what the notebook runs when the asset is missing).
 */
import type { Recipe } from './recipe';
import { RECIPE_FORMAT } from './recipe';

/** The model: a ViT with patch 4 at 32 px (8×8 = 64 patches), D 96, 6 blocks, 3 heads; decoder 64 wide, 2 blocks. */
export const SOURCE_MAE_MODEL = {
  preset: 'mae_vit_base_patch16',
  encoder: { imgSize: 32, patchSize: 4, embedDim: 96, depth: 6, numHeads: 3 },
  decoder: { embedDim: 64, depth: 2, numHeads: 4 },
  maskRatio: 0.75,
  normPixLoss: true,
} as const;

/** The pre-training recipe (MAE's, shortened): AdamW (0.9, 0.95), wd 0.05, warm-up then half-cycle cosine. */
export const SOURCE_MAE_TRAIN = {
  steps: 1200,
  batch: 64,
  lr: 1.5e-3,
  minLr: 0,
  warmupSteps: 150,
  weightDecay: 0.05,
  /** MAE augmentation: RandomResizedCrop(32, scale 0.2–1) + flip, ImageNet mean/std. */
  augment: 'maePretrain(32, IMAGENET_STATS)',
  data: 'embedded natural train (800 images, 10 shape classes; labels unused)',
  seed: 0,
};

export const SOURCE_MAE_FORMAT = 'vitpeft-source-mae/1';

/** File tag: model size, patch, image size, steps, seed — e.g. `d96x6-p4-32px-1200s-seed0` (`encoder`: default the model above). */
export function sourceMaeTag(
  a: { steps: number; seed: number },
  e: { embedDim: number; depth: number; patchSize: number; imgSize: number } = SOURCE_MAE_MODEL.encoder,
): string {
  return `d${e.embedDim}x${e.depth}-p${e.patchSize}-${e.imgSize}px-${a.steps}s-seed${a.seed}`;
}

/** The committed asset's name (`notebooks/assets/<name>.safetensors`). */
export const SOURCE_MAE_ASSET = `source-mae-${sourceMaeTag(SOURCE_MAE_TRAIN)}`;

/** The source-MAE pre-training as a recipe (`steps` shortens it; the warm-up is capped as the tool caps it). */
export function sourceMaeRecipe(steps: number = SOURCE_MAE_TRAIN.steps, seed: number = SOURCE_MAE_TRAIN.seed): Recipe {
  const t = SOURCE_MAE_TRAIN;
  const m = SOURCE_MAE_MODEL;
  return {
    format: RECIPE_FORMAT,
    name: 'source-mae',
    description: 'Source MAE of notebook 01: MAE pre-training on the embedded natural domain (tools/make-source-mae.ts)',
    tags: {},
    seed,
    model: { kind: 'mae', preset: m.preset, encoder: { ...m.encoder }, decoder: { ...m.decoder } },
    weights: { kind: 'init' },
    adapters: { kind: 'full' },
    objective: { kind: 'mae', maskRatio: m.maskRatio, normPixLoss: m.normPixLoss },
    data: {
      source: { kind: 'embedded', domain: 'natural', seed: 0, size: 32, satellitePerClass: 100, naturalPerClass: 100 },
      train: { splits: [{ split: 'train', subset: null }], transform: { name: 'mae-pretrain', size: 32, stats: 'imagenet' } },
    },
    batch: t.batch,
    steps,
    epochs: null,
    epochLength: null,
    optimizer: { kind: 'adamw', betas: [0.9, 0.95], eps: 1e-8, layerDecay: 1, patchEmbedLrMult: 1 },
    lr: t.lr,
    schedule: { kind: 'cosine', warmup: { steps: Math.min(t.warmupSteps, steps) }, minLr: t.minLr, warmupStart: 0 },
    weightDecay: t.weightDecay,
    clipGrad: 0,
    eval: { kind: 'none' },
    checkpointEvery: 0,
  };
}
