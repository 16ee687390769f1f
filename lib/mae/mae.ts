/**
 * Masked autoencoder (MAE, He et al.; `models_mae.py`): a ViT encoder (`Vit` from `createVit`
 * with the fixed 2-D sin-cos position table) plus the MAE decoder.
 *
 * forward_encoder: patch embedding (site `patch_embed.proj`) → + sin-cos positions (patch rows of the table) →
 *   random masking (keep ⌊L·(1 − ratio)⌋) → prepend CLS + pos[0] (= 0) → blocks → final LN.
 * forward_decoder: Linear D → Dd → append mask tokens, restore order → re-prepend CLS → + fixed decoder sin-cos →
 *   blocks → decoder_norm → decoder_pred (Dd → p²·C) → drop CLS.
 * loss: target = patchify(images) in (ky, kx, c) order, norm-pix (unbiased variance + 1e-6) when enabled, per-patch
 *   MSE averaged over the masked patches only.
 *
 * The whole model is one parameter namespace keyed like `mae_visualize_vit_large.pth` (`cls_token`, `pos_embed`,
 * `patch_embed.proj.*`, `blocks.i.*`, `norm.*`, `mask_token`, `decoder_*`): `maeVariables(mae)`.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../rng';
import { flattenTree, disposeTree, countParams, assertLive } from '../tree';
import { checkKeys, fmtValue } from '../check';
import { VitConfig, VitPresetName, gridHW, vitConfig, dropPathRates } from '../vit/config';
import { createVit, ParamFactory, Vit } from '../vit/params';
import { ForwardEnv, makeEnv, patchEmbed, posEmbedFor, checkImages, VitHooks } from '../vit/forward';
import type { CheckpointOptions } from '../vit/checkpoint';
import { sincos2d } from '../vit/posembed';
import { DecoderConfig, DecoderParams, createDecoderParams, decoderConfig, decoderTokens, decoderBlocks, decoderPredict } from './decoder';
import { maskedEncode } from './encoder';
import { MaskPlan, checkMaskRatio, randomMasking, maskTensor } from './masking';
import { patchify } from './patchify';
import { maskedPatchMse, normPixTarget } from './loss';

export interface MaeConfig {
  encoder: VitConfig;
  decoder: DecoderConfig;
  /** Fraction of patches removed (MAE / ExPLoRA: 0.75). */
  maskRatio: number;
  /** Normalise each target patch (MAE `--norm_pix_loss`; ExPLoRA runs use it). */
  normPixLoss: boolean;
}

export interface Mae {
  readonly config: MaeConfig;
  /** The encoder as a plain ViT (fine-tune / linear-probe it after pre-training). */
  readonly encoder: Vit;
  readonly decoder: DecoderParams;
}

export interface CreateMaeOptions {
  /** Overrides of the encoder preset (e.g. `{imgSize: 32, patchSize: 4, embedDim: 64, depth: 2, numHeads: 4}`). */
  encoder?: Partial<VitConfig>;
  /** Overrides of `MAE_DECODER` (512 wide, 8 blocks, 16 heads, MLP 2048). */
  decoder?: Partial<DecoderConfig>;
  maskRatio?: number;
  normPixLoss?: boolean;
  seed?: number;
  /** All weights zero (fast; for weights loaded next). The fixed sin-cos tables are always filled. */
  skipInit?: boolean;
}

const CREATE_KEYS = ['encoder', 'decoder', 'maskRatio', 'normPixLoss', 'seed', 'skipInit'];

/** Check that an encoder config is an MAE encoder: fixed sin-cos positions, CLS + final norm, no head / registers. */
export function checkMaeEncoderConfig(c: VitConfig): void {
  const bad = (k: string, want: string, got: unknown): never => {
    throw new Error(`MAE encoder: VitConfig.${k} must be ${want}, got ${fmtValue(got)}`);
  };
  if (c.posEmbed !== 'sincos') bad('posEmbed', "'sincos' (fixed 2-D sin-cos, as MAE)", c.posEmbed);
  if (c.pool !== 'cls') bad('pool', "'cls' (the encoder ends with the final LayerNorm `norm`)", c.pool);
  if (c.numClasses !== 0) bad('numClasses', '0 (no head during pre-training)', c.numClasses);
  if (c.numRegisters !== 0) bad('numRegisters', '0', c.numRegisters);
  if (c.maskToken) bad('maskToken', 'false (the MAE mask token lives in the decoder)', c.maskToken);
}

