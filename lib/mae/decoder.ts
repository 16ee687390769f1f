/**
 * The MAE decoder as data + pure functions (MAE `models_mae.py` `forward_decoder`).
 *
 * Parameter tree keyed like MAE checkpoints (`mae_visualize_vit_large.pth` of the MAE README):
 *   decoder_embed.{weight [D, Dd], bias}   Linear encoder width D → decoder width Dd (512)
 *   mask_token [1, 1, Dd]                   learned, N(0, 0.02)
 *   decoder_pos_embed [1, 1 + L, Dp]        fixed 2-D sin-cos (Dp = Dd, or Dd minus the group / time code width)
 *   decoder_channel_embed [1, G + 1, Dc]    SatMAE group model only: fixed 1-D sin-cos of 0..G (row G is the CLS's)
 *   decoder_blocks.i.*                      pre-norm blocks (`createBlockParams`), sites `decoder_blocks.i.attn.qkv` …
 *   decoder_norm.{weight, bias}
 *   decoder_pred.{weight [Dd, out], bias}   or `decoder_pred.g.*` (one head per SatMAE group)
 * Linear weights are stored [in, out] (kit convention; checkpoints on disk are PyTorch [out, in], see io/).
 *
 * Forward (split so the variants can add their own codes):
 *   `decoderTokens`: decoder_embed, append N − K mask tokens, un-shuffle with ids_restore, re-prepend CLS → [B, 1+N, Dd]
 *   (caller adds its position code)
 *   `decoderBlocks`: blocks, decoder_norm, drop CLS → [B, N, Dd] (caller applies `decoder_pred`).
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys, fmtValue, checkNumber } from '../check';
import { BlockParams, createBlockParams, LinearParams, NormParams, ParamFactory } from '../vit/params';
import { ForwardEnv, linearSite, norm } from '../vit/forward';
import { sincos1d, sincos2d } from '../vit/posembed';
import { MaskPlan, restoreTokens } from './masking';
import { runBlockStack } from './encoder';

export interface DecoderConfig {
  /** Decoder width Dd (MAE: 512). */
  embedDim: number;
  /** Number of decoder blocks (MAE: 8). */
  depth: number;
  /** Heads (MAE: 16, head width 32). */
  numHeads: number;
  /** MLP hidden = mlpRatio · embedDim (MAE: 4 → 2048). */
  mlpRatio: number;
  qkvBias: boolean;
  normEps: number;
}

export const DECODER_CONFIG_KEYS: readonly (keyof DecoderConfig)[] = ['embedDim', 'depth', 'numHeads', 'mlpRatio', 'qkvBias', 'normEps'];

/** MAE's decoder (`mae_vit_*_patch16_dec512d8b`): 512 wide, 8 blocks, 16 heads, MLP 2048, LN eps 1e-6. */
export const MAE_DECODER: Readonly<DecoderConfig> = Object.freeze({
  embedDim: 512,
  depth: 8,
  numHeads: 16,
  mlpRatio: 4,
  qkvBias: true,
  normEps: 1e-6,
});

/** Validated decoder config from overrides of `MAE_DECODER` (unknown keys rejected). */
export function decoderConfig(overrides: Partial<DecoderConfig> = {}): DecoderConfig {
  checkKeys('DecoderConfig', overrides, DECODER_CONFIG_KEYS);
  const c = { ...MAE_DECODER, ...overrides };
  const posInt = (k: keyof DecoderConfig, v: number): void => {
    if (!Number.isInteger(v) || v <= 0) throw new Error(`DecoderConfig.${k}: expected a positive integer, got ${fmtValue(v)}`);
  };
  posInt('embedDim', c.embedDim);
  posInt('depth', c.depth);
  posInt('numHeads', c.numHeads);
  if (c.embedDim % c.numHeads) throw new Error(`DecoderConfig.embedDim: ${c.embedDim} is not divisible by numHeads ${c.numHeads}`);
  if (!(c.mlpRatio > 0) || !Number.isInteger(c.mlpRatio * c.embedDim)) {
    throw new Error(`DecoderConfig.mlpRatio: expected > 0 giving an integer width, got ${fmtValue(c.mlpRatio)}`);
  }
  checkNumber('DecoderConfig.normEps', c.normEps, { gt: 0 });
  return Object.freeze(c);
}

/** Overrides of a model config that holds a decoder: any field, and `decoder` partial. */
export type DecoderOverrides<C extends { decoder: DecoderConfig }> = Partial<Omit<C, 'decoder'>> & { decoder?: Partial<DecoderConfig> };

/** Apply `overrides` to `base`: `decoder` fields merge into the base decoder, validated by `decoderConfig`. */
export function withDecoderOverrides<C extends { decoder: DecoderConfig }>(base: C, overrides: DecoderOverrides<C>): C {
  const { decoder, ...rest } = overrides;
  return { ...base, ...rest, decoder: decoderConfig({ ...base.decoder, ...(decoder ?? {}) }) };
}

export interface DecoderParams {
  decoder_embed: LinearParams;
  mask_token: tf.Variable;
  decoder_pos_embed: tf.Variable;
  decoder_channel_embed?: tf.Variable;
  decoder_blocks: BlockParams[];
  decoder_norm: NormParams;
  decoder_pred: LinearParams | LinearParams[];
}

export interface DecoderSpec {
  /** Encoder width D. */
  encoderDim: number;
  config: DecoderConfig;
  /** Patch grid [rows, cols] the fixed position table is made for. */
  grid: readonly [number, number];
  /** Width of the 2-D sin-cos position table (default: the full decoder width). Must be divisible by 4. */
  posWidth?: number;
  /** SatMAE group model: number of groups G and the width of the channel code (table of G + 1 rows). */
  channels?: { groups: number; width: number };
  /** Output width of `decoder_pred`, or one width per group (→ `decoder_pred.g`). */
  predOut: number | readonly number[];
}

