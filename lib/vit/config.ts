/**
 * ViT configuration: one typed record, presets as data, and `vitConfig(preset, overrides)` which validates and fills.
 *
 * Sizes follow timm / DINOv2 / MAE (timm `vision_transformer.py`, DINOv2 `vision_transformer.py`
 * `vit_small`…`vit_giant2`, MAE `models_mae.py`). Presets:
 * - timm-style supervised / MAE fine-tune encoders: `vit_{tiny,small,base,large}_patch{16,14}_224`;
 * - DINOv2 backbones as released (img 518, patch 14, LayerScale, mask token): `vit_{small,base,large}_patch14_dinov2`
 *   (+ `_reg4` variants with 4 register tokens);
 * - MAE encoders (fixed 2-D sin-cos position embedding, xavier init): `mae_vit_{base,large}_patch16`, and MAE's
 *   fine-tuning model with average pooling (`global_pool`: mean of the patch tokens, then `fc_norm`; no final norm), as
 *   PYRA's MAE experiments use it: `mae_vit_{base,large}_patch16_avg`;
 * - DeiT (timm `deit_*_patch16_224`, same architecture as the ViT presets of that size) and DeiT distilled
 *   (`deit_*_distilled_patch16_224`, timm `VisionTransformerDistilled`): a distillation token after CLS whose position
 *   the table also covers, and a second head `head_dist`; see `distillToken`.
 * ViT-g/14 (SwiGLU FFN) is not provided: ExPLoRA's reported runs use B and L only.
 */
import { checkKeys, fmtValue, lookup } from '../check';

export interface VitConfig {
  /** Input size (square, or [height, width]); must be divisible by `patchSize`. */
  imgSize: number | readonly [number, number];
  patchSize: number;
  inChans: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  /** MLP hidden width = mlpRatio · embedDim. */
  mlpRatio: number;
  qkvBias: boolean;
  /** LayerScale init value (DINOv2: 1e-5 for training from scratch, 1.0 in the hub builder), or null for none. */
  layerScale: number | null;
  /** Register tokens (DINOv2 reg variants), inserted after CLS and after position embeddings. */
  numRegisters: number;
  /**
   * DeiT distillation token (timm `VisionTransformerDistilled`): `dist_token` [1, 1, D] right after CLS, positioned by
   * the table (pos_embed [1, 2 + N, D]), and `head_dist` on it. Inference averages the two heads' logits (DeiT);
   * training returns both (see `VitOutput.logits`). Needs pool 'cls' and no registers.
   */
  distillToken: boolean;
  /** DINOv2 mask token [1, D] replacing masked patch embeddings (iBOT). */
  maskToken: boolean;
  /** 'learned' (timm/DINOv2) or fixed 2-D 'sincos' (MAE, stored as a frozen variable). */
  posEmbed: 'learned' | 'sincos';
  /** Grid side the stored position embedding was made for (DINOv2: 37 = 518/14). Default: the input grid. */
  posEmbedGrid: number | readonly [number, number] | null;
  /**
   * How a learned pos-embed is resized to another grid: 'size-antialias' = timm's `resample_abs_pos_embed`
   * (PyTorch bicubic with antialias=True; timm presets), 'size' = PyTorch bicubic without antialias (MAE's
   * interpolate_pos_embed), 'dinov2-offset' = DINOv2's scale factor with +0.1 (DINOv2 presets).
   */
  posEmbedInterp: 'size' | 'size-antialias' | 'dinov2-offset';
  /** LayerNorm epsilon (1e-6 in DINOv2, MAE, SatMAE, timm ViT). */
  normEps: number;
  /** 'cls' → norm then CLS token; 'avg' → mean of patch tokens (pre-norm) then fc_norm (MAE fine-tune, ExPLoRA fine-tune). */
  pool: 'cls' | 'avg';
  /** Classes of the linear head; 0 = no head. */
  numClasses: number;
  /** Maximum stochastic-depth rate. */
  dropPathRate: number;
  /** 'linear' over depth 0 → rate (timm, MAE) or 'uniform' (DINOv2 drop_path_uniform). */
  dropPathMode: 'linear' | 'uniform';
  /** Initialisation family: 'timm' and 'dinov2' (trunc-normal 0.02) or 'mae' (xavier-uniform). */
  init: 'timm' | 'dinov2' | 'mae';
}

