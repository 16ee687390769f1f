/**
 * The SatMAE temporal **downstream classifier** (fine-tuning model; SatMAE `models_vit_temporal.py`
 * `VisionTransformer`, the same class in ExPLoRA's fine-tuning code) for fMoW-temporal: three images of one place,
 * each with its timestamp.
 *
 * - The T frames (3) go through the **same** patch embedding; tokens frame-major (token t·L + l, 3·196 at 224/16).
 * - Token code = [`pos_embed` row l (width D − 3·Tc, learnable, loaded from the pre-trained model) ‖ sin-cos(year) ‖
 *   sin-cos(month) ‖ sin-cos(hour)] with Tc = 128 each (fixed, computed from the timestamps (year − 2002, month − 1,
 *   hour) as the dataset makes them); the time part is the same for all tokens of one frame.
 * - CLS = `cls_token` + [pos_embed[0] ‖ zeros(3·Tc)].
 * - Blocks, pooling ('avg', default: mean over all T·L patch tokens → `fc_norm`; 'cls') and head:
 *   lib/mae/satmae-classifier.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys } from '../check';
import { flattenTree, disposeTree, countParams, ParamTree } from '../tree';
import { createBlockParams, ParamFactory } from '../vit/params';
import { ForwardEnv, makeEnv } from '../vit/forward';
import { imgHW } from '../vit/config';
import { sincos2d } from '../vit/posembed';
import { LoraAdapters, ShapeLike } from '../peft/lora';
import { vitShapes } from '../peft/shapes';
import { SatMaeTemporal, SatMaeTemporalConfig, SATMAE_TEMPORAL_ENCODER_KEYS, SATMAE_TEMPORAL_PRESETS, Timestamps, checkFrames, frameTokens, timestampValues } from './satmae-temporal';
import { satMaeConfig, SatMaeConfigRules } from './satmae-config';
import {
  CLASSIFIER_FORWARD_KEYS, CLASSIFIER_KEYS, ClassifierFields, ClassifierForwardOptions, ClassifierOutput, ClassifierParams,
  checkClassifierFields, classifierConfigFrom, classifierForward, createClassifierHead, loadMaeEncoder,
} from './satmae-classifier';

/** The temporal MAE's encoder fields (frames T, time-code width Tc, …) plus the classifier fields. */
export type SatMaeTemporalVitConfig = Pick<SatMaeTemporalConfig, (typeof SATMAE_TEMPORAL_ENCODER_KEYS)[number]> & ClassifierFields;

const KEYS: readonly (keyof SatMaeTemporalVitConfig)[] = [...SATMAE_TEMPORAL_ENCODER_KEYS, ...CLASSIFIER_KEYS];

const fromMaeConfig = (mc: SatMaeTemporalConfig): SatMaeTemporalVitConfig => classifierConfigFrom(mc, SATMAE_TEMPORAL_ENCODER_KEYS);

/** Presets (the temporal MAE presets' encoders: 224 px, patch 16, 3 frames; fMoW's 62 classes). */
export const SATMAE_TEMPORAL_VIT_PRESETS = {
  satmae_temporal_vit_base_patch16: fromMaeConfig(SATMAE_TEMPORAL_PRESETS.satmae_temporal_vit_base_patch16),
  satmae_temporal_vit_large_patch16: fromMaeConfig(SATMAE_TEMPORAL_PRESETS.satmae_temporal_vit_large_patch16),
} satisfies Record<string, SatMaeTemporalVitConfig>;

export type SatMaeTemporalVitPresetName = keyof typeof SATMAE_TEMPORAL_VIT_PRESETS;

const RULES: SatMaeConfigRules<SatMaeTemporalVitConfig, Partial<SatMaeTemporalVitConfig>> = {
  name: 'SatMaeTemporalVitConfig',
  what: 'SatMAE temporal classifier preset',
  presets: SATMAE_TEMPORAL_VIT_PRESETS,
  keys: KEYS,
  positive: ['patchSize', 'inChans', 'embedDim', 'depth', 'numHeads', 'frames', 'timeEmbedDim'],
  codes: [{ of: 'embedDim', code: 'timeEmbedDim', copies: 3 }],
  more: (c) => checkClassifierFields('SatMaeTemporalVitConfig', c),
};

