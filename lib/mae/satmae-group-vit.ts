/**
 * The SatMAE group-channel **downstream classifier** (fine-tuning model; SatMAE `models_vit_group_channels.py`
 * `GroupChannelsVisionTransformer`, the same class in ExPLoRA's fine-tuning code), for fMoW-Sentinel and EuroSAT
 * 13-band after M-ExPLoRA.
 *
 * - Bands and groups as the group MAE (`bandLayout`): 13 input bands, B1, B9, B10 dropped, groups (B2,B3,B4,B8) /
 *   (B5,B6,B7,B8A) / (B11,B12); one patch embedding per group; tokens group-major (token g·L + l).
 * - Token code = [2-D position (width D − Dc) ‖ group code (width Dc)], both **learnable** here (`pos_embed`
 *   [1, 1 + L, D − Dc] and `channel_embed` [1, G, Dc], initialised from sin-cos, loaded from the pre-trained model).
 * - CLS = `cls_token` + [pos_embed[0] ‖ `channel_cls_embed`] (`channel_cls_embed` [1, 1, Dc] starts at zero and is not
 *   in MAE checkpoints).
 * - Blocks, pooling ('avg': mean of the G·L patch tokens → `fc_norm`; 'cls') and head: lib/mae/satmae-classifier.ts.
 * What trains under ExPLoRA's LoRA fine-tuning rule (name filter: `head`, `lora`, plus optional norms / cls /
 * patch_embed / unfrozen blocks): `pos_embed`, `channel_embed` and `channel_cls_embed` match none of the names, so
 * they stay frozen even though the module declares them as parameters.
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys } from '../check';
import { flattenTree, disposeTree, countParams, ParamTree } from '../tree';
import { createBlockParams, ParamFactory } from '../vit/params';
import { ForwardEnv, makeEnv } from '../vit/forward';
import { imgHW } from '../vit/config';
import { sincos1d, sincos2d } from '../vit/posembed';
import { LoraAdapters, ShapeLike } from '../peft/lora';
import { vitShapes } from '../peft/shapes';
import { BandLayout, SatMaeGroup, SatMaeGroupConfig, SATMAE_GROUP_ENCODER_KEYS, SATMAE_GROUP_PRESETS, bandLayout, groupTokens, selectKeptBands } from './satmae-group';
import { satMaeConfig, SatMaeConfigRules } from './satmae-config';
import {
  CLASSIFIER_FORWARD_KEYS, CLASSIFIER_KEYS, ClassifierFields, ClassifierForwardOptions, ClassifierOutput, ClassifierParams,
  checkClassifierFields, classifierConfigFrom, classifierForward, createClassifierHead, loadMaeEncoder,
} from './satmae-classifier';

/** The group MAE's encoder fields (bands, groups, group-code width Dc, …) plus the classifier fields. */
export type SatMaeGroupVitConfig = Pick<SatMaeGroupConfig, (typeof SATMAE_GROUP_ENCODER_KEYS)[number]> & ClassifierFields;

const KEYS: readonly (keyof SatMaeGroupVitConfig)[] = [...SATMAE_GROUP_ENCODER_KEYS, ...CLASSIFIER_KEYS];

const fromMaeConfig = (mc: SatMaeGroupConfig): SatMaeGroupVitConfig => classifierConfigFrom(mc, SATMAE_GROUP_ENCODER_KEYS);

/** Presets (the group MAE presets' encoders: 96 px, patch 8; fMoW-Sentinel's 62 classes; EuroSAT: `{numClasses: 10}`). */
export const SATMAE_GROUP_VIT_PRESETS = {
  satmae_group_vit_base_patch8: fromMaeConfig(SATMAE_GROUP_PRESETS.satmae_group_vit_base_patch8),
  satmae_group_vit_large_patch8: fromMaeConfig(SATMAE_GROUP_PRESETS.satmae_group_vit_large_patch8),
} satisfies Record<string, SatMaeGroupVitConfig>;

export type SatMaeGroupVitPresetName = keyof typeof SATMAE_GROUP_VIT_PRESETS;

const RULES: SatMaeConfigRules<SatMaeGroupVitConfig, Partial<SatMaeGroupVitConfig>> = {
  name: 'SatMaeGroupVitConfig',
  what: 'SatMAE group classifier preset',
  presets: SATMAE_GROUP_VIT_PRESETS,
  keys: KEYS,
  positive: ['patchSize', 'embedDim', 'depth', 'numHeads', 'channelEmbedDim'],
  codes: [{ of: 'embedDim', code: 'channelEmbedDim' }],
  more: (c) => {
    checkClassifierFields('SatMaeGroupVitConfig', c);
    bandLayout(c);
  },
};

/** Build a validated config from a preset (or a full config) plus overrides. */
export function satMaeGroupVitConfig(
  preset: SatMaeGroupVitPresetName | SatMaeGroupVitConfig,
  overrides: Partial<SatMaeGroupVitConfig> = {},
): SatMaeGroupVitConfig {
  return satMaeConfig(RULES, preset, overrides);
}

