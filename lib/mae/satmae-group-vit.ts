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
 * - timm blocks with drop-path rates linear over depth (`torch.linspace(0, p, depth)`).
 * - Pool 'avg' (the official default, `global_pool=True`): mean of all G·L patch tokens of the last block output
 *   (pre-norm) → `fc_norm` → `head`; pool 'cls': `norm` → token 0 → `head`.
 * What trains under ExPLoRA's LoRA fine-tuning rule (name filter: `head`, `lora`, plus optional norms / cls /
 * patch_embed / unfrozen blocks): `pos_embed`, `channel_embed` and `channel_cls_embed` match none of the names, so
 * they stay frozen even though the module declares them as parameters.
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys, lookup } from '../check';
import { flattenTree, disposeTree, countParams, ParamTree } from '../tree';
import { BlockParams, createBlockParams, LinearParams, NormParams, ParamFactory } from '../vit/params';
import { ForwardEnv, linearSite, makeEnv, norm, VitHooks, blockForward, BlockOptions, TokenState } from '../vit/forward';
import { imgHW, dropPathRates } from '../vit/config';
import { checkpointedBlock, CheckpointOptions } from '../vit/checkpoint';
import { sincos1d, sincos2d } from '../vit/posembed';
import { Rng } from '../rng';
import { LoraAdapters, mergeLora, ShapeLike } from '../peft/lora';
import { vitShapes } from '../peft/shapes';
import { BandLayout, SatMaeGroup, SatMaeGroupConfig, SATMAE_SENTINEL2_BANDS, bandLayout, groupTokens, selectKeptBands } from './satmae-group';

export interface SatMaeGroupVitConfig {
  imgSize: number | readonly [number, number];
  patchSize: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpRatio: number;
  qkvBias: boolean;
  normEps: number;
  bands: readonly string[];
  dropBands: readonly string[];
  groups: readonly (readonly string[])[];
  /** Width Dc of the group code (SatMAE: 256). */
  channelEmbedDim: number;
  /** 'avg' (SatMAE / ExPLoRA default `global_pool`) or 'cls'. */
  pool: 'avg' | 'cls';
  /** Classes of the head (fMoW: 62, EuroSAT: 10); 0 = no head. */
  numClasses: number;
  /** Maximum drop-path rate (timm linear rule over depth). ExPLoRA fine-tuning: 0.2. */
  dropPathRate: number;
}

const KEYS: readonly (keyof SatMaeGroupVitConfig)[] = [
  'imgSize', 'patchSize', 'embedDim', 'depth', 'numHeads', 'mlpRatio', 'qkvBias', 'normEps', 'bands', 'dropBands', 'groups',
  'channelEmbedDim', 'pool', 'numClasses', 'dropPathRate',
];

const BASE: Omit<SatMaeGroupVitConfig, 'embedDim' | 'depth' | 'numHeads'> = {
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
  pool: 'avg',
  numClasses: 62,
  dropPathRate: 0.2,
};

/** Presets (96 px, patch 8, fMoW-Sentinel's 62 classes; EuroSAT: `{numClasses: 10}`). */
export const SATMAE_GROUP_VIT_PRESETS = {
  satmae_group_vit_base_patch8: { ...BASE, embedDim: 768, depth: 12, numHeads: 12 },
  satmae_group_vit_large_patch8: { ...BASE, embedDim: 1024, depth: 24, numHeads: 16 },
} satisfies Record<string, SatMaeGroupVitConfig>;

export type SatMaeGroupVitPresetName = keyof typeof SATMAE_GROUP_VIT_PRESETS;

/** Build a validated config from a preset (or a full config) plus overrides. */
export function satMaeGroupVitConfig(
  preset: SatMaeGroupVitPresetName | SatMaeGroupVitConfig,
  overrides: Partial<SatMaeGroupVitConfig> = {},
): SatMaeGroupVitConfig {
  const base: SatMaeGroupVitConfig = typeof preset === 'string' ? lookup('SatMAE group classifier preset', SATMAE_GROUP_VIT_PRESETS, preset) : preset;
  checkKeys('SatMaeGroupVitConfig', overrides, KEYS);
  const c: SatMaeGroupVitConfig = { ...base, ...overrides };
  checkKeys('SatMaeGroupVitConfig', c, KEYS);
  const posInt = (k: string, v: number, zero = false): void => {
    if (!Number.isInteger(v) || v < (zero ? 0 : 1)) throw new Error(`SatMaeGroupVitConfig.${k}: expected a ${zero ? 'non-negative' : 'positive'} integer, got ${v}`);
  };
  for (const k of ['patchSize', 'embedDim', 'depth', 'numHeads', 'channelEmbedDim'] as const) posInt(k, c[k]);
  posInt('numClasses', c.numClasses, true);
  const [h, w] = imgHW(c);
  posInt('imgSize', h);
  posInt('imgSize', w);
  if (h % c.patchSize || w % c.patchSize) throw new Error(`SatMaeGroupVitConfig.imgSize: ${h}x${w} is not divisible by patchSize ${c.patchSize}`);
  if (c.embedDim % c.numHeads) throw new Error(`SatMaeGroupVitConfig.embedDim: ${c.embedDim} is not divisible by numHeads ${c.numHeads}`);
  const pw = c.embedDim - c.channelEmbedDim;
  if (pw <= 0 || pw % 4 || c.channelEmbedDim % 2) {
    throw new Error(`SatMaeGroupVitConfig: embedDim ${c.embedDim} − channelEmbedDim ${c.channelEmbedDim} = ${pw} must be a positive multiple of 4 (and channelEmbedDim even)`);
  }
  if (c.pool !== 'avg' && c.pool !== 'cls') throw new Error(`SatMaeGroupVitConfig.pool: expected 'avg' or 'cls', got ${String(c.pool)}`);
  if (!(c.dropPathRate >= 0 && c.dropPathRate < 1)) throw new Error(`SatMaeGroupVitConfig.dropPathRate: expected a number in [0, 1), got ${c.dropPathRate}`);
  bandLayout(c);
  return Object.freeze(c);
}

