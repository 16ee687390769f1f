/**
 * SatMAE group-channel masked autoencoder for multispectral (Sentinel-2) input (SatMAE
 * `models_mae_group_channels.py`).
 *
 * - Bands: the input carries `bands` (default the 13 Sentinel-2 bands B1…B12 in file order); `dropBands` (default
 *   B1, B9, B10) are removed → 10 kept bands [B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12].
 * - Groups (default (B2,B3,B4,B8) / (B5,B6,B7,B8A) / (B11,B12), i.e. kept indices (0,1,2,6) / (3,4,5,7) / (8,9)):
 *   one patch embedding per group (`patch_embed.g.proj`, C_in = |group|), so every grid cell gives G tokens; the
 *   sequence is group-major, token g·L + l (96 px, patch 8: 3·144 = 432 tokens + CLS).
 * - Token code = [2-D sin-cos of the cell (width D − Dc) ‖ 1-D sin-cos of the group index (width Dc)], both fixed
 *   (`pos_embed` [1, 1+L, D−Dc], `channel_embed` [1, G, Dc]); Dc = 256 for ViT-L/B, configurable for small models.
 *   The CLS token gets nothing added in the encoder.
 * - Masking: independent per (group, cell) token (default), or `spatialMask` (whole cells across all groups).
 * - Decoder: decoder code [2-D sin-cos (Dd − Ddc) ‖ group code (Ddc)] with a (G+1)-row group table whose last row is the
 *   CLS's; one head per group `decoder_pred.g`: Dd → |group|·p², giving a prediction [B, C, L, p²].
 * - Target: kept bands patchified in (band, ky, kx) order, norm-pix over the whole C·p² patch vector (as SatMAE), seen
 *   as [B, C, L, p²]. Loss: per (band, cell) MSE over p²; for each group the mean over its bands, weighted by that
 *   group's mask, summed over groups and cells and divided by the number of masked (group, cell) tokens.
 * - `targetAlign`: 'grouped' (default) compares head g's outputs with the bands of group g. 'satmae' reproduces the
 *   upstream code exactly: there the concatenated head outputs (group order) are compared with the target in band
 *   order, so with the default groups head 0's 4th output is scored against B5, not B8. Use 'satmae' only to continue
 *   from a SatMAE checkpoint's decoder heads.
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys, fmtValue } from '../check';
import { satMaeConfig, SatMaeConfigRules } from './satmae-config';
import { Rng } from '../rng';
import { flattenTree, disposeTree, countParams } from '../tree';
import { BlockParams, createBlockParams, LinearParams, NormParams, ParamFactory } from '../vit/params';
import { ForwardEnv, linearSite, makeEnv, VitHooks } from '../vit/forward';
import { imgHW, VitConfig, VIT_SIZES } from '../vit/config';
import { sincos1d, sincos2d } from '../vit/posembed';
import { DecoderConfig, DecoderOverrides, DecoderParams, withDecoderOverrides, createDecoderParams, decoderConfig, decoderTokens, decoderBlocks } from './decoder';
import { maskedEncode } from './encoder';
import { MaskPlan, checkMaskRatio, randomMasking, shardedPlan, spatialMasking, maskTensor } from './masking';
import { patchify, patchifyBands, unpatchifyBands } from './patchify';
import { normPixTarget } from './loss';
import { denormalizePatches, reconstructionViews, ReconViews } from './recon';

/** Sentinel-2 bands in the order of the fMoW-Sentinel / EuroSAT-MS files. */
export const SATMAE_SENTINEL2_BANDS = ['B1', 'B2', 'B3', 'B4', 'B5', 'B6', 'B7', 'B8', 'B8A', 'B9', 'B10', 'B11', 'B12'] as const;

/** The encoder trunk (`imgSize` SatMAE multispectral: 96, `patchSize` 8) and the bands, groups, decoder and masking. */
export interface SatMaeGroupConfig extends Pick<VitConfig, 'imgSize' | 'patchSize' | 'embedDim' | 'depth' | 'numHeads' | 'mlpRatio' | 'qkvBias' | 'normEps'> {
  /** Names of the input channels, in order. */
  bands: readonly string[];
  /** Bands removed before grouping (SatMAE `--dropped_bands 0 9 10`). */
  dropBands: readonly string[];
  /** Band groups (names); together they must cover every kept band exactly once. */
  groups: readonly (readonly string[])[];
  /** Width Dc of the group code in the encoder token code (SatMAE: 256); the position part is D − Dc. */
  channelEmbedDim: number;
  decoder: DecoderConfig;
  /** Width of the group code in the decoder (SatMAE: 128); the position part is Dd − that. */
  decoderChannelEmbedDim: number;
  maskRatio: number;
  /** Mask whole cells across all groups (SatMAE `--spatial_mask`) instead of each (group, cell) token. */
  spatialMask: boolean;
  normPixLoss: boolean;
  targetAlign: 'grouped' | 'satmae';
}