export const VIT_CONFIG_KEYS: readonly (keyof VitConfig)[] = [
  'imgSize', 'patchSize', 'inChans', 'embedDim', 'depth', 'numHeads', 'mlpRatio', 'qkvBias', 'layerScale',
  'numRegisters', 'distillToken', 'maskToken', 'posEmbed', 'posEmbedGrid', 'posEmbedInterp', 'normEps', 'pool', 'numClasses',
  'dropPathRate', 'dropPathMode', 'init',
];

const BASE: VitConfig = {
  imgSize: 224,
  patchSize: 16,
  inChans: 3,
  embedDim: 768,
  depth: 12,
  numHeads: 12,
  mlpRatio: 4,
  qkvBias: true,
  layerScale: null,
  numRegisters: 0,
  distillToken: false,
  maskToken: false,
  posEmbed: 'learned',
  posEmbedGrid: null,
  posEmbedInterp: 'size-antialias',
  normEps: 1e-6,
  pool: 'cls',
  numClasses: 0,
  dropPathRate: 0,
  dropPathMode: 'linear',
  init: 'timm',
};

/** ViT widths, depths and heads by size name (ViT paper Table 1; tiny: DeiT). */
export const VIT_SIZES = {
  tiny: { embedDim: 192, depth: 12, numHeads: 3 },
  small: { embedDim: 384, depth: 12, numHeads: 6 },
  base: { embedDim: 768, depth: 12, numHeads: 12 },
  large: { embedDim: 1024, depth: 24, numHeads: 16 },
} as const;

const DINOV2 = {
  imgSize: 518,
  patchSize: 14,
  layerScale: 1.0,
  maskToken: true,
  posEmbedInterp: 'dinov2-offset',
  init: 'dinov2',
  dropPathMode: 'uniform',
} as const;

const MAE = { posEmbed: 'sincos', init: 'mae', posEmbedInterp: 'size' } as const;

/** Named presets (timm-style names). */
export const VIT_PRESETS = {
  vit_tiny_patch16_224: { ...BASE, ...VIT_SIZES.tiny },
  vit_small_patch16_224: { ...BASE, ...VIT_SIZES.small },
  vit_base_patch16_224: { ...BASE, ...VIT_SIZES.base },
  vit_large_patch16_224: { ...BASE, ...VIT_SIZES.large },
  vit_tiny_patch14_224: { ...BASE, ...VIT_SIZES.tiny, patchSize: 14 },
  vit_small_patch14_224: { ...BASE, ...VIT_SIZES.small, patchSize: 14 },
  vit_base_patch14_224: { ...BASE, ...VIT_SIZES.base, patchSize: 14 },
  vit_large_patch14_224: { ...BASE, ...VIT_SIZES.large, patchSize: 14 },
  vit_small_patch14_dinov2: { ...BASE, ...VIT_SIZES.small, ...DINOV2 },
  vit_base_patch14_dinov2: { ...BASE, ...VIT_SIZES.base, ...DINOV2 },
  vit_large_patch14_dinov2: { ...BASE, ...VIT_SIZES.large, ...DINOV2 },
  vit_small_patch14_reg4_dinov2: { ...BASE, ...VIT_SIZES.small, ...DINOV2, numRegisters: 4 },
  vit_base_patch14_reg4_dinov2: { ...BASE, ...VIT_SIZES.base, ...DINOV2, numRegisters: 4 },
  vit_large_patch14_reg4_dinov2: { ...BASE, ...VIT_SIZES.large, ...DINOV2, numRegisters: 4 },
  mae_vit_base_patch16: { ...BASE, ...VIT_SIZES.base, ...MAE },
  mae_vit_large_patch16: { ...BASE, ...VIT_SIZES.large, ...MAE },
  mae_vit_base_patch16_avg: { ...BASE, ...VIT_SIZES.base, ...MAE, pool: 'avg' },
  mae_vit_large_patch16_avg: { ...BASE, ...VIT_SIZES.large, ...MAE, pool: 'avg' },
  deit_tiny_patch16_224: { ...BASE, ...VIT_SIZES.tiny },
  deit_small_patch16_224: { ...BASE, ...VIT_SIZES.small },
  deit_base_patch16_224: { ...BASE, ...VIT_SIZES.base },
  deit_tiny_distilled_patch16_224: { ...BASE, ...VIT_SIZES.tiny, distillToken: true },
  deit_small_distilled_patch16_224: { ...BASE, ...VIT_SIZES.small, distillToken: true },
  deit_base_distilled_patch16_224: { ...BASE, ...VIT_SIZES.base, distillToken: true },
} satisfies Record<string, VitConfig>;