export interface SatMaeGroupVitParams extends ClassifierParams {
  cls_token: tf.Variable;
  /** [1, 1 + L, D − Dc], learnable */
  pos_embed: tf.Variable;
  /** [1, G, Dc], learnable */
  channel_embed: tf.Variable;
  /** [1, 1, Dc], learnable, zero at init */
  channel_cls_embed: tf.Variable;
  /** one per group: weight [p, p, |g|, D], bias [D] */
  patch_embed: { proj: { weight: tf.Variable; bias: tf.Variable } }[];
}

export interface SatMaeGroupVit {
  readonly config: SatMaeGroupVitConfig;
  readonly layout: BandLayout;
  readonly params: SatMaeGroupVitParams;
}

/**
 * Build the classifier with fresh weights (timm init: Linear trunc-normal 0.02, patch embedding kaiming-uniform,
 * CLS trunc-normal 0.02; position / group tables from sin-cos, `channel_cls_embed` zero). Use `satMaeGroupVitFromMae`
 * to start from a pre-trained (and ExPLoRA-merged) group MAE.
 * @example const clf = createSatMaeGroupVit('satmae_group_vit_large_patch8', {numClasses: 10}); // EuroSAT 13-band
 */
export function createSatMaeGroupVit(
  preset: SatMaeGroupVitPresetName | SatMaeGroupVitConfig = 'satmae_group_vit_large_patch8',
  overrides: Partial<SatMaeGroupVitConfig> = {},
  opts: { seed?: number; skipInit?: boolean } = {},
): SatMaeGroupVit {
  const config = satMaeGroupVitConfig(preset, overrides);
  const layout = bandLayout(config);
  const f = new ParamFactory('satmae-group-vit', opts.seed ?? 0, opts.skipInit ?? false);
  const { embedDim: D, patchSize: p, channelEmbedDim: Dc } = config;
  const [H, W] = imgHW(config);
  const [gh, gw] = [H / p, W / p];
  const G = layout.groups.length;
  const hidden = Math.round(config.mlpRatio * D);
  const params: SatMaeGroupVitParams = {
    cls_token: f.make('cls_token', [1, 1, D], { kind: 'truncNormal', std: 0.02 }),
    pos_embed: f.fromValues('pos_embed', [1, 1 + gh * gw, D - Dc], sincos2d(D - Dc, gh, gw, true)),
    channel_embed: f.fromValues('channel_embed', [1, G, Dc], sincos1d(Dc, Array.from({ length: G }, (_, g) => g))),
    channel_cls_embed: f.make('channel_cls_embed', [1, 1, Dc], { kind: 'zeros' }),
    patch_embed: layout.groups.map((g, i) => ({
      proj: {
        weight: f.make(`patch_embed.${i}.proj.weight`, [p, p, g.length, D], { kind: 'kaimingUniformA5', fanIn: g.length * p * p }),
        bias: f.make(`patch_embed.${i}.proj.bias`, [D], { kind: 'kaimingUniformA5', fanIn: g.length * p * p }),
      },
    })),
    blocks: Array.from({ length: config.depth }, (_, i) => createBlockParams(f, `blocks.${i}`, D, hidden, { qkvBias: config.qkvBias, layerScale: null, init: 'timm' })),
    ...createClassifierHead(f, D, config),
  };
  return { config, layout, params };
}

/**
 * Parameter shapes of `createSatMaeGroupVit(preset, overrides)` without allocating (same paths and kit shapes; a test
 * checks the two agree), for trainable-count tables of ViT-L with `planLora` / `classifyParams`.
 */
export function satMaeGroupVitShapes(preset: SatMaeGroupVitPresetName | SatMaeGroupVitConfig, overrides: Partial<SatMaeGroupVitConfig> = {}): Map<string, ShapeLike> {
  const c = satMaeGroupVitConfig(preset, overrides);
  const layout = bandLayout(c);
  const [H, W] = imgHW(c);
  const L = (H / c.patchSize) * (W / c.patchSize);
  const D = c.embedDim;
  const vit = vitShapes('vit_base_patch16_224', {
    imgSize: c.imgSize, patchSize: c.patchSize, embedDim: D, depth: c.depth, numHeads: c.numHeads, mlpRatio: c.mlpRatio,
    qkvBias: c.qkvBias, pool: c.pool, numClasses: c.numClasses,
  });
  const out = new Map<string, ShapeLike>();
  out.set('cls_token', { shape: [1, 1, D] });
  out.set('pos_embed', { shape: [1, 1 + L, D - c.channelEmbedDim] });
  out.set('channel_embed', { shape: [1, layout.groups.length, c.channelEmbedDim] });
  out.set('channel_cls_embed', { shape: [1, 1, c.channelEmbedDim] });
  layout.groups.forEach((g, i) => {
    out.set(`patch_embed.${i}.proj.weight`, { shape: [c.patchSize, c.patchSize, g.length, D] });
    out.set(`patch_embed.${i}.proj.bias`, { shape: [D] });
  });
  for (const [k, v] of vit) if (/^(blocks|norm|fc_norm|head)\./.test(k)) out.set(k, v);
  return out;
}