/** The encoder's fields of the config (what the downstream classifier `SatMaeGroupVitConfig` shares with the MAE). */
export const SATMAE_GROUP_ENCODER_KEYS = [
  'imgSize', 'patchSize', 'embedDim', 'depth', 'numHeads', 'mlpRatio', 'qkvBias', 'normEps', 'bands', 'dropBands', 'groups',
  'channelEmbedDim',
] as const;

const KEYS: readonly (keyof SatMaeGroupConfig)[] = [
  ...SATMAE_GROUP_ENCODER_KEYS, 'decoder', 'decoderChannelEmbedDim', 'maskRatio', 'spatialMask', 'normPixLoss', 'targetAlign',
];

const BASE: Omit<SatMaeGroupConfig, 'embedDim' | 'depth' | 'numHeads'> = {
  imgSize: 96,
  patchSize: 8,
  mlpRatio: 4,
  qkvBias: true,
  normEps: 1e-6,
  bands: SATMAE_SENTINEL2_BANDS,
  dropBands: ['B1', 'B9', 'B10'],
  groups: [
    ['B2', 'B3', 'B4', 'B8'],
    ['B5', 'B6', 'B7', 'B8A'],
    ['B11', 'B12'],
  ],
  channelEmbedDim: 256,
  decoder: decoderConfig(),
  decoderChannelEmbedDim: 128,
  maskRatio: 0.75,
  spatialMask: false,
  normPixLoss: true,
  targetAlign: 'grouped',
};

/** SatMAE group-channel presets (96 px, patch 8, 512-d 8-block decoder). */
export const SATMAE_GROUP_PRESETS = {
  satmae_group_vit_base_patch8: { ...BASE, ...VIT_SIZES.base },
  satmae_group_vit_large_patch8: { ...BASE, ...VIT_SIZES.large },
} satisfies Record<string, SatMaeGroupConfig>;

export type SatMaeGroupPresetName = keyof typeof SATMAE_GROUP_PRESETS;

/** Overrides; `decoder` may be partial. */
export type SatMaeGroupOverrides = DecoderOverrides<SatMaeGroupConfig>;

/** Band bookkeeping derived from a config. */
export interface BandLayout {
  /** Indices of the kept bands in the input. */
  keptInput: number[];
  /** Kept band names, in input order. */
  kept: string[];
  /** Per group: indices into the kept bands (SatMAE's `channel_groups`, e.g. (0,1,2,6)). */
  groups: number[][];
  /** The kept-band indices in group-concatenated order (the order of the prediction's channel axis). */
  order: number[];
}

/** Resolve kept bands and groups; throws naming the band on any inconsistency. */
export function bandLayout(c: Pick<SatMaeGroupConfig, 'bands' | 'dropBands' | 'groups'>): BandLayout {
  const seen = new Set<string>();
  for (const b of c.bands) {
    if (seen.has(b)) throw new Error(`SatMaeGroupConfig.bands: band '${b}' is listed twice`);
    seen.add(b);
  }
  for (const b of c.dropBands) {
    if (!seen.has(b)) throw new Error(`SatMaeGroupConfig.dropBands: '${b}' is not an input band; bands: ${c.bands.join(', ')}`);
  }
  const keptInput: number[] = [];
  const kept: string[] = [];
  c.bands.forEach((b, i) => {
    if (!c.dropBands.includes(b)) {
      keptInput.push(i);
      kept.push(b);
    }
  });
  if (c.groups.length === 0) throw new Error('SatMaeGroupConfig.groups: at least one group is needed');
  const used = new Map<string, number>();
  const groups = c.groups.map((g, gi) => {
    if (g.length === 0) throw new Error(`SatMaeGroupConfig.groups[${gi}] is empty`);
    return g.map((b) => {
      const k = kept.indexOf(b);
      if (k < 0) {
        const why = c.dropBands.includes(b) ? 'it is dropped' : 'it is not an input band';
        throw new Error(`SatMaeGroupConfig.groups[${gi}]: band '${b}' cannot be used (${why}); kept bands: ${kept.join(', ')}`);
      }
      if (used.has(b)) throw new Error(`SatMaeGroupConfig.groups: band '${b}' is in group ${used.get(b)} and group ${gi}`);
      used.set(b, gi);
      return k;
    });
  });
  const missing = kept.filter((b) => !used.has(b));
  if (missing.length) {
    throw new Error(`SatMaeGroupConfig.groups: kept band(s) ${missing.join(', ')} belong to no group (${kept.length} kept bands, ${used.size} grouped); drop them or add them to a group`);
  }
  return { keptInput, kept, groups, order: groups.flat() };
}