/**
 * Build an MAE from a ViT preset (default `mae_vit_large_patch16`: ViT-L/16 + 512-d 8-block decoder).
 * @example const mae = createMae('mae_vit_base_patch16', {encoder: {imgSize: 32, patchSize: 4, embedDim: 64, depth: 2, numHeads: 4}, decoder: {embedDim: 32, depth: 1, numHeads: 4}});
 */
export function createMae(preset: VitPresetName | VitConfig = 'mae_vit_large_patch16', opts: CreateMaeOptions = {}): Mae {
  checkKeys('createMae options', opts, CREATE_KEYS);
  const encCfg = vitConfig(preset, opts.encoder ?? {});
  checkMaeEncoderConfig(encCfg);
  const dec = decoderConfig(opts.decoder ?? {});
  const maskRatio = checkMaskRatio(opts.maskRatio ?? 0.75, 'createMae: maskRatio');
  const seed = opts.seed ?? 0;
  const encoder = createVit(encCfg, {}, { seed, skipInit: opts.skipInit });
  const { patchSize: p, inChans: C, embedDim: D } = encCfg;
  const f = new ParamFactory('mae-decoder', seed, opts.skipInit ?? false);
  const decoder = createDecoderParams(f, { encoderDim: D, config: dec, grid: gridHW(encCfg), predOut: p * p * C });
  const config: MaeConfig = Object.freeze({ encoder: encCfg, decoder: dec, maskRatio, normPixLoss: opts.normPixLoss ?? true });
  return { config, encoder, decoder };
}

/** Ordered path → variable map of the whole model (encoder keys, then decoder keys), checkpoint names. */
export function maeVariables(mae: Mae): Map<string, tf.Variable> {
  const enc = flattenTree(mae.encoder.params);
  const dec = flattenTree(mae.decoder);
  for (const k of dec.keys()) if (enc.has(k)) throw new Error(`maeVariables: '${k}' exists in both encoder and decoder`);
  return new Map([...enc, ...dec]);
}

/** Parameter counts: encoder, decoder, total (fixed tables included, as in the PyTorch state dict). */
export function maeParamCounts(mae: Mae): { encoder: number; decoder: number; total: number } {
  const encoder = countParams(mae.encoder.params);
  const decoder = countParams(mae.decoder);
  return { encoder, decoder, total: encoder + decoder };
}

export function disposeMae(mae: Mae): void {
  disposeTree(mae.encoder.params);
  disposeTree(mae.decoder);
}

/** Patch grid [rows, cols] of an image batch for this model (checks NHWC, channels, divisibility). */
export function maeGrid(mae: Mae, images: tf.Tensor): [number, number] {
  return checkImages(mae.config.encoder, images);
}

/** A fresh random-masking plan for an image batch. */
export function maePlan(mae: Mae, images: tf.Tensor, rng: Rng, maskRatio = mae.config.maskRatio): MaskPlan {
  const [gh, gw] = maeGrid(mae, images);
  return randomMasking(rng, images.shape[0], gh * gw, maskRatio);
}

function encoderStack(mae: Mae, env: ForwardEnv) {
  const c = mae.config.encoder;
  const rates = dropPathRates(c);
  return { prefix: 'blocks', numHeads: c.numHeads, eps: c.normEps, dropPath: env.training ? rates : 0 };
}

/**
 * MAE forward_encoder. images [B, H, W, C] → latent [B, 1 + K, D] (CLS, then the visible tokens in shuffled order).
 */
export function maeEncode(mae: Mae, images: tf.Tensor4D, plan: MaskPlan, env: ForwardEnv): tf.Tensor3D {
  const [gh, gw] = maeGrid(mae, images);
  const L = gh * gw;
  if (plan.batch !== images.shape[0] || plan.numTokens !== L) {
    throw new Error(`maeEncode: mask plan is for [${plan.batch}, ${plan.numTokens}] tokens, images give [${images.shape[0]}, ${L}]`);
  }
  const D = mae.config.encoder.embedDim;
  const vit = mae.encoder;
  const x = patchEmbed(vit, images, env); // [B, L, D]
  const pos = posEmbedFor(vit, gh, gw); // [1, 1 + L, D], CLS slot first
  const tokens = tf.add(x, pos.slice([0, 1, 0], [1, L, D])) as tf.Tensor3D; // positions added before masking
  const clsPos = pos.slice([0, 0, 0], [1, 1, D]); // pos[0] = 0 for sin-cos
  const core = { cls_token: vit.params.cls_token, blocks: vit.params.blocks, norm: vit.params.norm! };
  return maskedEncode(core, tokens, plan, clsPos, encoderStack(mae, env), env);
}

