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
 * - timm blocks with drop-path rates linear over depth; pool 'avg' (default): mean over all T·L patch tokens of the
 *   last block output (pre-norm) → `fc_norm` → `head`; pool 'cls': `norm` → token 0 → `head`.
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys, lookup } from '../check';
import { flattenTree, disposeTree, countParams, ParamTree } from '../tree';
import { BlockParams, createBlockParams, LinearParams, NormParams, ParamFactory } from '../vit/params';
import { ForwardEnv, linearSite, makeEnv, norm, VitHooks, blockForward, BlockOptions, TokenState } from '../vit/forward';
import { imgHW, dropPathRates } from '../vit/config';
import { checkpointedBlock, CheckpointOptions } from '../vit/checkpoint';
import { sincos2d } from '../vit/posembed';
import { Rng } from '../rng';
import { LoraAdapters, mergeLora, ShapeLike } from '../peft/lora';
import { vitShapes } from '../peft/shapes';
import { patchify } from './patchify';
import { SatMaeTemporal, Timestamps, timeCode, timestampValues } from './satmae-temporal';

export interface SatMaeTemporalVitConfig {
  imgSize: number | readonly [number, number];
  patchSize: number;
  inChans: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpRatio: number;
  qkvBias: boolean;
  normEps: number;
  /** Images per sample (fMoW-temporal: 3; the official model indexes exactly three). */
  frames: number;
  /** Width of each of the three time codes (SatMAE: 128, hard-coded upstream). */
  timeEmbedDim: number;
  pool: 'avg' | 'cls';
  numClasses: number;
  dropPathRate: number;
}

const KEYS: readonly (keyof SatMaeTemporalVitConfig)[] = [
  'imgSize', 'patchSize', 'inChans', 'embedDim', 'depth', 'numHeads', 'mlpRatio', 'qkvBias', 'normEps', 'frames', 'timeEmbedDim',
  'pool', 'numClasses', 'dropPathRate',
];

const BASE: Omit<SatMaeTemporalVitConfig, 'embedDim' | 'depth' | 'numHeads'> = {
  imgSize: 224,
  patchSize: 16,
  inChans: 3,
  mlpRatio: 4,
  qkvBias: true,
  normEps: 1e-6,
  frames: 3,
  timeEmbedDim: 128,
  pool: 'avg',
  numClasses: 62,
  dropPathRate: 0.2,
};

/** Presets (224 px, patch 16, fMoW's 62 classes). */
export const SATMAE_TEMPORAL_VIT_PRESETS = {
  satmae_temporal_vit_base_patch16: { ...BASE, embedDim: 768, depth: 12, numHeads: 12 },
  satmae_temporal_vit_large_patch16: { ...BASE, embedDim: 1024, depth: 24, numHeads: 16 },
} satisfies Record<string, SatMaeTemporalVitConfig>;

export type SatMaeTemporalVitPresetName = keyof typeof SATMAE_TEMPORAL_VIT_PRESETS;

export function satMaeTemporalVitConfig(
  preset: SatMaeTemporalVitPresetName | SatMaeTemporalVitConfig,
  overrides: Partial<SatMaeTemporalVitConfig> = {},
): SatMaeTemporalVitConfig {
  const base: SatMaeTemporalVitConfig = typeof preset === 'string' ? lookup('SatMAE temporal classifier preset', SATMAE_TEMPORAL_VIT_PRESETS, preset) : preset;
  checkKeys('SatMaeTemporalVitConfig', overrides, KEYS);
  const c: SatMaeTemporalVitConfig = { ...base, ...overrides };
  checkKeys('SatMaeTemporalVitConfig', c, KEYS);
  const posInt = (k: string, v: number, zero = false): void => {
    if (!Number.isInteger(v) || v < (zero ? 0 : 1)) throw new Error(`SatMaeTemporalVitConfig.${k}: expected a ${zero ? 'non-negative' : 'positive'} integer, got ${v}`);
  };
  for (const k of ['patchSize', 'inChans', 'embedDim', 'depth', 'numHeads', 'frames', 'timeEmbedDim'] as const) posInt(k, c[k]);
  posInt('numClasses', c.numClasses, true);
  const [h, w] = imgHW(c);
  posInt('imgSize', h);
  posInt('imgSize', w);
  if (h % c.patchSize || w % c.patchSize) throw new Error(`SatMaeTemporalVitConfig.imgSize: ${h}x${w} is not divisible by patchSize ${c.patchSize}`);
  if (c.embedDim % c.numHeads) throw new Error(`SatMaeTemporalVitConfig.embedDim: ${c.embedDim} is not divisible by numHeads ${c.numHeads}`);
  const sp = c.embedDim - 3 * c.timeEmbedDim;
  if (sp <= 0 || sp % 4 || c.timeEmbedDim % 2) {
    throw new Error(`SatMaeTemporalVitConfig: embedDim ${c.embedDim} − 3·timeEmbedDim ${c.timeEmbedDim} = ${sp} must be a positive multiple of 4 (and timeEmbedDim even)`);
  }
  if (c.pool !== 'avg' && c.pool !== 'cls') throw new Error(`SatMaeTemporalVitConfig.pool: expected 'avg' or 'cls', got ${String(c.pool)}`);
  if (!(c.dropPathRate >= 0 && c.dropPathRate < 1)) throw new Error(`SatMaeTemporalVitConfig.dropPathRate: expected a number in [0, 1), got ${c.dropPathRate}`);
  return Object.freeze(c);
}