const RULES: SatMaeConfigRules<SatMaeGroupConfig, SatMaeGroupOverrides> = {
  name: 'SatMaeGroupConfig',
  what: 'SatMAE group preset',
  presets: SATMAE_GROUP_PRESETS,
  keys: KEYS,
  positive: ['patchSize', 'embedDim', 'depth', 'numHeads', 'channelEmbedDim', 'decoderChannelEmbedDim'],
  codes: [
    { of: 'embedDim', code: 'channelEmbedDim' },
    { of: 'decoder.embedDim', code: 'decoderChannelEmbedDim' },
  ],
  merge: withDecoderOverrides,
  more: (c) => {
    checkMaskRatio(c.maskRatio, 'SatMaeGroupConfig.maskRatio');
    if (!['grouped', 'satmae'].includes(c.targetAlign)) throw new Error(`SatMaeGroupConfig.targetAlign: expected 'grouped' or 'satmae', got ${fmtValue(c.targetAlign)}`);
    bandLayout(c);
  },
};

/** Build a validated config from a preset plus overrides. */
export function satMaeGroupConfig(preset: SatMaeGroupPresetName | SatMaeGroupConfig, overrides: SatMaeGroupOverrides = {}): SatMaeGroupConfig {
  return satMaeConfig(RULES, preset, overrides);
}

/**
 * `loadCheckpoint` options to start a group model from an RGB MAE checkpoint (ExPLoRA M- multispectral:
 * `mae/pretrain.py` drops the keys whose shapes do not fit): the RGB patch embedding, decoder head and position tables
 * do not fit and are skipped; the group patch embeddings, per-group heads and the group / position codes keep their own
 * (fresh or fixed) values; every block, norm, the CLS token, decoder embed, mask token and decoder blocks load.
 * @example loadCheckpoint('mae_visualize_vit_large.safetensors', {params: satMaeGroupVariables(m)}, SATMAE_GROUP_FROM_RGB_MAE)
 */
export const SATMAE_GROUP_FROM_RGB_MAE: Readonly<{ ignore: RegExp; allowMissing: RegExp }> = Object.freeze({
  ignore: /^(patch_embed\.proj|decoder_pred|pos_embed|decoder_pos_embed)(\.|$)/,
  allowMissing: /^(patch_embed\.\d+|decoder_pred\.\d+|pos_embed|channel_embed|decoder_pos_embed|decoder_channel_embed)(\.|$)/,
});

export interface SatMaeGroupParams extends DecoderParams {
  cls_token: tf.Variable;
  /** [1, 1 + L, D − Dc] fixed */
  pos_embed: tf.Variable;
  /** [1, G, Dc] fixed */
  channel_embed: tf.Variable;
  /** one per group: weight [p, p, |g|, D], bias [D] */
  patch_embed: { proj: { weight: tf.Variable; bias: tf.Variable } }[];
  blocks: BlockParams[];
  norm: NormParams;
}

export interface SatMaeGroup {
  readonly config: SatMaeGroupConfig;
  readonly layout: BandLayout;
  readonly params: SatMaeGroupParams;
}

/**
 * What the group tokenizer needs (the MAE `SatMaeGroup` and the fine-tuning classifier `SatMaeGroupVit` both are
 * one): image / band configuration, band layout, per-group patch embeddings and the position / group tables.
 */