/** Create decoder parameters with MAE's init (xavier-uniform Linear, bias 0, LN 1/0, mask token N(0, 0.02)). */
export function createDecoderParams(f: ParamFactory, s: DecoderSpec): DecoderParams {
  const c = s.config;
  const Dd = c.embedDim;
  const [gh, gw] = s.grid;
  const posWidth = s.posWidth ?? Dd;
  if (posWidth % 4 || posWidth <= 0) {
    throw new Error(`decoder_pos_embed: sin-cos width must be a positive multiple of 4, got ${fmtValue(posWidth)} (decoder width ${Dd})`);
  }
  const xav = (i: number, o: number) => ({ kind: 'xavierUniform', fanIn: i, fanOut: o }) as const;
  const p: DecoderParams = {
    decoder_embed: f.linear('decoder_embed', s.encoderDim, Dd, xav(s.encoderDim, Dd)),
    mask_token: f.make('mask_token', [1, 1, Dd], { kind: 'normal', std: 0.02 }),
    decoder_pos_embed: f.fromValues('decoder_pos_embed', [1, 1 + gh * gw, posWidth], sincos2d(posWidth, gh, gw, true), false),
    decoder_blocks: [],
    decoder_norm: f.norm('decoder_norm', Dd),
    decoder_pred: [],
  };
  if (s.channels) {
    const { groups, width } = s.channels;
    if (width % 2 || width <= 0) throw new Error(`decoder_channel_embed: width must be a positive even number, got ${fmtValue(width)}`);
    const rows = Array.from({ length: groups + 1 }, (_, g) => g);
    p.decoder_channel_embed = f.fromValues('decoder_channel_embed', [1, groups + 1, width], sincos1d(width, rows), false);
  }
  const hidden = Math.round(c.mlpRatio * Dd);
  for (let i = 0; i < c.depth; i++) {
    p.decoder_blocks.push(createBlockParams(f, `decoder_blocks.${i}`, Dd, hidden, { qkvBias: c.qkvBias, layerScale: null, init: 'mae' }));
  }
  p.decoder_pred =
    typeof s.predOut === 'number'
      ? f.linear('decoder_pred', Dd, s.predOut, xav(Dd, s.predOut))
      : s.predOut.map((o, g) => f.linear(`decoder_pred.${g}`, Dd, o, xav(Dd, o)));
  // Key order of the checkpoint family: decoder_embed, mask_token, decoder_pos_embed, (channel), blocks, norm, pred.
  return {
    decoder_embed: p.decoder_embed,
    mask_token: p.mask_token,
    decoder_pos_embed: p.decoder_pos_embed,
    ...(p.decoder_channel_embed ? { decoder_channel_embed: p.decoder_channel_embed } : {}),
    decoder_blocks: p.decoder_blocks,
    decoder_norm: p.decoder_norm,
    decoder_pred: p.decoder_pred,
  };
}

/**
 * Embed the latent and rebuild the full sequence. latent [B, 1 + K, D] (CLS first) → [B, 1 + N, Dd]: Linear D → Dd
 * (site `decoder_embed`), N − K mask tokens appended after the visible tokens, un-shuffled with ids_restore, CLS
 * re-prepended. No position code yet.
 */
export function decoderTokens(p: DecoderParams, latent: tf.Tensor3D, plan: MaskPlan, env: ForwardEnv): tf.Tensor3D {
  const [B, T] = latent.shape;
  if (T !== 1 + plan.lenKeep) {
    throw new Error(`decoder: latent has ${T} tokens, expected 1 + ${plan.lenKeep} (CLS + visible) for this mask plan`);
  }
  const x = linearSite(env, 'decoder_embed', p.decoder_embed, latent) as tf.Tensor3D; // [B, 1+K, Dd]
  const Dd = x.shape[2];
  const cls = x.slice([0, 0, 0], [B, 1, Dd]);
  const visible = x.slice([0, 1, 0], [B, T - 1, Dd]) as tf.Tensor3D;
  const full = restoreTokens(visible, p.mask_token, plan); // [B, N, Dd]
  return tf.concat([cls, full], 1) as tf.Tensor3D;
}

/** Decoder blocks + decoder_norm, CLS dropped. x [B, 1 + N, Dd] (codes added) → [B, N, Dd]. */
export function decoderBlocks(p: DecoderParams, x: tf.Tensor3D, c: DecoderConfig, env: ForwardEnv): tf.Tensor3D {
  const y = runBlockStack(p.decoder_blocks, x, { prefix: 'decoder_blocks', numHeads: c.numHeads, eps: c.normEps, dropPath: 0 }, env);
  const z = norm(p.decoder_norm, y, c.normEps) as tf.Tensor3D;
  const [B, T, Dd] = z.shape;
  return z.slice([0, 1, 0], [B, T - 1, Dd]) as tf.Tensor3D;
}

/** The single prediction head (site `decoder_pred`): [B, N, Dd] → [B, N, out]. */
export function decoderPredict(p: DecoderParams, x: tf.Tensor3D, env: ForwardEnv): tf.Tensor3D {
  if (Array.isArray(p.decoder_pred)) throw new Error('decoderPredict: this decoder has one head per group; use the group model');
  return linearSite(env, 'decoder_pred', p.decoder_pred as LinearParams, x) as tf.Tensor3D;
}