export interface SatMaeTemporalVitParams {
  cls_token: tf.Variable;
  /** [1, 1 + L, D − 3·Tc], learnable */
  pos_embed: tf.Variable;
  patch_embed: { proj: { weight: tf.Variable; bias: tf.Variable } };
  blocks: BlockParams[];
  norm?: NormParams;
  fc_norm?: NormParams;
  head?: LinearParams;
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
  };
  if (config.pool === 'cls') params.norm = f.norm('norm', D);
  else params.fc_norm = f.norm('fc_norm', D);
  if (config.numClasses > 0) params.head = f.linear('head', D, config.numClasses, { kind: 'truncNormal', std: 0.02 });
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

/** Check a frame stack [B, T, H, W, C] against the config; returns [B, T, L]. */
export function checkTemporalFrames(cfg: SatMaeTemporalVitConfig, images: tf.Tensor): [number, number, number] {
  if (images.rank !== 5) {
    throw new Error(`SatMAE temporal classifier input: expected images [B, T, H, W, C] (T = ${cfg.frames} frames, NHWC), got shape [${images.shape}]`);
  }
  const [B, T, H, W, C] = images.shape;
  if (T !== cfg.frames) throw new Error(`SatMAE temporal classifier input: expected ${cfg.frames} frames, got ${T} (shape [${images.shape}])`);
  if (C !== cfg.inChans) throw new Error(`SatMAE temporal classifier input: expected ${cfg.inChans} bands per frame, got ${C} (shape [${images.shape}])`);
  const [h, w] = imgHW(cfg);
  if (H !== h || W !== w) throw new Error(`SatMAE temporal classifier input: frames are ${H}x${W}, the model is configured for ${h}x${w}`);
  return [B, T, (H / cfg.patchSize) * (W / cfg.patchSize)];
}

export interface SatMaeTemporalVitForwardOptions {
  training?: boolean;
  rng?: Rng | null;
  hooks?: VitHooks;
  dropPathRate?: number;
  checkpoint?: CheckpointOptions | null;
}

export interface SatMaeTemporalVitOutput {
  /** [B, 1 + T·L, D] after the last block, pre-norm */
  prenorm: tf.Tensor3D;
  /** [B, D] */
  pooled: tf.Tensor2D;
  /** [B, numClasses] or null */
  logits: tf.Tensor2D | null;
}