export interface GroupTokenizer {
  readonly config: Pick<SatMaeGroupConfig, 'imgSize' | 'patchSize' | 'embedDim' | 'channelEmbedDim' | 'bands' | 'dropBands'>;
  readonly layout: BandLayout;
  readonly params: {
    /** [1, 1 + L, D − Dc] */
    pos_embed: tf.Tensor;
    /** [1, G, Dc] */
    channel_embed: tf.Tensor;
    patch_embed: { proj: { weight: tf.Tensor; bias: tf.Tensor } }[];
  };
}

/**
 * Build a SatMAE group-channel MAE.
 * @example const m = createSatMaeGroup('satmae_group_vit_large_patch8'); // 432 tokens at 96 px
 */
export function createSatMaeGroup(
  preset: SatMaeGroupPresetName | SatMaeGroupConfig = 'satmae_group_vit_large_patch8',
  overrides: SatMaeGroupOverrides = {},
  opts: { seed?: number; skipInit?: boolean } = {},
): SatMaeGroup {
  const config = satMaeGroupConfig(preset, overrides);
  const layout = bandLayout(config);
  const f = new ParamFactory('satmae-group', opts.seed ?? 0, opts.skipInit ?? false);
  const { embedDim: D, patchSize: p, channelEmbedDim: Dc } = config;
  const [H, W] = imgHW(config);
  const [gh, gw] = [H / p, W / p];
  const G = layout.groups.length;
  const hidden = Math.round(config.mlpRatio * D);
  const enc = {
    cls_token: f.make('cls_token', [1, 1, D], { kind: 'normal', std: 0.02 }),
    pos_embed: f.fromValues('pos_embed', [1, 1 + gh * gw, D - Dc], sincos2d(D - Dc, gh, gw, true), false),
    channel_embed: f.fromValues('channel_embed', [1, G, Dc], sincos1d(Dc, Array.from({ length: G }, (_, g) => g)), false),
    patch_embed: layout.groups.map((g, i) => ({
      proj: {
        weight: f.make(`patch_embed.${i}.proj.weight`, [p, p, g.length, D], { kind: 'xavierUniform', fanIn: g.length * p * p, fanOut: D }),
        bias: f.make(`patch_embed.${i}.proj.bias`, [D], { kind: 'zeros' }),
      },
    })),
    blocks: Array.from({ length: config.depth }, (_, i) => createBlockParams(f, `blocks.${i}`, D, hidden, { qkvBias: config.qkvBias, layerScale: null, init: 'mae' })),
    norm: f.norm('norm', D),
  };
  const dec = createDecoderParams(f, {
    encoderDim: D,
    config: config.decoder,
    grid: [gh, gw],
    posWidth: config.decoder.embedDim - config.decoderChannelEmbedDim,
    channels: { groups: G, width: config.decoderChannelEmbedDim },
    predOut: layout.groups.map((g) => g.length * p * p),
  });
  return { config, layout, params: { ...enc, ...dec } };
}

export function satMaeGroupVariables(m: SatMaeGroup): Map<string, tf.Variable> {
  return flattenTree(m.params);
}

export function disposeSatMaeGroup(m: SatMaeGroup): void {
  disposeTree(m.params);
}

/** Parameter count of the encoder part (everything not in the decoder), and of the whole model. */
export function satMaeGroupParamCounts(m: SatMaeGroup): { encoder: number; total: number } {
  let encoder = 0;
  for (const [k, v] of satMaeGroupVariables(m)) if (!/^(decoder_|mask_token)/.test(k)) encoder += v.size;
  return { encoder, total: countParams(m.params) };
}

/** Grid [rows, cols], cells L and groups G. */
export function satMaeGroupGrid(m: Pick<GroupTokenizer, 'config' | 'layout'>): { gh: number; gw: number; L: number; G: number } {
  const [H, W] = imgHW(m.config);
  const gh = H / m.config.patchSize;
  const gw = W / m.config.patchSize;
  return { gh, gw, L: gh * gw, G: m.layout.groups.length };
}

/** Number of tokens the encoder sees before masking (G·L; 3·144 = 432 at 96 px / patch 8). */
export function satMaeGroupTokenCount(m: SatMaeGroup): number {
  const { L, G } = satMaeGroupGrid(m);
  return G * L;
}

/**
 * Check the input and select the kept bands. images [B, H, W, C] with C = all `bands` (dropped here) or only the kept
 * bands → [B, H, W, C_kept].
 */
