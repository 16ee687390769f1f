/**
 * SatMAE temporal masked autoencoder (SatMAE `models_mae_temporal.py`): T images of one place (fMoW-temporal:
 * T = 3 RGB images) go through the **same** patch embedding; tokens are frame-major (token t·L + l, 3·196 at 224/16).
 *
 * - Token code = [2-D sin-cos of the cell (width D − 3·Tc) ‖ sin-cos(year) ‖ sin-cos(month) ‖ sin-cos(hour)], each time
 *   code of width Tc (SatMAE: 128, so the spatial part is 640 for ViT-L); the time part is the same for every token of
 *   one image. Timestamps are given as SatMAE's dataset makes them: (year − 2002, month − 1, hour)
 *   (data-loaders' `fmowTemporalCode(csvTimestamp)` produces exactly this triple). The CLS token gets no code.
 * - Masking: independent over all T·L tokens (default), or `sameMask`: one cell mask shared by the T frames, keep
 *   T·⌊L·(1 − ratio)⌋.
 * - Decoder: code [2-D sin-cos (Dd − 3·Tdc) ‖ three time codes of width Tdc (SatMAE: 64)]; CLS gets zeros. One head
 *   Dd → p²·C; target = each frame patchified in (ky, kx, c) order, frames concatenated, norm-pix per patch; loss
 *   over masked tokens as in MAE.
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys, fmtValue } from '../check';
import { satMaeConfig, SatMaeConfigRules } from './satmae-config';
import { Rng } from '../rng';
import { flattenTree, disposeTree } from '../tree';
import { BlockParams, createBlockParams, NormParams, ParamFactory } from '../vit/params';
import { ForwardEnv, linearSite, makeEnv, VitHooks } from '../vit/forward';
import { imgHW, VitConfig, VIT_SIZES } from '../vit/config';
import { sincos1d, sincos2d } from '../vit/posembed';
import { DecoderConfig, DecoderOverrides, DecoderParams, withDecoderOverrides, createDecoderParams, decoderConfig, decoderTokens, decoderBlocks, decoderPredict } from './decoder';
import { maskedEncode } from './encoder';
import { MaskPlan, checkMaskRatio, randomMasking, shardedPlan, frameMasking, maskTensor } from './masking';
import { patchify, unpatchify, patchValuesToPixels } from './patchify';
import { maskedPatchMse, normPixTarget } from './loss';
import { denormalizePatches, reconstructionViews, ReconViews } from './recon';

/** The encoder trunk (one frame's size and bands), the frames and time codes, decoder and masking. */
export interface SatMaeTemporalConfig
  extends Pick<VitConfig, 'imgSize' | 'patchSize' | 'inChans' | 'embedDim' | 'depth' | 'numHeads' | 'mlpRatio' | 'qkvBias' | 'normEps'> {
  /** Images per sample T (fMoW-temporal: 3). */
  frames: number;
  /** Width of each of the three time codes in the encoder (SatMAE: 128). */
  timeEmbedDim: number;
  /** Width of each of the three time codes in the decoder (SatMAE: 64). */
  decoderTimeEmbedDim: number;
  decoder: DecoderConfig;
  maskRatio: number;
  /** One spatial mask for all frames (SatMAE `same_mask`). */
  sameMask: boolean;
  normPixLoss: boolean;
}

/** The encoder's fields of the config (what the downstream classifier `SatMaeTemporalVitConfig` shares with the MAE). */
export const SATMAE_TEMPORAL_ENCODER_KEYS = [
  'imgSize', 'patchSize', 'inChans', 'embedDim', 'depth', 'numHeads', 'mlpRatio', 'qkvBias', 'normEps', 'frames', 'timeEmbedDim',
] as const;

const KEYS: readonly (keyof SatMaeTemporalConfig)[] = [...SATMAE_TEMPORAL_ENCODER_KEYS, 'decoderTimeEmbedDim', 'decoder', 'maskRatio', 'sameMask', 'normPixLoss'];

const BASE: Omit<SatMaeTemporalConfig, 'embedDim' | 'depth' | 'numHeads'> = {
  imgSize: 224,
  patchSize: 16,
  inChans: 3,
  mlpRatio: 4,
  qkvBias: true,
  normEps: 1e-6,
  frames: 3,
  timeEmbedDim: 128,
  decoderTimeEmbedDim: 64,
  decoder: decoderConfig(),
  maskRatio: 0.75,
  sameMask: false,
  normPixLoss: true,
};