/** Build a validated config from a preset (or a full config) plus overrides. */
export function satMaeTemporalVitConfig(
  preset: SatMaeTemporalVitPresetName | SatMaeTemporalVitConfig,
  overrides: Partial<SatMaeTemporalVitConfig> = {},
): SatMaeTemporalVitConfig {
  return satMaeConfig(RULES, preset, overrides);
}

export interface SatMaeTemporalVitParams extends ClassifierParams {
  cls_token: tf.Variable;
  /** [1, 1 + L, D − 3·Tc], learnable */
  pos_embed: tf.Variable;
  patch_embed: { proj: { weight: tf.Variable; bias: tf.Variable } };
}

export interface SatMaeTemporalVit {
  readonly config: SatMaeTemporalVitConfig;
  readonly params: SatMaeTemporalVitParams;
}

/**
 * Build the classifier with fresh weights (timm init; `pos_embed` from sin-cos). Use `satMaeTemporalVitFromMae` to
 * start from a pre-trained (and ExPLoRA-merged) temporal MAE.
 */
export function createSatMaeTemporalVit(
  preset: SatMaeTemporalVitPresetName | SatMaeTemporalVitConfig = 'satmae_temporal_vit_large_patch16',
  overrides: Partial<SatMaeTemporalVitConfig> = {},
  opts: { seed?: number; skipInit?: boolean } = {},
): SatMaeTemporalVit {
  const config = satMaeTemporalVitConfig(preset, overrides);
  const f = new ParamFactory('satmae-temporal-vit', opts.seed ?? 0, opts.skipInit ?? false);
  const { embedDim: D, patchSize: p, inChans: C } = config;
  const [H, W] = imgHW(config);
  const [gh, gw] = [H / p, W / p];
  const Dp = D - 3 * config.timeEmbedDim;
  const hidden = Math.round(config.mlpRatio * D);
  const params: SatMaeTemporalVitParams = {
    cls_token: f.make('cls_token', [1, 1, D], { kind: 'truncNormal', std: 0.02 }),
    pos_embed: f.fromValues('pos_embed', [1, 1 + gh * gw, Dp], sincos2d(Dp, gh, gw, true)),
    patch_embed: {
      proj: {
        weight: f.make('patch_embed.proj.weight', [p, p, C, D], { kind: 'kaimingUniformA5', fanIn: C * p * p }),
        bias: f.make('patch_embed.proj.bias', [D], { kind: 'kaimingUniformA5', fanIn: C * p * p }),
      },
    },
    blocks: Array.from({ length: config.depth }, (_, i) => createBlockParams(f, `blocks.${i}`, D, hidden, { qkvBias: config.qkvBias, layerScale: null, init: 'timm' })),
    ...createClassifierHead(f, D, config),
  };
  return { config, params };
}

/** Parameter shapes of `createSatMaeTemporalVit(preset, overrides)` without allocating (a test checks they agree). */
export function satMaeTemporalVitShapes(preset: SatMaeTemporalVitPresetName | SatMaeTemporalVitConfig, overrides: Partial<SatMaeTemporalVitConfig> = {}): Map<string, ShapeLike> {
  const c = satMaeTemporalVitConfig(preset, overrides);
  const [H, W] = imgHW(c);
  const L = (H / c.patchSize) * (W / c.patchSize);
  const D = c.embedDim;
  const vit = vitShapes('vit_base_patch16_224', {
    imgSize: c.imgSize, patchSize: c.patchSize, inChans: c.inChans, embedDim: D, depth: c.depth, numHeads: c.numHeads,
    mlpRatio: c.mlpRatio, qkvBias: c.qkvBias, pool: c.pool, numClasses: c.numClasses,
  });
  const out = new Map<string, ShapeLike>();
  out.set('cls_token', { shape: [1, 1, D] });
  out.set('pos_embed', { shape: [1, 1 + L, D - 3 * c.timeEmbedDim] });
  for (const [k, v] of vit) if (/^(patch_embed|blocks|norm|fc_norm|head)\./.test(k)) out.set(k, v);
  return out;
}

export function satMaeTemporalVitVariables(m: SatMaeTemporalVit): Map<string, tf.Variable> {
  return flattenTree(m.params);
}

