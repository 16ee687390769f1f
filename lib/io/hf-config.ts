/**
 * Hugging Face transformers `config.json` ↔ kit configs for the models the kit can represent exactly:
 * `dinov2` / `dinov2_with_registers` (`Dinov2Config`: hidden_size, num_hidden_layers, num_attention_heads, mlp_ratio,
 * layer_norm_eps 1e-6, layerscale_value, image_size, patch_size, num_channels, qkv_bias, use_swiglu_ffn,
 * num_register_tokens) and `vit_mae` (`ViTMAEConfig`: intermediate_size, layer_norm_eps **1e-12** by default,
 * decoder_hidden_size / decoder_num_hidden_layers / decoder_num_attention_heads / decoder_intermediate_size).
 * Position tables are resized like transformers does: bicubic by output size, no antialias (`modeling_dinov2.py`
 * `interpolate_pos_encoding`) → kit 'size'. Refuses what the kit's ViT does not implement (SwiGLU, non-GELU
 * activations), naming the field.
 */
import { VitConfig, vitConfig } from '../vit/config';
import { DecoderConfig, decoderConfig } from '../mae/decoder';

export interface HfModelConfig {
  model_type: string;
  [k: string]: unknown;
}

export interface FromHfConfig {
  kind: 'dinov2' | 'vit_mae';
  /** The encoder as a kit ViT config. */
  vit: VitConfig;
  /** vit_mae: the decoder. */
  decoder?: DecoderConfig;
  maskRatio?: number;
  normPixLoss?: boolean;
}

const num = (cfg: HfModelConfig, k: string, d?: number): number => {
  const v = cfg[k] ?? d;
  if (typeof v !== 'number') throw new Error(`HF config: '${k}' is ${JSON.stringify(cfg[k])}, expected a number`);
  return v;
};

function size(cfg: HfModelConfig, k: string, d: number): number | [number, number] {
  const v = cfg[k] ?? d;
  if (Array.isArray(v) && v.length === 2) return [Number(v[0]), Number(v[1])];
  if (typeof v === 'number') return v;
  throw new Error(`HF config: '${k}' is ${JSON.stringify(v)}`);
}

/** Kit configs from a transformers config.json (dinov2, dinov2_with_registers, vit_mae). */
export function vitConfigFromHf(cfg: HfModelConfig, overrides: Partial<VitConfig> = {}): FromHfConfig {
  const act = cfg.hidden_act ?? 'gelu';
  if (act !== 'gelu') throw new Error(`HF config: hidden_act '${String(act)}' is not the kit's exact-erf GELU`);
  const common = {
    imgSize: size(cfg, 'image_size', 224),
    patchSize: num(cfg, 'patch_size', 16),
    inChans: num(cfg, 'num_channels', 3),
    embedDim: num(cfg, 'hidden_size'),
    depth: num(cfg, 'num_hidden_layers'),
    numHeads: num(cfg, 'num_attention_heads'),
    qkvBias: (cfg.qkv_bias ?? true) as boolean,
    numClasses: 0,
    posEmbedGrid: null, // the stored table covers image_size / patch_size
  };
  if (cfg.model_type === 'dinov2' || cfg.model_type === 'dinov2_with_registers') {
    if (cfg.use_swiglu_ffn) throw new Error("HF config: use_swiglu_ffn (ViT-g) is not implemented in the kit's ViT");
    return {
      kind: 'dinov2',
      vit: vitConfig('vit_small_patch14_dinov2', {
        ...common,
        mlpRatio: num(cfg, 'mlp_ratio', 4),
        normEps: num(cfg, 'layer_norm_eps', 1e-6),
        layerScale: num(cfg, 'layerscale_value', 1),
        numRegisters: cfg.model_type === 'dinov2_with_registers' ? num(cfg, 'num_register_tokens', 4) : 0,
        maskToken: (cfg.use_mask_token ?? true) as boolean,
        posEmbedInterp: 'size',
        ...overrides,
      }),
    };
  }
  if (cfg.model_type === 'vit_mae') {
    const D = common.embedDim;
    const Dd = num(cfg, 'decoder_hidden_size', 512);
    return {
      kind: 'vit_mae',
      vit: vitConfig('mae_vit_base_patch16', { ...common, mlpRatio: num(cfg, 'intermediate_size', 4 * D) / D, normEps: num(cfg, 'layer_norm_eps', 1e-12), ...overrides }),
      decoder: decoderConfig({
        embedDim: Dd,
        depth: num(cfg, 'decoder_num_hidden_layers', 8),
        numHeads: num(cfg, 'decoder_num_attention_heads', 16),
        mlpRatio: num(cfg, 'decoder_intermediate_size', 4 * Dd) / Dd,
        qkvBias: common.qkvBias,
        normEps: num(cfg, 'layer_norm_eps', 1e-12),
      }),
      maskRatio: num(cfg, 'mask_ratio', 0.75),
      normPixLoss: (cfg.norm_pix_loss ?? false) as boolean,
    };
  }
  throw new Error(`HF config: model_type '${cfg.model_type}' is not one the kit maps (dinov2, dinov2_with_registers, vit_mae)`);
}

/** A transformers config.json for a kit ViT (Dinov2Model / Dinov2WithRegistersModel, or ViTMAEModel / ForPreTraining). */
export function hfConfigFromKit(vit: VitConfig, kind: 'dinov2' | 'vit_mae', decoder?: DecoderConfig): HfModelConfig {
  const img = Array.isArray(vit.imgSize) ? [...vit.imgSize] : vit.imgSize;
  const base = {
    hidden_size: vit.embedDim,
    num_hidden_layers: vit.depth,
    num_attention_heads: vit.numHeads,
    image_size: img,
    patch_size: vit.patchSize,
    num_channels: vit.inChans,
    qkv_bias: vit.qkvBias,
    layer_norm_eps: vit.normEps,
    hidden_act: 'gelu',
  };
  if (kind === 'dinov2') {
    if (vit.layerScale === null) throw new Error('hfConfigFromKit: Dinov2 layers always have LayerScale; this ViT has none (export it as vit_mae or timm)');
    const reg = vit.numRegisters > 0;
    return {
      ...base,
      model_type: reg ? 'dinov2_with_registers' : 'dinov2',
      architectures: [reg ? 'Dinov2WithRegistersModel' : 'Dinov2Model'],
      mlp_ratio: vit.mlpRatio,
      layerscale_value: vit.layerScale,
      use_swiglu_ffn: false,
      use_mask_token: vit.maskToken,
      ...(reg ? { num_register_tokens: vit.numRegisters } : {}),
    };
  }
  if (vit.layerScale !== null || vit.numRegisters > 0) throw new Error('hfConfigFromKit: ViTMAE has no LayerScale or registers');
  return {
    ...base,
    model_type: 'vit_mae',
    architectures: [decoder ? 'ViTMAEForPreTraining' : 'ViTMAEModel'],
    intermediate_size: Math.round(vit.mlpRatio * vit.embedDim),
    ...(decoder
      ? {
          decoder_hidden_size: decoder.embedDim,
          decoder_num_hidden_layers: decoder.depth,
          decoder_num_attention_heads: decoder.numHeads,
          decoder_intermediate_size: Math.round(decoder.mlpRatio * decoder.embedDim),
        }
      : {}),
  };
}