export const SATMAE_TEMPORAL_PRESETS = {
  satmae_temporal_vit_base_patch16: { ...BASE, ...VIT_SIZES.base },
  satmae_temporal_vit_large_patch16: { ...BASE, ...VIT_SIZES.large },
} satisfies Record<string, SatMaeTemporalConfig>;

export type SatMaeTemporalPresetName = keyof typeof SATMAE_TEMPORAL_PRESETS;
export type SatMaeTemporalOverrides = DecoderOverrides<SatMaeTemporalConfig>;

const RULES: SatMaeConfigRules<SatMaeTemporalConfig, SatMaeTemporalOverrides> = {
  name: 'SatMaeTemporalConfig',
  what: 'SatMAE temporal preset',
  presets: SATMAE_TEMPORAL_PRESETS,
  keys: KEYS,
  positive: ['patchSize', 'inChans', 'embedDim', 'depth', 'numHeads', 'frames', 'timeEmbedDim', 'decoderTimeEmbedDim'],
  codes: [
    { of: 'embedDim', code: 'timeEmbedDim', copies: 3 },
    { of: 'decoder.embedDim', code: 'decoderTimeEmbedDim', copies: 3 },
  ],
  merge: withDecoderOverrides,
  more: (c) => void checkMaskRatio(c.maskRatio, 'SatMaeTemporalConfig.maskRatio'),
};

/** Build a validated config from a preset plus overrides. */
export function satMaeTemporalConfig(preset: SatMaeTemporalPresetName | SatMaeTemporalConfig, overrides: SatMaeTemporalOverrides = {}): SatMaeTemporalConfig {
  return satMaeConfig(RULES, preset, overrides);
}

export interface SatMaeTemporalParams extends DecoderParams {
  cls_token: tf.Variable;
  /** [1, 1 + L, D − 3·Tc] fixed */
  pos_embed: tf.Variable;
  patch_embed: { proj: { weight: tf.Variable; bias: tf.Variable } };
  blocks: BlockParams[];
  norm: NormParams;
}

export interface SatMaeTemporal {
  readonly config: SatMaeTemporalConfig;
  readonly params: SatMaeTemporalParams;
}

/** Build a SatMAE temporal MAE (default ViT-L/16, 3 frames of 224 px). */
export function createSatMaeTemporal(
  preset: SatMaeTemporalPresetName | SatMaeTemporalConfig = 'satmae_temporal_vit_large_patch16',
  overrides: SatMaeTemporalOverrides = {},
  opts: { seed?: number; skipInit?: boolean } = {},
): SatMaeTemporal {
  const config = satMaeTemporalConfig(preset, overrides);
  const f = new ParamFactory('satmae-temporal', opts.seed ?? 0, opts.skipInit ?? false);
  const { embedDim: D, patchSize: p, inChans: C } = config;
  const [H, W] = imgHW(config);
  const [gh, gw] = [H / p, W / p];
  const Dp = D - 3 * config.timeEmbedDim;
  const hidden = Math.round(config.mlpRatio * D);
  const enc = {
    cls_token: f.make('cls_token', [1, 1, D], { kind: 'normal', std: 0.02 }),
    pos_embed: f.fromValues('pos_embed', [1, 1 + gh * gw, Dp], sincos2d(Dp, gh, gw, true), false),
    patch_embed: {
      proj: {
        weight: f.make('patch_embed.proj.weight', [p, p, C, D], { kind: 'xavierUniform', fanIn: C * p * p, fanOut: D }),
        bias: f.make('patch_embed.proj.bias', [D], { kind: 'zeros' }),
      },
    },
    blocks: Array.from({ length: config.depth }, (_, i) => createBlockParams(f, `blocks.${i}`, D, hidden, { qkvBias: config.qkvBias, layerScale: null, init: 'mae' })),
    norm: f.norm('norm', D),
  };
  const dec = createDecoderParams(f, {
    encoderDim: D,
    config: config.decoder,
    grid: [gh, gw],
    posWidth: config.decoder.embedDim - 3 * config.decoderTimeEmbedDim,
    predOut: p * p * C,
  });
  return { config, params: { ...enc, ...dec } };
}

export function satMaeTemporalVariables(m: SatMaeTemporal): Map<string, tf.Variable> {
  return flattenTree(m.params);
}

export function disposeSatMaeTemporal(m: SatMaeTemporal): void {
  disposeTree(m.params);
}

