/**
 * The masked encoder core shared by the RGB MAE and the SatMAE variants (MAE `models_mae.py` `forward_encoder`):
 * tokens (position / group / time codes already added) → keep the visible ones → prepend CLS → blocks → final LN.
 *
 * Blocks run through `blockForward` from lib/vit, so every Linear is a named site (`blocks.i.attn.qkv`, …) where
 * LoRA attaches, and `decoder_blocks.i.*` for the decoder stack.
 */
import * as tf from '@tensorflow/tfjs';
import { BlockParams, NormParams } from '../vit/params';
import { blockForward, BlockOptions, ForwardEnv, norm, TokenState } from '../vit/forward';
import { checkpointedBlock } from '../vit/checkpoint';
import { keepTokens, MaskPlan } from './masking';

export interface StackOptions {
  /** Site prefix of the stack: `blocks` or `decoder_blocks` (block i is `${prefix}.${i}`). */
  prefix: string;
  numHeads: number;
  eps: number;
  /** Drop-path rate per block (length = number of blocks), or a single rate for all. */
  dropPath: number | readonly number[];
}

/**
 * Run a list of transformer blocks. x [B, T, D] → [B, T, D]. With `env.checkpoint` every block recomputes its
 * activations in the backward (lib/vit/checkpoint.ts; trainable variables named under `${prefix}.i.`).
 */
export function runBlockStack(blocks: readonly BlockParams[], x: tf.Tensor3D, o: StackOptions, env: ForwardEnv): tf.Tensor3D {
  if (typeof o.dropPath !== 'number' && o.dropPath.length !== blocks.length) {
    throw new Error(`runBlockStack(${o.prefix}): ${o.dropPath.length} drop-path rates for ${blocks.length} blocks`);
  }
  let state: TokenState = { x, size: null, source: null };
  blocks.forEach((bp, i) => {
    const dp = typeof o.dropPath === 'number' ? o.dropPath : o.dropPath[i];
    const bo: BlockOptions = { prefix: `${o.prefix}.${i}`, index: i, numHeads: o.numHeads, eps: o.eps, dropPath: dp };
    state = env.checkpoint ? checkpointedBlock(blockForward, bp, state, bo, env, env.checkpoint) : blockForward(bp, state, bo, env);
  });
  if (state.x.shape[1] !== x.shape[1]) {
    throw new Error(`runBlockStack(${o.prefix}): a merge hook changed the token count; MAE needs every token back for the decoder`);
  }
  return state.x;
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