export interface SatMaeGroupVitParams {
  cls_token: tf.Variable;
  /** [1, 1 + L, D − Dc], learnable */
  pos_embed: tf.Variable;
  /** [1, G, Dc], learnable */
  channel_embed: tf.Variable;
  /** [1, 1, Dc], learnable, zero at init */
  channel_cls_embed: tf.Variable;
  /** one per group: weight [p, p, |g|, D], bias [D] */
  patch_embed: { proj: { weight: tf.Variable; bias: tf.Variable } }[];
  blocks: BlockParams[];
  /** pool 'cls' only */
  norm?: NormParams;
  /** pool 'avg' only */
  fc_norm?: NormParams;
  head?: LinearParams;
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
  };
  if (config.pool === 'cls') params.norm = f.norm('norm', D);
  else params.fc_norm = f.norm('fc_norm', D);
  if (config.numClasses > 0) params.head = f.linear('head', D, config.numClasses, { kind: 'truncNormal', std: 0.02 });
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

export interface SatMaeGroupVitForwardOptions {
  training?: boolean;
  rng?: Rng | null;
  hooks?: VitHooks;
  /** Override the configured maximum drop-path rate for this call. */
  dropPathRate?: number;
  /** Activation recomputation per block (see lib/vit/checkpoint.ts). */
  checkpoint?: CheckpointOptions | null;
}

export interface SatMaeGroupVitOutput {
  /** All tokens after the last block, pre-norm [B, 1 + G·L, D]. */
  prenorm: tf.Tensor3D;
  /** What the head sees [B, D]. */
  pooled: tf.Tensor2D;
  /** [B, numClasses] or null without a head. */
  logits: tf.Tensor2D | null;
}

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
  checkKeys('satMaeGroupVitForward options', opts, ['training', 'rng', 'hooks', 'dropPathRate', 'checkpoint']);
  const c = m.config;
  const env = makeEnv({ training: opts.training, rng: opts.rng ?? null, hooks: opts.hooks, checkpoint: opts.checkpoint });
  const tokens = satMaeGroupVitTokens(m, images, env);
  const rates = dropPathRates({ depth: c.depth, dropPathRate: opts.dropPathRate ?? c.dropPathRate, dropPathMode: 'linear' });
  let state: TokenState = { x: tokens, size: null, source: null };
  m.params.blocks.forEach((bp, i) => {
    const bo: BlockOptions = { prefix: `blocks.${i}`, index: i, numHeads: c.numHeads, eps: c.normEps, dropPath: rates[i] };
    state = env.checkpoint ? checkpointedBlock(blockForward, bp, state, bo, env, env.checkpoint) : blockForward(bp, state, bo, env);
  });
  const x = state.x;
  const [B, T, D] = x.shape;
  let pooled: tf.Tensor2D;
  if (c.pool === 'avg') {
    const mean = tf.mean(x.slice([0, 1, 0], [B, T - 1, D]), 1); // global pool over the G·L patch tokens, CLS excluded
    pooled = norm(m.params.fc_norm!, mean, c.normEps) as tf.Tensor2D;
  } else {
    pooled = (norm(m.params.norm!, x, c.normEps) as tf.Tensor3D).slice([0, 0, 0], [B, 1, D]).reshape([B, D]) as tf.Tensor2D;
  }
  const logits = m.params.head ? (linearSite(env, 'head', m.params.head, pooled) as tf.Tensor2D) : null;
  return { prenorm: x, pooled, logits };
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
  checkKeys('satMaeGroupVitFromMae overrides', overrides, ['pool', 'numClasses', 'dropPathRate']);
  const mc: SatMaeGroupConfig = mae.config;
  const config = satMaeGroupVitConfig({
    ...BASE,
    imgSize: mc.imgSize,
    patchSize: mc.patchSize,
    embedDim: mc.embedDim,
    depth: mc.depth,
    numHeads: mc.numHeads,
    mlpRatio: mc.mlpRatio,
    qkvBias: mc.qkvBias,
    normEps: mc.normEps,
    bands: mc.bands,
    dropBands: mc.dropBands,
    groups: mc.groups,
    channelEmbedDim: mc.channelEmbedDim,
    ...overrides,
  });
  const clf = createSatMaeGroupVit(config, {}, { seed: opts.seed ?? 0 });
  const src = opts.lora ? mergeLora(maeEncoderTree(mae), opts.lora, { allowMissing: true }) : maeEncoderTree(mae);
  try {
    const from = flattenTree(src);
    for (const [k, v] of satMaeGroupVitVariables(clf)) {
      if (/^(head|fc_norm|channel_cls_embed)(\.|$)/.test(k)) continue;
      const s = from.get(k);
      if (!s) throw new Error(`satMaeGroupVitFromMae: the MAE has no '${k}'`);
      if (s.shape.join() !== v.shape.join()) throw new Error(`satMaeGroupVitFromMae: '${k}' is [${s.shape}] in the MAE, [${v.shape}] in the classifier`);
      v.assign(s);
    }
  } catch (e) {
    disposeSatMaeGroupVit(clf);
    throw e;
  } finally {
    if (opts.lora) disposeTree(src);
  }
  return clf;
}