/** Timestamps [B][T][3] (year offset, month − 1, hour), as nested arrays, a flat array or a tensor [B, T, 3]. */
export type Timestamps = readonly (readonly (readonly number[])[])[] | ArrayLike<number> | tf.Tensor;

/** Flatten and check timestamps → Float64Array [B·T·3]. */
export function timestampValues(ts: Timestamps, B: number, T: number): Float64Array {
  let flat: ArrayLike<number>;
  if (ts instanceof tf.Tensor) {
    if (ts.shape.join() !== [B, T, 3].join()) throw new Error(`timestamps: expected a tensor [${B}, ${T}, 3], got [${ts.shape}]`);
    flat = ts.dataSync();
  } else if (Array.isArray(ts) && ts.length > 0 && Array.isArray(ts[0])) {
    const nested = ts as readonly (readonly (readonly number[])[])[];
    if (nested.length !== B || nested.some((r) => r.length !== T || r.some((t) => t.length !== 3))) {
      throw new Error(`timestamps: expected [${B}][${T}][3] (year offset, month − 1, hour) per image`);
    }
    flat = nested.flat(2);
  } else {
    flat = ts as ArrayLike<number>;
  }
  if (flat.length !== B * T * 3) throw new Error(`timestamps: expected ${B}·${T}·3 = ${B * T * 3} values (year offset, month − 1, hour per image), got ${fmtValue(flat.length)}`);
  const out = Float64Array.from(flat);
  out.forEach((v, i) => {
    if (!Number.isFinite(v)) throw new Error(`timestamps: value ${i} is ${v}`);
  });
  return out;
}

/** Time code [B, T, 3·width]: [sin-cos(year) ‖ sin-cos(month) ‖ sin-cos(hour)] per image. */
export function timeCode(ts: Float64Array, B: number, T: number, width: number): Float32Array {
  const out = new Float32Array(B * T * 3 * width);
  for (let k = 0; k < 3; k++) {
    const vals = Float64Array.from({ length: B * T }, (_, i) => ts[i * 3 + k]);
    const code = sincos1d(width, vals); // [B·T, width]
    for (let i = 0; i < B * T; i++) out.set(code.subarray(i * width, (i + 1) * width), i * 3 * width + k * width);
  }
  return out;
}

/**
 * Check a frame stack [B, T, H, W, C] against the config (T = `frames`, C = `inChans`, H×W = `imgSize`); returns
 * [B, T, L]. `what` names the model in the error.
 */
export function checkFrames(c: Pick<SatMaeTemporalConfig, 'imgSize' | 'patchSize' | 'inChans' | 'frames'>, images: tf.Tensor, what = 'SatMAE temporal input'): [number, number, number] {
  if (images.rank !== 5) {
    throw new Error(`${what}: expected images [B, T, H, W, C] (T = ${c.frames} frames, NHWC), got shape [${images.shape}]`);
  }
  const [B, T, H, W, C] = images.shape;
  if (T !== c.frames) throw new Error(`${what}: expected ${c.frames} frames, got ${fmtValue(T)} (shape [${images.shape}])`);
  if (C !== c.inChans) throw new Error(`${what}: expected ${c.inChans} bands per frame, got ${fmtValue(C)} (shape [${images.shape}])`);
  if (H % c.patchSize || W % c.patchSize) throw new Error(`${what}: image size ${H}x${W} is not divisible by the patch size ${c.patchSize}`);
  const [h, w] = imgHW(c);
  if (H !== h || W !== w) throw new Error(`${what}: image size ${H}x${W} differs from the configured ${h}x${w}`);
  return [B, T, (H / c.patchSize) * (W / c.patchSize)];
}

/** A masking plan: independent over T·L tokens, or the same cell mask for every frame (`sameMask`). */
export function satMaeTemporalPlan(m: SatMaeTemporal, batch: number, rng: Rng, maskRatio = m.config.maskRatio): MaskPlan {
  const [H, W] = imgHW(m.config);
  const L = (H / m.config.patchSize) * (W / m.config.patchSize);
  const T = m.config.frames;
  return shardedPlan(batch, (n) => (m.config.sameMask ? frameMasking(rng, n, T, L, maskRatio) : randomMasking(rng, n, T * L, maskRatio)));
}