export function selectKeptBands(m: Pick<GroupTokenizer, 'config' | 'layout'>, images: tf.Tensor4D): tf.Tensor4D {
  const c = m.config;
  if (images.rank !== 4) throw new Error(`SatMAE group input: expected images [B, H, W, C] (NHWC), got shape [${images.shape}]`);
  const [, H, W, C] = images.shape;
  const [h, w] = imgHW(c);
  if (H % c.patchSize || W % c.patchSize) throw new Error(`SatMAE group input: image size ${H}x${W} is not divisible by the patch size ${c.patchSize}`);
  if (H !== h || W !== w) throw new Error(`SatMAE group input: image size ${H}x${W} differs from the configured ${h}x${w} (the fixed position tables are made for it)`);
  const { kept, keptInput } = m.layout;
  if (C === c.bands.length) {
    if (keptInput.length === C) return images;
    return tf.gather(images, keptInput, 3) as tf.Tensor4D;
  }
  if (C === kept.length) return images;
  throw new Error(
    `SatMAE group input: got ${fmtValue(C)} bands; expected ${c.bands.length} (${c.bands.join(', ')}; ${c.dropBands.join(', ')} dropped here) or the ${kept.length} kept bands (${kept.join(', ')}) that the ${m.layout.groups.length} groups use`,
  );
}

/** Group tokens with their codes: kept images [B, H, W, C] → [B, G·L, D] (group-major). */
export function groupTokens(m: GroupTokenizer, kept: tf.Tensor4D, env: ForwardEnv): tf.Tensor3D {
  const { patchSize: p, embedDim: D, channelEmbedDim: Dc } = m.config;
  const { L, G } = satMaeGroupGrid(m);
  const B = kept.shape[0];
  const per = m.layout.groups.map((g, i) => {
    const xg = tf.gather(kept, g, 3) as tf.Tensor4D; // [B, H, W, |g|]
    const patches = patchify(xg, p); // [B, L, p·p·|g|] (ky, kx, c) like the [p, p, |g|, D] weight
    const pe = m.params.patch_embed[i].proj;
    const w = pe.weight.reshape([p * p * g.length, D]); // [p, p, |g|, D] → [(ky, kx, c), D]
    return linearSite(env, `patch_embed.${i}.proj`, { weight: w, bias: pe.bias }, patches) as tf.Tensor3D; // [B, L, D]
  });
  const x = tf.stack(per, 1).reshape([B, G * L, D]); // [B, G, L, D] → [B, G·L, D]
  // code [1, G, L, D] = [pos(l) ‖ channel(g)]
  const pos = tf.broadcastTo(m.params.pos_embed.slice([0, 1, 0], [1, L, D - Dc]).reshape([1, 1, L, D - Dc]), [1, G, L, D - Dc]); // cell code, same for every group
  const ch = tf.broadcastTo(m.params.channel_embed.reshape([1, G, 1, Dc]), [1, G, L, Dc]); // group code, same for every cell
  const code = tf.concat([pos, ch], 3).reshape([1, G * L, D]); // [1, G, L, D] → [1, G·L, D] group-major
  return tf.add(x, code) as tf.Tensor3D;
}

/** A masking plan for a batch: independent per (group, cell) token, or spatial when configured. */
export function satMaeGroupPlan(m: SatMaeGroup, batch: number, rng: Rng, maskRatio = m.config.maskRatio): MaskPlan {
  const { L, G } = satMaeGroupGrid(m);
  return shardedPlan(batch, (n) => (m.config.spatialMask ? spatialMasking(rng, n, G, L, maskRatio) : randomMasking(rng, n, G * L, maskRatio)));
}

/** Encoder: images → latent [B, 1 + K, D]. */
export function satMaeGroupEncode(m: SatMaeGroup, images: tf.Tensor4D, plan: MaskPlan, env: ForwardEnv): tf.Tensor3D {
  const kept = selectKeptBands(m, images);
  const tokens = groupTokens(m, kept, env);
  if (plan.batch !== tokens.shape[0] || plan.numTokens !== tokens.shape[1]) {
    throw new Error(`SatMAE group: mask plan is for [${plan.batch}, ${plan.numTokens}] tokens, input gives [${tokens.shape[0]}, ${tokens.shape[1]}]`);
  }
  const c = m.config;
  return maskedEncode(m.params, tokens, plan, null, { prefix: 'blocks', numHeads: c.numHeads, eps: c.normEps, dropPath: 0 }, env);
}

