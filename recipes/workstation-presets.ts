/**
 * The `workstation` scale of the ExPLoRA notebooks (01 M-ExPLoRA, 03 D-ExPLoRA, 04 fine-tuning; issue 15 item 4): a
 * 16-core CPU or one GPU, about an hour per notebook, with a **ViT-S-sized encoder** (D 384, 12 blocks, 6 heads, MLP
 * 1536) at 64 px with patch 8 (8×8 = 64 patches), 5× the embedded data, longer runs. Plain data, like the smoke
 * presets; **not measured** (no such machine was available to the kit's developers): `planRun` / `vitpeft plan` give
 * the planned memory and FLOPs per step (test/workstation-presets.test.ts prints and checks them).
 *
 * Source models: no ViT-S source exists in the kit's assets, and DINOv2's released ViT-S/14 (timm
 * `vit_small_patch14_dinov2`) is a natural-image model at patch 14, not this patch-8 64-px layout. The workstation
 * path therefore **makes its sources first with the kit's own source tools**, like the smoke sources:
 * `npx tsx tools/make-source-dino.ts --spec workstation` (notebook 03; `SOURCE_DINO_WORKSTATION_SPEC` there; the
 * notebook's `workstation` scale loads that file) and `npx tsx tools/make-source-mae.ts --spec workstation` (notebooks
 * 01 / 04: `WORKSTATION_SOURCE_MAE` → `SOURCE_MAE_WORKSTATION_ASSET`, the file `MAE_MINI_WORKSTATION`,
 * `WORKSTATION_M_EXPLORA` and notebook 04's workstation fine-tuning load; timm has no MAE ViT-S weights). Without the
 * file those scales stop at once, naming it and the command (`requireSourceMaeAsset`).
 */
import { existsSync } from 'fs';
import type { Recipe } from './recipe';
import { DinoMiniConfig, MaeMiniConfig, MiniMethod, standardMethods } from './miniature';
import { MINIATURE_EVAL } from './miniature-eval';
import { assetFile } from './model';
import { RECIPES } from './presets';
import { sourceMaeRecipe } from './source-mae';

/** ViT-S: D 384, 12 blocks, 6 heads (MLP 4×), at 64 px with patch 8. */
export const WORKSTATION_VIT_S = { imgSize: 64, patchSize: 8, embedDim: 384, depth: 12, numHeads: 6 } as const;

/** The DINOv2-style ViT-S source notebook 03's workstation scale loads (made by `tools/make-source-dino.ts --spec workstation`). */
export const SOURCE_DINO_WORKSTATION_ASSET = 'source-dino-d384x12-p8-64px-30ep-seed0';

/** The embedded domains at 64 px, 500 images per class (satellite: 3,000 train / 1,000 val / 1,000 test). */
const DATA64 = { seed: 0, size: 64, satellitePerClass: 500, naturalPerClass: 500 } as const;

/** ExPLoRA with three unfrozen blocks (the paper's [1,L-1,L] row). */
const THREE_BLOCKS = (rank: number): MiniMethod => ({ name: 'explora-[1,L-1,L]', kind: 'recipe', unfrozen: [1, 'L-1', 'L'], rank });

/**
 * Notebook 03 at `workstation`: D-ExPLoRA on the ViT-S source; rank 24 keeps the paper's r/D (64/1024); 600 steps of
 * batch 64 (≈ 13 epochs of the 3,000 unlabelled images), 4 local crops at 32 px; probe on 1,000 / 300 / 1,000 images;
 * Fig. 3 points at 150 and 300 steps.
 */
export const DINO_MINI_WORKSTATION: DinoMiniConfig = {
  objective: 'dino',
  data: { embedded: { ...DATA64 }, pretrainImages: 0, evalImages: { train: 1000, val: 300, test: 1000 }, perSeed: false },
  source: { checkpoint: assetFile(SOURCE_DINO_WORKSTATION_ASSET) },
  model: { preset: 'vit_small_patch14_dinov2', overrides: { ...WORKSTATION_VIT_S, posEmbedGrid: null, layerScale: 1 } },
  ssl: {
    head: { hiddenDim: 1024, bottleneckDim: 128, outDim: 1024 },
    nLocalCrops: 4,
    globalCropSize: 64,
    localCropSize: 32,
    targets: 'sinkhorn_knopp',
    teacherTemp: { warmup: 0.04, final: 0.07, warmupSteps: 150 },
  },
  pretrain: { steps: 600, batch: 64, baseLr: 4e-3, warmupSteps: 60, freezeLastLayerSteps: 60, momentumTeacher: 0.992, dropPathRate: 0.1, weightDecay: 0.04, weightDecayEnd: 0.4 },
  scratch: { baseLr: 4e-3 },
  methods: [...standardMethods(24).filter((m) => m.name !== 'lora'), THREE_BLOCKS(24)],
  evalAt: [150, 300],
  eval: MINIATURE_EVAL,
};

/** The ViT-S source MAE of the workstation scale (notebooks 01 / 04): the smoke source's recipe at ViT-S, 64 px, 5× the natural images, 6,000 steps. */
export const WORKSTATION_SOURCE_MAE: Recipe = ((): Recipe => {
  const r = sourceMaeRecipe(6000, 0);
  return {
    ...r,
    name: 'source-mae-workstation',
    description: 'Source MAE of the workstation scale: ViT-S encoder (D 384, 12 blocks, patch 8, 64 px), decoder 128 × 4, on the embedded natural domain at 64 px (500 per class)',
    model: { kind: 'mae', preset: 'mae_vit_base_patch16', encoder: { ...WORKSTATION_VIT_S }, decoder: { embedDim: 128, depth: 4, numHeads: 4 } },
    data: { source: { kind: 'embedded', domain: 'natural', ...DATA64 }, train: { splits: [{ split: 'train', subset: null }], transform: { name: 'mae-pretrain', size: 64, stats: 'imagenet' } } },
    batch: 128,
    schedule: { kind: 'cosine', warmup: { steps: 600 }, minLr: 0, warmupStart: 0 },
  } as Recipe;
})();

