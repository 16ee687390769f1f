/**
 * The ExPLoRA miniature's configurations (recipes/miniature.ts): M-ExPLoRA on the kit's source MAE (notebook 01's
 * model) and D-ExPLoRA on the kit's DINOv2-style source (tools/make-source-dino.ts), each on the embedded satellite
 * target; plus a `ci` D-ExPLoRA configuration (a 2-block 32-wide source, a few steps, small evaluation sets: mechanics
 * only). Plain data: spread and tweak them (`{...DINO_MINI, pretrain: {...DINO_MINI.pretrain, steps: 300}}`).
 */
import { MaeMiniConfig, DinoMiniConfig, standardMethods } from './miniature';
import { MINIATURE_EVAL } from './miniature-eval';
import { assetFile } from './model';

/** The committed DINOv2-style source of the smoke miniature (tools/make-source-dino.ts, SOURCE_DINO_SPEC: d64×4, 600 steps). */
export const SOURCE_DINO_ASSET = 'source-dino-d64x4-p8-32px-8ep-seed0';
/** The committed ci-scale DINOv2-style source (2 blocks × 32 wide, 2 epochs: mechanics only). */
export const SOURCE_DINO_CI_ASSET = 'source-dino-d32x2-p8-32px-2ep-seed0';


/** Notebook 01's smoke configuration (M-ExPLoRA on the committed source MAE), larger evaluation sets. */
export const MAE_MINI: MaeMiniConfig = {
  objective: 'mae',
  data: { embedded: { seed: 0, size: 32, satellitePerClass: 100, satelliteRender: { composite: 'rgb', nuisance: 1 } }, pretrainImages: 0, evalImages: { train: 0, val: 0, test: 0 }, perSeed: false },
  source: { checkpoint: assetFile('source-mae-d96x6-p4-32px-1200s-seed0') },
  model: { preset: 'mae_vit_base_patch16', encoder: { imgSize: 32, patchSize: 4, embedDim: 96, depth: 6, numHeads: 3 }, decoder: { embedDim: 64, depth: 2, numHeads: 4 }, maskRatio: 0.75, normPixLoss: true },
  pretrain: { steps: 108, batch: 64, blr: 8e-3, warmupSteps: 9, decoderRank: 2 },
  scratch: { blr: 6e-3, weightDecay: 0.05, warmupSteps: 9 },
  methods: standardMethods(8),
  evalAt: [],
  eval: MINIATURE_EVAL,
};

/** D-ExPLoRA on the DINOv2-style source (tools/make-source-dino.ts). */
export const DINO_MINI: DinoMiniConfig = {
  objective: 'dino',
  data: { embedded: { seed: 0, size: 32, satellitePerClass: 100, satelliteRender: { composite: 'rgb', nuisance: 1 } }, pretrainImages: 0, evalImages: { train: 0, val: 0, test: 0 }, perSeed: false },
  source: { checkpoint: assetFile(SOURCE_DINO_ASSET) },
  model: { preset: 'vit_small_patch14_dinov2', overrides: { imgSize: 32, patchSize: 8, embedDim: 64, depth: 4, numHeads: 2, posEmbedGrid: null, layerScale: 1 } },
  ssl: {
    head: { hiddenDim: 256, bottleneckDim: 64, outDim: 128 },
    nLocalCrops: 2,
    globalCropSize: 32,
    localCropSize: 16,
    targets: 'sinkhorn_knopp',
    teacherTemp: { warmup: 0.04, final: 0.07, warmupSteps: 30 },
  },
  pretrain: { steps: 96, batch: 32, baseLr: 4e-3, warmupSteps: 10, freezeLastLayerSteps: 10, momentumTeacher: 0.992, dropPathRate: 0.1, weightDecay: 0.04, weightDecayEnd: 0.4 },
  scratch: { baseLr: 4e-3 },
  methods: standardMethods(8),
  evalAt: [],
  eval: MINIATURE_EVAL,
};


/** `ci` scale of notebook 03: the 2-block source, 4 steps of batch 8, 100 / 50 / 50 probe images, a short probe. */
export const DINO_MINI_CI: DinoMiniConfig = {
  ...DINO_MINI,
  data: { ...DINO_MINI.data, evalImages: { train: 100, val: 50, test: 50 } },
  source: { checkpoint: assetFile(SOURCE_DINO_CI_ASSET) },
  model: { preset: 'vit_small_patch14_dinov2', overrides: { imgSize: 32, patchSize: 8, embedDim: 32, depth: 2, numHeads: 2, posEmbedGrid: null, layerScale: 0.1 } },
  ssl: { ...DINO_MINI.ssl, head: { hiddenDim: 64, bottleneckDim: 16, outDim: 64 }, teacherTemp: { ...DINO_MINI.ssl.teacherTemp, warmupSteps: 2 } },
  pretrain: { ...DINO_MINI.pretrain, steps: 4, batch: 8, warmupSteps: 1, freezeLastLayerSteps: 1 },
  methods: standardMethods(4).filter((m) => m.name !== 'lora'),
  evalAt: [],
  eval: { probe: { ...MINIATURE_EVAL.probe, epochs: 2, itersPerEpoch: 5, batchSize: 64 }, knn: MINIATURE_EVAL.knn },
};

/**
 * Notebook 01's smoke miniature (branch `nb01`, LOG.md): `MAE_MINI` on a real colour shift — the target rendered as the
 * NIR false-colour composite (B8, B4, B3), which the natural-domain source never saw — with 5× the satellite images
 * (500 per class: 3,000 unlabelled pre-training images) and larger evaluation sets (probe 1,000 / 300 / 1,000: one
 * test image = 0.1 point).
 */
export const MAE_MINI_SMOKE: MaeMiniConfig = {
  ...MAE_MINI,
  data: { ...MAE_MINI.data, embedded: { seed: 0, size: 32, satellitePerClass: 500, satelliteRender: { composite: 'nir-false-color', nuisance: 1 } }, evalImages: { train: 1000, val: 300, test: 1000 } },
  methods: standardMethods(8).filter((m) => m.name !== 'lora'),
};

/**
 * `ci` scale of notebook 01: the same source, 4 steps of batch 16 on 64 images, probe 100 / 50 / 50 images of the
 * default (true-colour, 100 per class) satellite set the other notebooks already generate (mechanics only).
 */
export const MAE_MINI_CI: MaeMiniConfig = {
  ...MAE_MINI_SMOKE,
  data: { ...MAE_MINI.data, pretrainImages: 64, evalImages: { train: 100, val: 50, test: 50 } },
  pretrain: { ...MAE_MINI.pretrain, steps: 4, batch: 16, warmupSteps: 1 },
  scratch: { ...MAE_MINI.scratch, warmupSteps: 1 },
  eval: { probe: { ...MINIATURE_EVAL.probe, epochs: 2, itersPerEpoch: 5, batchSize: 64 }, knn: MINIATURE_EVAL.knn },
};