export type VitPresetName = keyof typeof VIT_PRESETS;

/** Image size as [height, width]. */
export function imgHW(cfg: Pick<VitConfig, 'imgSize'>): [number, number] {
  return typeof cfg.imgSize === 'number' ? [cfg.imgSize, cfg.imgSize] : [cfg.imgSize[0], cfg.imgSize[1]];
}

/** Patch grid [rows, cols] for the configured image size. */
export function gridHW(cfg: Pick<VitConfig, 'imgSize' | 'patchSize'>): [number, number] {
  const [h, w] = imgHW(cfg);
  return [h / cfg.patchSize, w / cfg.patchSize];
}

/** Grid [rows, cols] the stored position embedding has. */
export function posGridHW(cfg: VitConfig): [number, number] {
  if (cfg.posEmbedGrid === null) return gridHW(cfg);
  return typeof cfg.posEmbedGrid === 'number' ? [cfg.posEmbedGrid, cfg.posEmbedGrid] : [cfg.posEmbedGrid[0], cfg.posEmbedGrid[1]];
}

/**
 * Validate a full config; throws naming the field, what was expected and what came (strings where numbers belong are
 * reported as strings, never coerced: `imgSize: '224'` is an error, as are NaN, Infinity and missing fields).
 */
export function validateVitConfig(cfg: VitConfig): VitConfig {
  if (cfg === null || typeof cfg !== 'object') throw new Error(`VitConfig: expected an object, got ${fmtValue(cfg)}`);
  checkKeys('VitConfig', cfg, VIT_CONFIG_KEYS);
  const fail = (k: keyof VitConfig, expected: string, got: unknown = cfg[k]): never => {
    throw new Error(`VitConfig.${k}: expected ${expected}, got ${fmtValue(got)}`);
  };
  const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;
  const posInt = (k: keyof VitConfig): void => {
    if (!isPosInt(cfg[k])) fail(k, 'a positive integer');
  };
  const bool = (k: keyof VitConfig): void => {
    if (typeof cfg[k] !== 'boolean') fail(k, 'true or false');
  };
  /** A positive integer, or a [rows, cols] pair of them. */
  const sizeLike = (k: 'imgSize' | 'posEmbedGrid'): void => {
    const v = cfg[k];
    const ok = isPosInt(v) || (Array.isArray(v) && v.length === 2 && v.every(isPosInt));
    if (!ok) fail(k, `a positive integer or a [height, width] pair of them${k === 'posEmbedGrid' ? ', or null' : ''}`);
  };
  const finite = (k: keyof VitConfig, expected: string, ok: (v: number) => boolean): void => {
    const v = cfg[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) fail(k, expected);
  };
  posInt('patchSize');
  posInt('inChans');
  posInt('embedDim');
  posInt('depth');
  posInt('numHeads');
  sizeLike('imgSize');
  const [h, w] = imgHW(cfg);
  if (h % cfg.patchSize || w % cfg.patchSize) {
    throw new Error(`VitConfig.imgSize: ${h}x${w} is not divisible by patchSize ${cfg.patchSize}`);
  }
  if (cfg.embedDim % cfg.numHeads) {
    throw new Error(`VitConfig.embedDim: ${cfg.embedDim} is not divisible by numHeads ${cfg.numHeads}`);
  }
  if (cfg.posEmbed === 'sincos' && cfg.embedDim % 4) {
    throw new Error(`VitConfig.embedDim: 2-D sin-cos position embedding needs embedDim divisible by 4, got ${cfg.embedDim}`);
  }
  finite('mlpRatio', 'a finite number > 0', (v) => v > 0);
  if (!Number.isInteger(cfg.mlpRatio * cfg.embedDim)) {
    throw new Error(`VitConfig.mlpRatio: ${cfg.mlpRatio}·${cfg.embedDim} is not an integer width`);
  }
  bool('qkvBias');
  bool('maskToken');
  if (cfg.layerScale !== null) finite('layerScale', 'a finite number ≥ 0 (the LayerScale init value) or null', (v) => v >= 0);
  finite('normEps', 'a finite number > 0 (LayerNorm epsilon, 1e-6 in timm/DINOv2/MAE)', (v) => v > 0);
  finite('dropPathRate', 'a number in [0, 1)', (v) => v >= 0 && v < 1);
  if (typeof cfg.numRegisters !== 'number' || !Number.isInteger(cfg.numRegisters) || cfg.numRegisters < 0) fail('numRegisters', 'an integer ≥ 0');
  if (typeof cfg.numClasses !== 'number' || !Number.isInteger(cfg.numClasses) || cfg.numClasses < 0) fail('numClasses', 'an integer ≥ 0');
  bool('distillToken');
  if (cfg.distillToken && cfg.pool !== 'cls') fail('distillToken', `false with pool '${cfg.pool}' (a distillation token needs pool 'cls', as DeiT)`);
  if (cfg.distillToken && cfg.numRegisters > 0) fail('distillToken', `false with ${cfg.numRegisters} register tokens (not supported together)`);
  const oneOf = <K extends keyof VitConfig>(k: K, valid: readonly unknown[]): void => {
    if (!valid.includes(cfg[k])) fail(k, `one of ${valid.map((x) => `'${String(x)}'`).join(', ')}`);
  };
  oneOf('posEmbed', ['learned', 'sincos']);
  oneOf('posEmbedInterp', ['size', 'size-antialias', 'dinov2-offset']);
  oneOf('pool', ['cls', 'avg']);
  oneOf('dropPathMode', ['linear', 'uniform']);
  oneOf('init', ['timm', 'dinov2', 'mae']);
  if (cfg.posEmbedGrid !== null) sizeLike('posEmbedGrid');
  return cfg;
}