export function disposeSatMaeTemporalVit(m: SatMaeTemporalVit): void {
  disposeTree(m.params);
}

/** Parameter count of the encoder (everything but `head`) and of the whole classifier. */
export function satMaeTemporalVitParamCounts(m: SatMaeTemporalVit): { encoder: number; total: number } {
  const { head: _h, ...rest } = m.params;
  return { encoder: countParams(rest), total: countParams(m.params) };
}

export type SatMaeTemporalVitForwardOptions = ClassifierForwardOptions;

/** prenorm [B, 1 + T·L, D], pooled [B, D], logits [B, numClasses] or null. */
export type SatMaeTemporalVitOutput = ClassifierOutput;

const WHAT = 'SatMAE temporal classifier input';

/** Input tokens [B, 1 + T·L, D]: `frameTokens` (shared patch embedding + [position ‖ time code]), CLS first. */
export function satMaeTemporalVitTokens(m: SatMaeTemporalVit, images: tf.Tensor5D, ts: Float64Array, env: ForwardEnv): tf.Tensor3D {
  const x = frameTokens(m, images, ts, env, WHAT); // [B, T·L, D]
  const [B, , D] = x.shape;
  const Dp = D - 3 * m.config.timeEmbedDim;
  const clsCode = tf.concat([m.params.pos_embed.slice([0, 0, 0], [1, 1, Dp]), tf.zeros([1, 1, 3 * m.config.timeEmbedDim])], 2); // [1, 1, D]
  const cls = tf.broadcastTo(tf.add(m.params.cls_token, clsCode), [B, 1, D]);
  return tf.concat([cls, x], 1) as tf.Tensor3D;
}

/**
 * Forward (call inside a tidy). images [B, T, H, W, C]; timestamps [B][T][3] = (year − 2002, month − 1, hour) as
 * `fmowTemporalCode` makes them (nested arrays, flat, or a [B, T, 3] tensor).
 */
export function satMaeTemporalVitForward(
  m: SatMaeTemporalVit,
  images: tf.Tensor5D,
  timestamps: Timestamps,
  opts: SatMaeTemporalVitForwardOptions = {},
): SatMaeTemporalVitOutput {
  checkKeys('satMaeTemporalVitForward options', opts, CLASSIFIER_FORWARD_KEYS);
  const [B, T] = checkFrames(m.config, images, WHAT);
  const ts = timestampValues(timestamps, B, T);
  const env = makeEnv({ training: opts.training, rng: opts.rng ?? null, hooks: opts.hooks, checkpoint: opts.checkpoint });
  return classifierForward(m.params, m.config, satMaeTemporalVitTokens(m, images, ts, env), env, opts.dropPathRate);
}

function maeEncoderTree(mae: SatMaeTemporal): ParamTree {
  const { cls_token, pos_embed, patch_embed, blocks, norm: n } = mae.params;
  return { cls_token, pos_embed, patch_embed, blocks, norm: n };
}

/**
 * The downstream classifier of a (pre-trained) temporal MAE: `cls_token`, `pos_embed`, `patch_embed` and the blocks
 * copied (ExPLoRA adapters merged first when `lora` is given), `norm` for pool 'cls', new `fc_norm` / `head`.
 */
export function satMaeTemporalVitFromMae(
  mae: SatMaeTemporal,
  overrides: Partial<Pick<SatMaeTemporalVitConfig, 'pool' | 'numClasses' | 'dropPathRate'>> = {},
  opts: { seed?: number; lora?: LoraAdapters | readonly LoraAdapters[] | null } = {},
): SatMaeTemporalVit {
  checkKeys('satMaeTemporalVitFromMae overrides', overrides, CLASSIFIER_KEYS);
  const config = satMaeTemporalVitConfig({ ...fromMaeConfig(mae.config), ...overrides });
  const clf = createSatMaeTemporalVit(config, {}, { seed: opts.seed ?? 0 });
  const model = { variables: satMaeTemporalVitVariables, dispose: disposeSatMaeTemporalVit, fresh: /^(head|fc_norm)(\.|$)/ };
  return loadMaeEncoder('satMaeTemporalVitFromMae', clf, model, maeEncoderTree(mae), opts.lora);
}