export function satMaeGroupVitVariables(m: SatMaeGroupVit): Map<string, tf.Variable> {
  return flattenTree(m.params);
}

export function disposeSatMaeGroupVit(m: SatMaeGroupVit): void {
  disposeTree(m.params);
}

/** Parameter count of the encoder (everything but `head`) and of the whole classifier. */
export function satMaeGroupVitParamCounts(m: SatMaeGroupVit): { encoder: number; total: number } {
  const { head: _h, ...rest } = m.params;
  return { encoder: countParams(rest), total: countParams(m.params) };
}

export type SatMaeGroupVitForwardOptions = ClassifierForwardOptions;

/** prenorm [B, 1 + G·L, D], pooled [B, D], logits [B, numClasses] or null. */
export type SatMaeGroupVitOutput = ClassifierOutput;

/** Input tokens [B, 1 + G·L, D]: group tokens with their codes, CLS first with [pos[0] ‖ channel_cls_embed]. */
export function satMaeGroupVitTokens(m: SatMaeGroupVit, images: tf.Tensor4D, env: ForwardEnv): tf.Tensor3D {
  const kept = selectKeptBands(m, images); // [B, H, W, C_kept]
  const x = groupTokens(m, kept, env); // [B, G·L, D]
  const [B, , D] = x.shape;
  const Dp = D - m.config.channelEmbedDim;
  const clsCode = tf.concat([m.params.pos_embed.slice([0, 0, 0], [1, 1, Dp]), m.params.channel_cls_embed], 2); // [1, 1, D]
  const cls = tf.broadcastTo(tf.add(m.params.cls_token, clsCode), [B, 1, D]);
  return tf.concat([cls, x], 1) as tf.Tensor3D;
}

/**
 * Forward (call inside a tidy / a train step's loss). images [B, H, W, C] with C = all 13 bands (B1, B9, B10 dropped
 * here) or the 10 kept ones → pooled features and logits. LoRA attaches through `hooks` at `blocks.i.attn.qkv`.
 */
export function satMaeGroupVitForward(m: SatMaeGroupVit, images: tf.Tensor4D, opts: SatMaeGroupVitForwardOptions = {}): SatMaeGroupVitOutput {
  checkKeys('satMaeGroupVitForward options', opts, CLASSIFIER_FORWARD_KEYS);
  const env = makeEnv({ training: opts.training, rng: opts.rng ?? null, hooks: opts.hooks, checkpoint: opts.checkpoint });
  return classifierForward(m.params, m.config, satMaeGroupVitTokens(m, images, env), env, opts.dropPathRate);
}

/** The encoder part of a group MAE's tree (what a classifier takes over). */
function maeEncoderTree(mae: SatMaeGroup): ParamTree {
  const { cls_token, pos_embed, channel_embed, patch_embed, blocks, norm: n } = mae.params;
  return { cls_token, pos_embed, channel_embed, patch_embed, blocks, norm: n };
}

/**
 * The downstream classifier of a (pre-trained) group MAE, as SatMAE / ExPLoRA fine-tuning loads it
 * (`load_state_dict(strict=False)`): `cls_token`, `pos_embed`, `channel_embed`, `patch_embed.*` and every block are
 * copied (new variables; with `lora` the adapters are merged into the copies first — step 6 of ExPLoRA); `norm` is
 * copied for pool 'cls'; `channel_cls_embed` starts at zero; `fc_norm` (identity) and `head` are new. The decoder is
 * dropped. Band layout and sizes must agree (an error names the first difference).
 * @example
 *   const run = setupExploraSatMaeGroup(mae);          // M-ExPLoRA-[1,L]-r32 … train …
 *   const clf = satMaeGroupVitFromMae(mae, {numClasses: 62}, {lora: run.explora.lora});
 */
export function satMaeGroupVitFromMae(
  mae: SatMaeGroup,
  overrides: Partial<Pick<SatMaeGroupVitConfig, 'pool' | 'numClasses' | 'dropPathRate'>> = {},
  opts: { seed?: number; lora?: LoraAdapters | readonly LoraAdapters[] | null } = {},
): SatMaeGroupVit {
  checkKeys('satMaeGroupVitFromMae overrides', overrides, CLASSIFIER_KEYS);
  const config = satMaeGroupVitConfig({ ...fromMaeConfig(mae.config), ...overrides });
  const clf = createSatMaeGroupVit(config, {}, { seed: opts.seed ?? 0 });
  const model = { variables: satMaeGroupVitVariables, dispose: disposeSatMaeGroupVit, fresh: /^(head|fc_norm|channel_cls_embed)(\.|$)/ };
  return loadMaeEncoder('satMaeGroupVitFromMae', clf, model, maeEncoderTree(mae), opts.lora);
}
