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
   * SatMAE group-channel ViT-L/8 on fMoW-Sentinel: blocks 1 and L, encoder LoRA r32, patch embeddings and the per-group
   * `decoder_pred` heads train (`--unfreeze_embed`), and the decoder LoRA has rank 32 too: ExPLoRA's `mae/pretrain.py`
   * sets `decoder_lora_rank = lora_rank` when the flag is not given (only the RGB script passes `--decoder_lora_rank 8`).
   * The paper's "29.7M" is that script's `sum(p.numel() for p in model.parameters() if p.requires_grad)` over encoder
   * **and** decoder: 28,169,216 + 658,432 (group patch embeddings) + 524,288 (decoder r32 LoRA on Q,V of 8 blocks) +
   * 17,408 (decoder norms) + 328,320 (`decoder_pred.0-2`) = 29,697,664. Encoder alone: 28,827,648.
   */
  'M-ExPLoRA-[1,L]-r32': exploraRecipe('M-ExPLoRA-[1,L]-r32', { unfreezeEmbed: true, decoderRank: 32 }),
  /**
   * SatMAE temporal ViT-L/16 on fMoW-temporal: rank 32 (the paper's temporal configuration; the script
   * `scripts/pretrain_mae_temporal.sh` could not be read, so the unfrozen set [L] and the decoder rank = encoder rank
   * (`mae/pretrain.py`'s default) are UNCONFIRMED). The temporal model shares its patch embedding with RGB, so it stays
   * frozen.
   */
  'M-ExPLoRA-[L]-r32': exploraRecipe('M-ExPLoRA-[L]-r32', { decoderRank: 32 }),
} as const;