/** Input tokens [B, 1 + T·L, D]: shared patch embedding per frame + [position ‖ time code], CLS first. */
export function satMaeTemporalVitTokens(m: SatMaeTemporalVit, images: tf.Tensor5D, ts: Float64Array, env: ForwardEnv): tf.Tensor3D {
  const c = m.config;
  const [B, T, L] = checkTemporalFrames(c, images);
  const { patchSize: p, inChans: C, embedDim: D, timeEmbedDim: Tc } = c;
  const [, , H, W] = images.shape;
  const Dp = D - 3 * Tc;
  const frames = images.reshape([B * T, H, W, C]) as tf.Tensor4D; // frames on the batch axis
  const patches = patchify(frames, p); // [B·T, L, p²C] (ky, kx, c) like the [p, p, C, D] weight
  const pe = m.params.patch_embed.proj;
  const x = linearSite(env, 'patch_embed.proj', { weight: pe.weight.reshape([p * p * C, D]), bias: pe.bias }, patches, B).reshape([B, T * L, D]); // B samples of T frames; [B·T, L, D] → [B, T·L, D]
  const pos = tf.broadcastTo(m.params.pos_embed.slice([0, 1, 0], [1, L, Dp]).reshape([1, 1, L, Dp]), [B, T, L, Dp]); // same cell code in every frame
  const time = tf.broadcastTo(tf.tensor4d(timeCode(ts, B, T, Tc), [B, T, 1, 3 * Tc]), [B, T, L, 3 * Tc]); // same time code for all cells of a frame
  const code = tf.concat([pos, time], 3).reshape([B, T * L, D]); // [B, T, L, D] → [B, T·L, D]
  const clsCode = tf.concat([m.params.pos_embed.slice([0, 0, 0], [1, 1, Dp]), tf.zeros([1, 1, 3 * Tc])], 2); // [1, 1, D]
  const cls = tf.broadcastTo(tf.add(m.params.cls_token, clsCode), [B, 1, D]);
  return tf.concat([cls, tf.add(x, code)], 1) as tf.Tensor3D;
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
  checkKeys('satMaeTemporalVitForward options', opts, ['training', 'rng', 'hooks', 'dropPathRate', 'checkpoint']);
  const c = m.config;
  const [B, T] = checkTemporalFrames(c, images);
  const ts = timestampValues(timestamps, B, T);
  const env = makeEnv({ training: opts.training, rng: opts.rng ?? null, hooks: opts.hooks, checkpoint: opts.checkpoint });
  const tokens = satMaeTemporalVitTokens(m, images, ts, env);
  const rates = dropPathRates({ depth: c.depth, dropPathRate: opts.dropPathRate ?? c.dropPathRate, dropPathMode: 'linear' });
  let state: TokenState = { x: tokens, size: null, source: null };
  m.params.blocks.forEach((bp, i) => {
    const bo: BlockOptions = { prefix: `blocks.${i}`, index: i, numHeads: c.numHeads, eps: c.normEps, dropPath: rates[i] };
    state = env.checkpoint ? checkpointedBlock(blockForward, bp, state, bo, env, env.checkpoint) : blockForward(bp, state, bo, env);
  });
  const x = state.x;
  const [, N, D] = x.shape;
  let pooled: tf.Tensor2D;
  if (c.pool === 'avg') pooled = norm(m.params.fc_norm!, tf.mean(x.slice([0, 1, 0], [B, N - 1, D]), 1), c.normEps) as tf.Tensor2D;
  else pooled = (norm(m.params.norm!, x, c.normEps) as tf.Tensor3D).slice([0, 0, 0], [B, 1, D]).reshape([B, D]) as tf.Tensor2D;
  const logits = m.params.head ? (linearSite(env, 'head', m.params.head, pooled) as tf.Tensor2D) : null;
  return { prenorm: x, pooled, logits };
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
  checkKeys('satMaeTemporalVitFromMae overrides', overrides, ['pool', 'numClasses', 'dropPathRate']);
  const mc = mae.config;
  const config = satMaeTemporalVitConfig({
    ...BASE,
    imgSize: mc.imgSize,
    patchSize: mc.patchSize,
    inChans: mc.inChans,
    embedDim: mc.embedDim,
    depth: mc.depth,
    numHeads: mc.numHeads,
    mlpRatio: mc.mlpRatio,
    qkvBias: mc.qkvBias,
    normEps: mc.normEps,
    frames: mc.frames,
    timeEmbedDim: mc.timeEmbedDim,
    ...overrides,
  });
  const clf = createSatMaeTemporalVit(config, {}, { seed: opts.seed ?? 0 });
  const src = opts.lora ? mergeLora(maeEncoderTree(mae), opts.lora, { allowMissing: true }) : maeEncoderTree(mae);
  try {
    const from = flattenTree(src);
    for (const [k, v] of satMaeTemporalVitVariables(clf)) {
      if (/^(head|fc_norm)(\.|$)/.test(k)) continue;
      const s = from.get(k);
      if (!s) throw new Error(`satMaeTemporalVitFromMae: the MAE has no '${k}'`);
      if (s.shape.join() !== v.shape.join()) throw new Error(`satMaeTemporalVitFromMae: '${k}' is [${s.shape}] in the MAE, [${v.shape}] in the classifier`);
      v.assign(s);
    }
  } catch (e) {
    disposeSatMaeTemporalVit(clf);
    throw e;
  } finally {
    if (opts.lora) disposeTree(src);
  }
  return clf;
}