/** The ViT-S source MAE notebooks 01 / 04 load at `workstation` (made by `tools/make-source-mae.ts --spec workstation` from `WORKSTATION_SOURCE_MAE`). */
export const SOURCE_MAE_WORKSTATION_ASSET = 'source-mae-d384x12-p8-64px-6000s-seed0';

/**
 * Stop, naming the file and the command that makes it, when the source-MAE kit asset `name` is missing
 * (`notebooks/assets/<name>.safetensors`; the workstation asset: `tools/make-source-mae.ts --spec workstation`).
 */
export function requireSourceMaeAsset(name: string, exists: (file: string) => boolean = existsSync): void {
  const file = assetFile(name);
  if (exists(file)) return;
  const ws = name === SOURCE_MAE_WORKSTATION_ASSET;
  const tool = ws ? 'npx tsx tools/make-source-mae.ts --spec workstation' : 'npx tsx tools/make-source-mae.ts';
  throw new Error(
    `the source MAE ${file} is missing: make it with '${tool}'` +
      (ws ? ' (the ViT-S source of the workstation scale, WORKSTATION_SOURCE_MAE: 6,000 steps of batch 128 at 64 px, a GPU or 16-core job)' : '') +
      '; see notebooks/assets/README.md',
  );
}

/**
 * Notebooks 01 / 04 at `workstation`: M-ExPLoRA on the ViT-S source MAE (its file: `SOURCE_MAE_WORKSTATION_ASSET`,
 * from `WORKSTATION_SOURCE_MAE`), the NIR false-colour target at 64 px with 500 images per class, 600 steps of batch
 * 64, rank 24 (r/D as the paper's), probe 1,000 / 300 / 1,000.
 */
export const MAE_MINI_WORKSTATION: MaeMiniConfig = {
  objective: 'mae',
  data: { embedded: { seed: 0, size: 64, satellitePerClass: 500, satelliteRender: { composite: 'nir-false-color', nuisance: 1 } }, pretrainImages: 0, evalImages: { train: 1000, val: 300, test: 1000 }, perSeed: false },
  source: { checkpoint: assetFile(SOURCE_MAE_WORKSTATION_ASSET) },
  model: { preset: 'mae_vit_base_patch16', encoder: { ...WORKSTATION_VIT_S }, decoder: { embedDim: 128, depth: 4, numHeads: 4 }, maskRatio: 0.75, normPixLoss: true },
  pretrain: { steps: 600, batch: 64, blr: 8e-3, warmupSteps: 60, decoderRank: 4 },
  scratch: { blr: 6e-3, weightDecay: 0.05, warmupSteps: 60 },
  methods: standardMethods(24).filter((m) => m.name !== 'lora'),
  evalAt: [150, 300],
  eval: MINIATURE_EVAL,
};

/**
 * The M-ExPLoRA recipe of the workstation scale (notebook 01's walkthrough, notebook 04's stage 1): `MAE_MINI_WORKSTATION`'s
 * extended pre-training as a recipe — M-ExPLoRA-[L]-r24 (decoder r4) on the ViT-S source MAE, 600 steps of batch 64 at
 * blr 8e-3 (warm-up 60 steps, cosine), the DINOv2 probe of `RECIPES.m_explora_small` after 0, 150, 300 and 600 steps
 * — on the embedded **true-colour** satellite set at 64 px, 500 images per class (3,000 / 1,000 / 1,000; the recipe
 * layer renders the default satellite set only, so the NIR composite of the comparison is not expressible here).
 */
export const WORKSTATION_M_EXPLORA: Recipe = ((): Recipe => {
  const m = RECIPES.m_explora_small;
  const p = MAE_MINI_WORKSTATION.pretrain;
  const mm = MAE_MINI_WORKSTATION.model;
  return {
    ...m,
    name: 'ws-m-explora',
    description: 'M-ExPLoRA-[L]-r24 (decoder r4) on the ViT-S source MAE, embedded satellite domain at 64 px, 500 per class (workstation scale of notebooks 01 / 04)',
    model: { kind: 'mae', preset: mm.preset, encoder: { ...WORKSTATION_VIT_S }, decoder: { ...mm.decoder } },
    weights: { kind: 'asset', name: SOURCE_MAE_WORKSTATION_ASSET, head: 'keep' },
    adapters: { kind: 'explora', notation: 'M-ExPLoRA-[L]-r24', overrides: { decoderRank: p.decoderRank } },
    data: { source: { ...m.data.source, size: 64, satellitePerClass: 500 }, train: { ...m.data.train, transform: { name: 'mae-pretrain', size: 64, stats: 'imagenet' } } },
    batch: p.batch,
    steps: p.steps,
    epochs: null,
    lr: { base: p.blr, scale: 'linear-256' },
    schedule: { ...m.schedule, warmup: { steps: p.warmupSteps } },
    eval: { ...m.eval, at: { steps: [0, ...MAE_MINI_WORKSTATION.evalAt, p.steps] } },
  } as Recipe;
})();
