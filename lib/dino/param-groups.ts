/**
 * DINOv2's parameter groups (`dinov2/utils/param_groups.py`, `dinov2/train/train.py`, `ssl_meta_arch.py`) as
 * declarative rules for the generic optimizer / train step (`lib/train/groups.ts`), over a student whose trainable
 * paths are the backbone's (`blocks.i.*`, `cls_token`, `patch_embed.*`, `norm.*`, LoRA `…lora_A/B…`) and the heads'
 * (`dino_head.*`, `ibot_head.*`):
 * - weight decay by upstream's *name* rule: none on `*.bias`, any path containing `norm`, LayerScale `gamma` (so the CLS
 *   token, LoRA matrices and `weight_g` do decay — unlike the kit's default rank rule);
 * - layer-wise lr decay decay^(depth + 1 − layer) on backbone paths (layer 0 = tokens / patch_embed, i+1 = blocks.i,
 *   depth+1 = the rest); the heads get multiplier 1 (their `n_blocks` is 0 upstream);
 * - patch_embed lr × patchEmbedLrMult (0.2);
 * - the heads' `last_layer` at lr 0 for the first `freezeLastLayerIters` iterations — a zero-lr group, so its Adam
 *   moments keep updating (DINOv2, unlike DINO v1's `cancel_gradients_last_layer`);
 * - gradient clipping per student sub-module: clip groups `backbone` (LoRA included), `dino_head`, `ibot_head`.
 */
import { ParamGroupRule, layerId } from '../train/groups';

/** DINOv2's weight-decay rule: false (no decay) for `*.bias`, any `norm` parameter and LayerScale `gamma`. */
export function dinov2Decay(path: string): boolean {
  return !(path.endsWith('.bias') || path.includes('norm') || path.includes('gamma'));
}

const HEADS = '^(dino_head|ibot_head)\\.';
const LAST_LAYER = '(^|\\.)last_layer\\.';

/** DINOv2's lr multiplier: layer decay on backbone paths (0 = tokens / patch_embed, blocks i+1, rest L+1), heads ×1, patch_embed × mult. */
export function dinov2LrScale(depth: number, layerDecay: number, patchEmbedLrMult: number): (path: string) => number {
  return (path) => {
    if (/^(dino_head|ibot_head)\./.test(path)) return 1;
    const s = Math.pow(layerDecay, depth + 1 - layerId(path, depth));
    return /(^|\.)patch_embed\./.test(path) ? s * patchEmbedLrMult : s;
  };
}

export interface Dinov2GroupOptions {
  /** Backbone depth (blocks). */
  depth: number;
  /** Layer-wise lr decay (0.9; 1 = none). */
  layerDecay: number;
  /** patch_embed lr multiplier (0.2). */
  patchEmbedLrMult: number;
  /** Iterations with lr 0 on the heads' last layer (freeze_last_layer_epochs × iterations per epoch). */
  freezeLastLayerIters: number;
  /** Whether the student has a separate iBOT head (its own clip group). */
  separateIbotHead: boolean;
}

/**
 * The DINOv2 parameter groups as rules (JSON data). The decay rule is given as `weightDecay` rules (every path on,
 * then off for `.bias` / `norm` / `gamma`), so the optimizer's default rank-based mask does not apply.
 * @example new Optimizer(ADAMW_DEFAULTS, trainable, {groups: dinov2ParamGroups({depth: 24, layerDecay: 0.9, patchEmbedLrMult: 0.2, freezeLastLayerIters: 3750, separateIbotHead: false})})
 */
export function dinov2ParamGroups(o: Dinov2GroupOptions): ParamGroupRule[] {
  const rules: ParamGroupRule[] = [
    { clip: 'backbone', weightDecay: true },
    { match: '\\.bias$|norm|gamma', weightDecay: false, optional: true },
    { exclude: HEADS, layerDecay: { depth: o.depth, decay: o.layerDecay }, optional: true },
    { match: '(^|\\.)patch_embed\\.', exclude: HEADS, lrScale: o.patchEmbedLrMult, optional: true },
    { match: '^dino_head\\.', clip: 'dino_head' },
  ];
  if (o.separateIbotHead) rules.push({ match: '^ibot_head\\.', clip: 'ibot_head' });
  if (o.freezeLastLayerIters > 0) rules.push({ match: LAST_LAYER, freezeIters: o.freezeLastLayerIters });
  return rules;
}