/** Decoder: latent → prediction [B, C, L, p²] with channels in group-concatenated order (`layout.order`). */
export function satMaeGroupDecode(m: SatMaeGroup, latent: tf.Tensor3D, plan: MaskPlan, env: ForwardEnv): tf.Tensor4D {
  const { L, G } = satMaeGroupGrid(m);
  const c = m.config;
  const Dd = c.decoder.embedDim;
  const Dp = Dd - c.decoderChannelEmbedDim;
  const Dc = c.decoderChannelEmbedDim;
  const p = c.patchSize;
  const x = decoderTokens(m.params, latent, plan, env); // [B, 1 + G·L, Dd]
  const B = x.shape[0];
  const posT = m.params.decoder_pos_embed;
  const chT = m.params.decoder_channel_embed!;
  const pos = tf.broadcastTo(posT.slice([0, 1, 0], [1, L, Dp]).reshape([1, 1, L, Dp]), [1, G, L, Dp]); // [1, L, Dp] → [1, G, L, Dp]
  const ch = tf.broadcastTo(chT.slice([0, 0, 0], [1, G, Dc]).reshape([1, G, 1, Dc]), [1, G, L, Dc]); // rows 0..G−1 → [1, G, L, Dc]
  const code = tf.concat([pos, ch], 3).reshape([1, G * L, Dd]); // [1, G·L, Dd]
  const extra = tf.concat([posT.slice([0, 0, 0], [1, 1, Dp]), chT.slice([0, G, 0], [1, 1, Dc])], 2); // CLS: [pos[0] ‖ channel row G]
  const y = decoderBlocks(m.params, tf.add(x, tf.concat([extra, code], 1)) as tf.Tensor3D, c.decoder, env); // [B, G·L, Dd]
  const yg = y.reshape([B, G, L, Dd]); // [B, G·L, Dd] → [B, G, L, Dd]
  const heads = m.layout.groups.map((g, i) => {
    const xi = yg.slice([0, i, 0, 0], [B, 1, L, Dd]).reshape([B, L, Dd]); // group i's tokens [B, L, Dd]
    const d = linearSite(env, `decoder_pred.${i}`, (m.params.decoder_pred as LinearParams[])[i], xi);
    return d.reshape([B, L, g.length, p * p]).transpose([0, 2, 1, 3]); // [B, L, |g|, p²] → [B, |g|, L, p²]
  });
  return tf.concat(heads, 1) as tf.Tensor4D; // [B, C, L, p²]
}

/** Target [B, C, L, p²] in band order: (band, ky, kx) patches of the kept bands, norm-pix over the whole C·p² vector. */
export function satMaeGroupTarget(m: SatMaeGroup, kept: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const p = m.config.patchSize;
    const t0 = patchifyBands(kept, p); // [B, L, C·p²]
    const t = m.config.normPixLoss ? normPixTarget(t0) : t0;
    const [B, L] = t0.shape;
    const C = kept.shape[3];
    return t.reshape([B, L, C, p * p]).transpose([0, 2, 1, 3]) as tf.Tensor4D; // [B, L, C, p²] → [B, C, L, p²]
  });
}

/**
 * The per-group masked loss. pred [B, C, L, p²] (group-concatenated channels), target [B, C, L, p²] (band order),
 * mask [B, G·L] (1 = removed, group-major).
 */
export function satMaeGroupLoss(m: SatMaeGroup, pred: tf.Tensor4D, target: tf.Tensor4D, mask: tf.Tensor2D): tf.Scalar {
  const { L, G } = satMaeGroupGrid(m);
  const { groups, order } = m.layout;
  return tf.tidy(() => {
    const B = pred.shape[0];
    const aligned = m.config.targetAlign === 'grouped' ? tf.gather(target, order, 1) : target; // channel k of pred ↔ channel k of target
    const per = tf.mean(tf.squaredDifference(pred, aligned), -1); // [B, C, L]
    const m3 = mask.reshape([B, G, L]); // [B, G·L] → [B, G, L]
    let total: tf.Tensor = tf.scalar(0);
    let off = 0;
    groups.forEach((g, i) => {
      // 'grouped': head i's channels are [off, off+|g|); 'satmae': loss[:, group] indexes band positions
      const chans = m.config.targetAlign === 'grouped' ? g.map((_, j) => off + j) : g;
      const gl = tf.mean(tf.gather(per, chans, 1), 1); // [B, L]
      total = tf.add(total, tf.sum(tf.mul(gl, m3.slice([0, i, 0], [B, 1, L]).reshape([B, L]))));
      off += g.length;
    });
    return tf.div(total, tf.sum(mask)) as tf.Scalar;
  });
}