/** The decoder position table for a gh×gw grid: the stored fixed table, or a fresh sin-cos table for another size. */
function decoderPos(mae: Mae, gh: number, gw: number): tf.Tensor3D {
  const stored = mae.decoder.decoder_pos_embed;
  const [sh, sw] = gridHW(mae.config.encoder);
  if (sh === gh && sw === gw) return stored as tf.Tensor as tf.Tensor3D;
  const Dd = mae.config.decoder.embedDim;
  return tf.tensor3d(sincos2d(Dd, gh, gw, true), [1, 1 + gh * gw, Dd]);
}

/** MAE forward_decoder. latent [B, 1 + K, D] → prediction [B, L, p²·C] (patch vectors in (ky, kx, c) order). */
export function maeDecode(mae: Mae, latent: tf.Tensor3D, plan: MaskPlan, grid: readonly [number, number], env: ForwardEnv): tf.Tensor3D {
  const x = decoderTokens(mae.decoder, latent, plan, env); // [B, 1 + L, Dd]
  const y = decoderBlocks(mae.decoder, tf.add(x, decoderPos(mae, grid[0], grid[1])) as tf.Tensor3D, mae.config.decoder, env);
  return decoderPredict(mae.decoder, y, env);
}

/** The reconstruction target [B, L, p²·C]: patchify in (ky, kx, c) order, then norm-pix when the model uses it. */
export function maeTarget(mae: Mae, images: tf.Tensor4D): tf.Tensor3D {
  return tf.tidy(() => {
    const t = patchify(images, mae.config.encoder.patchSize);
    return (mae.config.normPixLoss ? normPixTarget(t) : t) as tf.Tensor3D;
  });
}

/** MAE forward_loss: per-patch MSE against `maeTarget`, averaged over masked patches. mask [B, L] (1 = removed). */
export function maeLoss(mae: Mae, images: tf.Tensor4D, pred: tf.Tensor3D, mask: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => maskedPatchMse(pred, maeTarget(mae, images), mask));
}

export interface MaeForwardOptions {
  /** Masking to use; otherwise a random plan is drawn from `rng`. */
  plan?: MaskPlan;
  /** Source of the masking noise (and drop-path when training). Required without `plan`. */
  rng?: Rng;
  /** Override the configured mask ratio for this call. */
  maskRatio?: number;
  training?: boolean;
  hooks?: VitHooks;
  /**
   * Activation recomputation in the encoder and decoder blocks (lib/vit/checkpoint.ts): pass the trainable set;
   * variables named under `blocks.i.` / `decoder_blocks.i.` get gradients through that block.
   */
  checkpoint?: CheckpointOptions | null;
}

export interface MaeOutput {
  loss: tf.Scalar;
  /** [B, L, p²·C] */
  pred: tf.Tensor3D;
  /** [B, L], 1 = removed */
  mask: tf.Tensor2D;
  /** [B, 1 + K, D] */
  latent: tf.Tensor3D;
  plan: MaskPlan;
}

/**
 * Full MAE forward: loss, prediction, mask. Call inside a tidy (or a train step's loss function).
 * @example const {loss} = maeForward(mae, images, {rng: Rng.derive(seed, 'step', i), training: true});
 */
export function maeForward(mae: Mae, images: tf.Tensor4D, opts: MaeForwardOptions = {}): MaeOutput {
  checkKeys('maeForward options', opts, ['plan', 'rng', 'maskRatio', 'training', 'hooks', 'checkpoint']);
  assertLive(maeVariables(mae), 'maeForward', 'disposeMae was called on this model');
  const grid = maeGrid(mae, images);
  let plan = opts.plan;
  if (!plan) {
    if (!opts.rng) throw new Error('maeForward: pass a mask plan (opts.plan) or an rng (opts.rng) to draw one');
    plan = maePlan(mae, images, opts.rng.fork('mask'), opts.maskRatio ?? mae.config.maskRatio);
  }
  const env = makeEnv({ training: opts.training, rng: opts.rng ? opts.rng.fork('dropPath') : null, hooks: opts.hooks, checkpoint: opts.checkpoint });
  const latent = maeEncode(mae, images, plan, env);
  const pred = maeDecode(mae, latent, plan, grid, env);
  const mask = maskTensor(plan);
  const loss = maeLoss(mae, images, pred, mask);
  return { loss, pred, mask, latent, plan };
}
