/**
 * The block loop: a stack of pre-norm transformer blocks run one after another (timm `for blk in self.blocks:
 * x = blk(x)`), each through `blockForward`, so every Linear is a named site (`${prefix}.i.attn.qkv`, …) where LoRA,
 * ToMe and PYRA attach. The MAE encoder and decoder and the SatMAE downstream classifiers all run their blocks here.
 */
import * as tf from '@tensorflow/tfjs';
import { BlockParams } from './params';
import { blockForward, BlockOptions, ForwardEnv, TokenState } from './forward';
import { checkpointedBlock } from './checkpoint';

export interface StackOptions {
  /** Site prefix of the stack: `blocks` or `decoder_blocks` (block i is `${prefix}.${i}`). */
  prefix: string;
  numHeads: number;
  eps: number;
  /** Drop-path rate per block (length = number of blocks), or a single rate for all. */
  dropPath: number | readonly number[];
}

/**
 * Run `blocks` in order on tokens x [B, N, D] → the final token state (x [B, N', D]; N' = N unless a merge hook
 * removed tokens). With `env.checkpoint` every block recomputes its activations in the backward (lib/vit/checkpoint.ts;
 * trainable variables named under `${prefix}.i.`). `each(state, i)` sees the state after block i (e.g. to keep the
 * outputs of the last layers).
 */
export function blockStack(
  blocks: readonly BlockParams[],
  x: tf.Tensor3D,
  o: StackOptions,
  env: ForwardEnv,
  each?: (state: TokenState, i: number) => void,
): TokenState {
  if (typeof o.dropPath !== 'number' && o.dropPath.length !== blocks.length) {
    throw new Error(`blockStack(${o.prefix}): ${o.dropPath.length} drop-path rates for ${blocks.length} blocks`);
  }
  let state: TokenState = { x, size: null, source: null };
  blocks.forEach((bp, i) => {
    const dp = typeof o.dropPath === 'number' ? o.dropPath : o.dropPath[i];
    const bo: BlockOptions = { prefix: `${o.prefix}.${i}`, index: i, numHeads: o.numHeads, eps: o.eps, dropPath: dp };
    state = env.checkpoint ? checkpointedBlock(blockForward, bp, state, bo, env, env.checkpoint) : blockForward(bp, state, bo, env);
    each?.(state, i);
  });
  return state;
}