/** [1 or B, T·L, width] code: spatial table rows 1..L repeated per frame ‖ per-image time code. */
function tokenCode(posTable: tf.Tensor, ts: Float64Array, B: number, T: number, L: number, timeWidth: number): tf.Tensor3D {
  const Dp = posTable.shape[2] as number;
  const pos = tf.broadcastTo(posTable.slice([0, 1, 0], [1, L, Dp]).reshape([1, 1, L, Dp]), [B, T, L, Dp]); // cell code, same for every frame
  const time = tf.broadcastTo(tf.tensor4d(timeCode(ts, B, T, timeWidth), [B, T, 1, 3 * timeWidth]), [B, T, L, 3 * timeWidth]);
  return tf.concat([pos, time], 3).reshape([B, T * L, Dp + 3 * timeWidth]) as tf.Tensor3D; // [B, T, L, ·] → [B, T·L, ·]
}

/**
 * What the frame tokenizer needs (the MAE `SatMaeTemporal` and the fine-tuning classifier `SatMaeTemporalVit` both
 * are one): sizes, the shared patch embedding and the position table.
 */
export interface FrameTokenizer {
  readonly config: Pick<SatMaeTemporalConfig, 'imgSize' | 'patchSize' | 'inChans' | 'embedDim' | 'frames' | 'timeEmbedDim'>;
  readonly params: {
    /** [1, 1 + L, D − 3·Tc] */
    pos_embed: tf.Tensor;
    patch_embed: { proj: { weight: tf.Tensor; bias: tf.Tensor } };
  };
}

/**
 * Frame tokens with their codes: images [B, T, H, W, C] → [B, T·L, D] (frame-major): the same patch embedding for
 * every frame, plus [position ‖ time code] (`ts` from `timestampValues`).
 */
export function frameTokens(m: FrameTokenizer, images: tf.Tensor5D, ts: Float64Array, env: ForwardEnv, what?: string): tf.Tensor3D {
  const [B, T, L] = checkFrames(m.config, images, what);
  const { patchSize: p, inChans: C, embedDim: D } = m.config;
  const [, , H, W] = images.shape;
  const frames = images.reshape([B * T, H, W, C]) as tf.Tensor4D; // shared patch embedding for every frame
  const patches = patchify(frames, p); // [B·T, L, p²C] (ky, kx, c) like the [p, p, C, D] weight
  const pe = m.params.patch_embed.proj;
  // weight [p, p, C, D] → [(ky, kx, c), D]; tokens [B·T, L, D] → [B, T·L, D] frame-major
  const x = linearSite(env, 'patch_embed.proj', { weight: pe.weight.reshape([p * p * C, D]), bias: pe.bias }, patches, B).reshape([B, T * L, D]) as tf.Tensor3D; // B samples of T frames (per-sample draws, e.g. LoRA dropout)
  return tf.add(x, tokenCode(m.params.pos_embed, ts, B, T, L, m.config.timeEmbedDim)) as tf.Tensor3D;
}

/** Encoder: images [B, T, H, W, C] → latent [B, 1 + K, D]. */
export function satMaeTemporalEncode(m: SatMaeTemporal, images: tf.Tensor5D, ts: Float64Array, plan: MaskPlan, env: ForwardEnv): tf.Tensor3D {
  const [B, T, L] = checkFrames(m.config, images);
  if (plan.batch !== B || plan.numTokens !== T * L) {
    throw new Error(`SatMAE temporal: mask plan is for [${plan.batch}, ${plan.numTokens}] tokens, input gives [${B}, ${T * L}]`);
  }
  const c = m.config;
  return maskedEncode(m.params, frameTokens(m, images, ts, env), plan, null, { prefix: 'blocks', numHeads: c.numHeads, eps: c.normEps, dropPath: 0 }, env);
}

/** Decoder: latent → prediction [B, T·L, p²·C] (frame-major, (ky, kx, c) vectors). */
export function satMaeTemporalDecode(m: SatMaeTemporal, latent: tf.Tensor3D, ts: Float64Array, plan: MaskPlan, env: ForwardEnv): tf.Tensor3D {
  const c = m.config;
  const T = c.frames;
  const L = plan.numTokens / T;
  const x = decoderTokens(m.params, latent, plan, env); // [B, 1 + T·L, Dd]
  const B = x.shape[0];
  const code = tokenCode(m.params.decoder_pos_embed, ts, B, T, L, c.decoderTimeEmbedDim); // [B, T·L, Dd]
  const Dp = m.params.decoder_pos_embed.shape[2] as number;
  const cls = tf.concat([tf.broadcastTo(m.params.decoder_pos_embed.slice([0, 0, 0], [1, 1, Dp]), [B, 1, Dp]), tf.zeros([B, 1, 3 * c.decoderTimeEmbedDim])], 2);
  const y = decoderBlocks(m.params, tf.add(x, tf.concat([cls, code], 1)) as tf.Tensor3D, c.decoder, env);
  return decoderPredict(m.params, y, env);
}