export interface SatMaeGroupForwardOptions {
  plan?: MaskPlan;
  rng?: Rng;
  maskRatio?: number;
  training?: boolean;
  hooks?: VitHooks;
}

export interface SatMaeGroupOutput {
  loss: tf.Scalar;
  /** [B, C, L, p²], channels in group-concatenated order */
  pred: tf.Tensor4D;
  /** [B, G·L], 1 = removed, group-major */
  mask: tf.Tensor2D;
  latent: tf.Tensor3D;
  plan: MaskPlan;
}

/** Full forward (call inside a tidy / a train step's loss). images [B, H, W, C] (all bands or the kept ones). */
export function satMaeGroupForward(m: SatMaeGroup, images: tf.Tensor4D, opts: SatMaeGroupForwardOptions = {}): SatMaeGroupOutput {
  checkKeys('satMaeGroupForward options', opts, ['plan', 'rng', 'maskRatio', 'training', 'hooks']);
  let plan = opts.plan;
  if (!plan) {
    if (!opts.rng) throw new Error('satMaeGroupForward: pass a mask plan (opts.plan) or an rng (opts.rng) to draw one');
    plan = satMaeGroupPlan(m, images.shape[0], opts.rng.fork('mask'), opts.maskRatio ?? m.config.maskRatio);
  }
  const env = makeEnv({ training: opts.training, rng: opts.rng ? opts.rng.fork('dropPath') : null, hooks: opts.hooks });
  const kept = selectKeptBands(m, images);
  const latent = satMaeGroupEncode(m, kept, plan, env);
  const pred = satMaeGroupDecode(m, latent, plan, env);
  const mask = maskTensor(plan);
  const loss = satMaeGroupLoss(m, pred, satMaeGroupTarget(m, kept), mask);
  return { loss, pred, mask, latent, plan };
}

/**
 * Reconstruction views over the kept bands ([B, H, W, C_kept]; show e.g. bands [2, 1, 0] = B4, B3, B2 as RGB).
 * With 'grouped' alignment the heads' channels are put back in band order; the mask of a band is its group's mask.
 */
export function satMaeGroupReconstruction(m: SatMaeGroup, images: tf.Tensor4D, opts: { plan?: MaskPlan; rng?: Rng; fill?: number } = {}): ReconViews {
  const { L, G, gh, gw } = satMaeGroupGrid(m);
  const p = m.config.patchSize;
  const { groups, order } = m.layout;
  return tf.tidy(() => {
    const kept = selectKeptBands(m, images);
    const C = kept.shape[3];
    const B = kept.shape[0];
    const o = satMaeGroupForward(m, kept, { plan: opts.plan, rng: opts.rng ?? (opts.plan ? undefined : new Rng(0)) });
    // prediction channels → band order
    const inv = new Array<number>(C);
    order.forEach((band, k) => (inv[band] = k));
    const predBands = m.config.targetAlign === 'grouped' ? tf.gather(o.pred, inv, 1) : o.pred; // [B, C, L, p²]
    let pv = predBands.transpose([0, 2, 1, 3]).reshape([B, L, C * p * p]) as tf.Tensor3D; // (band, ky, kx)
    if (m.config.normPixLoss) {
      const truth = patchifyBands(kept, p);
      pv = denormalizePatches(pv, truth);
    }
    const recon = unpatchifyBands(pv, p, C, [gh, gw]);
    // mask per band: band b uses the mask of its group
    const groupOf = new Array<number>(C);
    groups.forEach((g, i) => g.forEach((b) => (groupOf[b] = i)));
    const m3 = o.mask.reshape([B, G, L]); // [B, G·L] → [B, G, L]
    const mb = tf.gather(m3, groupOf, 1).transpose([0, 2, 1]).reshape([B, L, C, 1]); // [B, C, L] → [B, L, C, 1]
    const maskPx = unpatchifyBands(tf.tile(mb, [1, 1, 1, p * p]).reshape([B, L, C * p * p]) as tf.Tensor3D, p, C, [gh, gw]);
    return reconstructionViews(kept, recon, maskPx, opts.fill ?? 0);
  });
}
