/**
 * The ExPLoRA parameter recipes the paper runs, named by its notation (ExPLoRA, arXiv 2406.10973: the D-/M- rows of
 * its fMoW-RGB and fMoW-Sentinel tables; flags from ExPLoRA's `scripts/pretrain_dino.sh` / `scripts/pretrain_mae.sh`).
 * The rule that turns a recipe into LoRA targets and trainability is the primitive `lib/peft/explora.ts`; these are
 * the paper's configurations of it.
 */
import { exploraRecipe } from '../lib/peft/explora';

export const EXPLORA_PRESETS = {
  /** DINOv2 ViT-L/14 on fMoW-RGB (the main setting; ViT-B: same recipe). */
  'D-ExPLoRA-[L]-r64': exploraRecipe('D-ExPLoRA-[L]-r64'),
  'D-ExPLoRA-[L]': exploraRecipe('D-ExPLoRA-[L]'),
  'D-ExPLoRA-[1,L]-r64': exploraRecipe('D-ExPLoRA-[1,L]-r64'),
  'D-ExPLoRA-[1,L-1,L]-r64': exploraRecipe('D-ExPLoRA-[1,L-1,L]-r64'),
  /** MAE ViT-L/16 on fMoW-RGB: encoder r64 on Q,V of blocks 0–22, decoder r8 on Q,V. */
  'M-ExPLoRA-[L]-r64': exploraRecipe('M-ExPLoRA-[L]-r64'),
  /**
   * SatMAE group-channel ViT-L on fMoW-Sentinel: patch embeddings train too (`--unfreeze_embed`; the exact extra set
   * behind the paper's 29.7M is not published).
   */
  'M-ExPLoRA-[1,L]-r32': exploraRecipe('M-ExPLoRA-[1,L]-r32', { unfreezeEmbed: true }),
} as const;
