/**
 * The masked encoder core shared by the RGB MAE and the SatMAE variants (MAE `models_mae.py` `forward_encoder`):
 * tokens (position / group / time codes already added) → keep the visible ones → prepend CLS → blocks → final LN.
 *
 * Blocks run through `blockForward` from lib/vit, so every Linear is a named site (`blocks.i.attn.qkv`, …) where
 * LoRA attaches, and `decoder_blocks.i.*` for the decoder stack.
 */
import * as tf from '@tensorflow/tfjs';
import { BlockParams, NormParams } from '../vit/params';
import { ForwardEnv, norm } from '../vit/forward';
import { blockStack, StackOptions } from '../vit/block-stack';
import { keepTokens, MaskPlan } from './masking';

/**
 * Run the blocks of an MAE stack (`blockStack`) and check that every token came back. x [B, T, D] → [B, T, D].
 */
export function runBlockStack(blocks: readonly BlockParams[], x: tf.Tensor3D, o: StackOptions, env: ForwardEnv): tf.Tensor3D {
  const y = blockStack(blocks, x, o, env).x;
  if (y.shape[1] !== x.shape[1]) {
    throw new Error(`runBlockStack(${o.prefix}): a merge hook changed the token count; MAE needs every token back for the decoder`);
  }
  return y;
}

/** The parameters the masked encoder core uses. */
export interface EncoderCore {
  /** [1, 1, D] */
  cls_token: tf.Variable;
  blocks: BlockParams[];
  /** final LayerNorm */
  norm: NormParams;
}

/**
 * Masked encoding. tokens [B, N, D] with their codes added → latent [B, 1 + K, D] (CLS first, then the visible tokens
 * in shuffled order), after the final LayerNorm.
 * @param clsCode added to the CLS token ([1, 1, D]; MAE adds pos[0] = 0), or null (SatMAE variants add nothing)
 */
export function maskedEncode(
  core: EncoderCore,
  tokens: tf.Tensor3D,
  plan: MaskPlan,
  clsCode: tf.Tensor | null,
  o: StackOptions,
  env: ForwardEnv,
): tf.Tensor3D {
  const visible = keepTokens(tokens, plan); // [B, K, D]
  const [B, , D] = visible.shape;
  const clsTok = clsCode ? tf.add(core.cls_token, clsCode) : core.cls_token; // [1, 1, D]
  const x = tf.concat([tf.broadcastTo(clsTok, [B, 1, D]), visible], 1) as tf.Tensor3D; // [B, 1 + K, D]
  const y = runBlockStack(core.blocks, x, o, env);
  return norm(core.norm, y, o.eps) as tf.Tensor3D;
}