/** Target [B, T·L, p²·C]: each frame patchified (ky, kx, c), frames concatenated, norm-pix when configured. */
export function satMaeTemporalTarget(m: SatMaeTemporal, images: tf.Tensor5D): tf.Tensor3D {
  return tf.tidy(() => {
    const [B, T, H, W, C] = images.shape;
    const p = m.config.patchSize;
    const t = patchify(images.reshape([B * T, H, W, C]) as tf.Tensor4D, p); // frames on the batch axis → [B·T, L, V]
    const t3 = t.reshape([B, T * t.shape[1], t.shape[2]]) as tf.Tensor3D; // [B·T, L, V] → [B, T·L, V]
    return (m.config.normPixLoss ? normPixTarget(t3) : t3) as tf.Tensor3D;
  });
}

export interface SatMaeTemporalForwardOptions {
  plan?: MaskPlan;
  rng?: Rng;
  maskRatio?: number;
  training?: boolean;
  hooks?: VitHooks;
}

export interface SatMaeTemporalOutput {
  loss: tf.Scalar;
  /** [B, T·L, p²·C] */
  pred: tf.Tensor3D;
  /** [B, T·L], 1 = removed */
  mask: tf.Tensor2D;
  latent: tf.Tensor3D;
  plan: MaskPlan;
}

/**
 * Full forward (call inside a tidy). images [B, T, H, W, C]; timestamps [B][T][3] = (year − 2002, month − 1, hour).
 * @example satMaeTemporalForward(m, x, [[[13, 6, 14], [14, 1, 10], [16, 8, 15]]], {rng})
 */
export function satMaeTemporalForward(m: SatMaeTemporal, images: tf.Tensor5D, timestamps: Timestamps, opts: SatMaeTemporalForwardOptions = {}): SatMaeTemporalOutput {
  checkKeys('satMaeTemporalForward options', opts, ['plan', 'rng', 'maskRatio', 'training', 'hooks']);
  const [B, T] = checkFrames(m.config, images);
  const ts = timestampValues(timestamps, B, T);
  let plan = opts.plan;
  if (!plan) {
    if (!opts.rng) throw new Error('satMaeTemporalForward: pass a mask plan (opts.plan) or an rng (opts.rng) to draw one');
    plan = satMaeTemporalPlan(m, B, opts.rng.fork('mask'), opts.maskRatio ?? m.config.maskRatio);
  }
  const env = makeEnv({ training: opts.training, rng: opts.rng ? opts.rng.fork('dropPath') : null, hooks: opts.hooks });
  const latent = satMaeTemporalEncode(m, images, ts, plan, env);
  const pred = satMaeTemporalDecode(m, latent, ts, plan, env);
  const mask = maskTensor(plan);
  const loss = maskedPatchMse(pred, satMaeTemporalTarget(m, images), mask);
  return { loss, pred, mask, latent, plan };
}

/** Reconstruction views with the frames stacked on the batch axis: [B·T, H, W, C] (sample b, frame t at b·T + t). */
export function satMaeTemporalReconstruction(
  m: SatMaeTemporal,
  images: tf.Tensor5D,
  timestamps: Timestamps,
  opts: { plan?: MaskPlan; rng?: Rng; fill?: number } = {},
): ReconViews {
  const [B, T, L] = checkFrames(m.config, images);
  const { patchSize: p, inChans: C } = m.config;
  const [H, W] = imgHW(m.config);
  const grid = [H / p, W / p] as const;
  return tf.tidy(() => {
    const o = satMaeTemporalForward(m, images, timestamps, { plan: opts.plan, rng: opts.rng ?? (opts.plan ? undefined : new Rng(0)) });
    const frames = images.reshape([B * T, H, W, C]) as tf.Tensor4D; // [B, T, H, W, C] → [B·T, H, W, C]
    let pred = o.pred.reshape([B * T, L, p * p * C]) as tf.Tensor3D; // [B, T·L, V] → [B·T, L, V]
    if (m.config.normPixLoss) pred = denormalizePatches(pred, patchify(frames, p));
    const recon = unpatchify(pred, p, C, grid);
    const maskPx = patchValuesToPixels(o.mask.reshape([B * T, L]) as tf.Tensor2D, p, grid);
    return reconstructionViews(frames, recon, maskPx, opts.fill ?? 0);
  });
}
