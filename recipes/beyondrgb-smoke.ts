/**
 * Smoke-scale presets of the beyond-RGB experiments (multispectral + EuroSAT-13 transfer, temporal, WILDS Camelyon17 /
 * iWildCam, SpaceNet-v1 segmentation) on the embedded domains, sized so that each smoke notebook fits in ≤ 15 minutes
 * on the 2-core development machine with the wasm backend (per-step costs measured with `bench/beyondrgb-steps.ts`,
 * LOG.md "beyondrgb"). Plain data: spread and tweak them (`{...BEYOND_RGB_SMOKE.temporal, imgSize: 32}`).
 *
 * Scale, stated next to the paper's: the backbone is the kit's notebook-01 source MAE (D 96, 6 blocks, 3 heads, 32 px,
 * patch 4; 0.68 M encoder parameters) instead of ViT-L (303 M); ranks keep the paper's rank/width ratios (r32 on
 * D 1024 → r4 on D 96 for the multispectral and temporal ExPLoRA, r64 → r8 for RGB, decoder r8 on 512 → r2 on 64,
 * multispectral decoder r32 on 512 → r4 on 64); fine-tuning LoRA r4 (the paper's r8 on D 1024 would be below 1).
 * Step counts are tens to a hundred, not the paper's ~100k: the smoke run shows the pipeline and the direction of an
 * effect, never the paper's numbers.
 *
 * Budget (process CPU time per step with wasm on 1 thread, measured while the 2-core machine ran at load 15–20, so an
 * upper bound; `bench/beyondrgb-steps.ts`, LOG.md "beyondrgb"): group-MAE ExPLoRA 1.07 s (batch 64), group classifier
 * LoRA fine-tune 0.80 s (32), temporal ExPLoRA 0.48 s (32, 16 px), temporal fine-tune 0.63 s (32), RGB ExPLoRA 0.97 s
 * (64), RGB fine-tune 0.94 s (32), segmentation (LoRA + linear head) 0.94 s (32); evaluation 9–10 ms per image. With
 * one extended pre-training per task and fine-tuning of 2 methods × 3 seeds per task, the estimates are ≈ 12 min
 * (multispectral + EuroSAT transfer), ≈ 5 min (temporal), ≈ 12.5 min (Camelyon17 + iWildCam), ≈ 9 min (SpaceNet),
 * data decoding (a few seconds) not counted.
 */
import { exploraRecipe } from '../lib/peft/explora';

export const BEYOND_RGB_SMOKE = Object.freeze({
  /** The shared backbone = notebook 01's source MAE encoder (tools/make-source-mae.ts). */
  backbone: Object.freeze({ embedDim: 96, depth: 6, numHeads: 3, mlpRatio: 4, patchSize: 4, imgSize: 32 }),
  /** MAE decoder of the source model. */
  decoder: Object.freeze({ embedDim: 64, depth: 2, numHeads: 2 }),
  /** Seeds of every compared run (intervals need ≥ 3). */
  seeds: Object.freeze([0, 1, 2]),
  /**
   * fMoW-Sentinel-like 13-band sites → M-ExPLoRA on the group-channel MAE (patch 8 at 32 px: 4×4 cells × 3 groups =
   * 48 tokens), then LoRA fine-tuning on the site labels and transfer to the embedded EuroSAT 13-band.
   */
  multispectral: Object.freeze({
    imgSize: 32,
    patchSize: 8,
    channelEmbedDim: 24,
    decoderChannelEmbedDim: 16,
    explora: Object.freeze({ recipe: exploraRecipe('M-ExPLoRA-[1,L]-r4', { unfreezeEmbed: true, decoderRank: 4 }), steps: 100, batch: 64, blr: 8e-3 }),
    // lr 2e-2, no smoothing / drop-path: at 5e-3 with 0.1 / 0.1 the 60-step fine-tunes ended at loss ≈ 2.3 (nothing
    // learned, LOG.md `beyond3`); the paper's regularisers return at `paper` scale.
    finetune: Object.freeze({ rank: 4, steps: 60, batch: 32, lr: 2e-2, dropPath: 0, labelSmoothing: 0 }),
    eurosat: Object.freeze({ steps: 60, batch: 32, lr: 2e-2 }),
  }),
  /** Multi-date sites → M-ExPLoRA on the temporal MAE (3 frames at 16 px, patch 4: 3 × 16 = 48 tokens). */
  temporal: Object.freeze({
    imgSize: 16,
    timeEmbedDim: 12,
    decoderTimeEmbedDim: 8,
    explora: Object.freeze({ recipe: exploraRecipe('M-ExPLoRA-[L]-r4', { decoderRank: 4 }), steps: 100, batch: 32, blr: 8e-3 }),
    // As multispectral: the setting that learns at 60 steps (training loss 2.3 → 1.07 on the source, LOG.md `beyond3`).
    finetune: Object.freeze({ rank: 4, steps: 60, batch: 32, lr: 2e-2, dropPath: 0, labelSmoothing: 0 }),
  }),
  /** Camelyon17 (unlabelled target hospitals) and iWildCam: M-ExPLoRA on the RGB source MAE, then LoRA fine-tuning. */
  wilds: Object.freeze({
    imgSize: 32,
    explora: Object.freeze({ recipe: exploraRecipe('M-ExPLoRA-[L]-r8', { decoderRank: 2 }), steps: 80, batch: 64, blr: 8e-3 }),
    finetune: Object.freeze({ rank: 4, steps: 50, batch: 32, lr: 5e-3, dropPath: 0.1, labelSmoothing: 0.1 }),
  }),
  /** SpaceNet-like building chips: the (ExPLoRA-adapted) RGB backbone + LoRA + the 'linear' segmentation head. */
  spacenet: Object.freeze({
    imgSize: 32,
    head: Object.freeze({ mode: 'linear' as const, layers: 1 }),
    explora: Object.freeze({ recipe: exploraRecipe('M-ExPLoRA-[L]-r8', { decoderRank: 2 }), steps: 100, batch: 64, blr: 8e-3 }),
    finetune: Object.freeze({ rank: 4, steps: 80, batch: 32, lr: 5e-3 }),
  }),
});