/**
 * Build a validated config from a preset name (or a full config) plus overrides.
 * @example vitConfig('vit_small_patch16_224', {numClasses: 10, imgSize: 64})
 */
export function vitConfig(preset: VitPresetName | VitConfig, overrides: Partial<VitConfig> = {}): VitConfig {
  const base: VitConfig = typeof preset === 'string' ? lookup('ViT preset', VIT_PRESETS, preset) : preset;
  checkKeys(`vitConfig overrides`, overrides, VIT_CONFIG_KEYS);
  // an override given as undefined means "not given" (e.g. `{imgSize: small ? 64 : undefined}`)
  const given = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) as Partial<VitConfig>;
  const merged = { ...base, ...given };
  // A DINOv2 checkpoint keeps its 37×37 pos-embed when the input size changes: remember the stored grid.
  if (typeof preset === 'string' && given.imgSize !== undefined && given.posEmbedGrid === undefined && base.posEmbed === 'learned' && preset.includes('dinov2')) {
    merged.posEmbedGrid = gridHW(base);
  }
  return Object.freeze(validateVitConfig(merged));
}

/** Tokens before the patches that the position table covers: CLS (+ the DeiT distillation token). */
export function numPosPrefix(cfg: Pick<VitConfig, 'distillToken'>): number {
  return cfg.distillToken ? 2 : 1;
}

/** Tokens before the patches in the sequence: CLS, the distillation token, registers. */
export function numPrefixTokens(cfg: Pick<VitConfig, 'distillToken' | 'numRegisters'>): number {
  return numPosPrefix(cfg) + cfg.numRegisters;
}

/** Stochastic-depth rate of each block. */
export function dropPathRates(cfg: Pick<VitConfig, 'depth' | 'dropPathRate' | 'dropPathMode'>): number[] {
  const { depth, dropPathRate: p } = cfg;
  if (cfg.dropPathMode === 'uniform') return Array.from({ length: depth }, () => p);
  // torch.linspace(0, p, depth)
  return Array.from({ length: depth }, (_, i) => (depth === 1 ? 0 : (p * i) / (depth - 1)));
}

/** Width of the MLP hidden layer. */
export function mlpHidden(cfg: Pick<VitConfig, 'embedDim' | 'mlpRatio'>): number {
  return Math.round(cfg.embedDim * cfg.mlpRatio);
}
