/**
 * Hugging Face transformers `Dinov2Model` / `Dinov2WithRegistersModel` / `ViTMAEModel` / `ViTMAEForPreTraining`
 * state dicts ↔ the kit. Names as written by the official conversion scripts (transformers
 * `models/dinov2/convert_dinov2_to_hf.py` `create_rename_keys` + `read_in_q_k_v`, `models/vit_mae/
 * convert_vit_mae_to_pytorch.py` `rename_key` + `convert_state_dict`) and the modeling files' module names
 * (`modeling_dinov2.py`: `Dinov2Layer` norm1 / attention.attention.{query,key,value} / attention.output.dense /
 * layer_scale1.lambda1 / norm2 / mlp.fc1 / mlp.fc2 / layer_scale2.lambda1; `modeling_vit_mae.py`: `ViTMAELayer`
 * layernorm_before / attention / layernorm_after / intermediate.dense / output.dense).
 *
 * The fused qkv of the kit is the concatenation of the separate query, key and value rows (Q, K, V, as the conversion
 * scripts split it); nothing else changes (same tensor layouts). HF's ViTMAE config uses LayerNorm eps 1e-12 by
 * default, not MAE's 1e-6: build the kit model from the repo's config.json (`vitConfigFromHf`), not from an MAE preset.
 */
import type { SafeTensor } from '../safetensors';
import { KeyMap, MapBuilder, Mapped, concat0, rows0 } from './common';

type Table = ReadonlyArray<[kit: string, hf: string]>;

const DINOV2_TOP: Table = [
  ['cls_token', 'embeddings.cls_token'],
  ['mask_token', 'embeddings.mask_token'],
  ['pos_embed', 'embeddings.position_embeddings'],
  ['register_tokens', 'embeddings.register_tokens'],
  ['patch_embed.proj.weight', 'embeddings.patch_embeddings.projection.weight'],
  ['patch_embed.proj.bias', 'embeddings.patch_embeddings.projection.bias'],
  ['norm.weight', 'layernorm.weight'],
  ['norm.bias', 'layernorm.bias'],
];
const DINOV2_LAYER: Table = [
  ['norm1', 'norm1'],
  ['attn.proj', 'attention.output.dense'],
  ['norm2', 'norm2'],
  ['mlp.fc1', 'mlp.fc1'],
  ['mlp.fc2', 'mlp.fc2'],
];
const DINOV2_SCALE: Table = [
  ['ls1.gamma', 'layer_scale1.lambda1'],
  ['ls2.gamma', 'layer_scale2.lambda1'],
];
const MAE_TOP: Table = [
  ['cls_token', 'embeddings.cls_token'],
  ['pos_embed', 'embeddings.position_embeddings'],
  ['patch_embed.proj.weight', 'embeddings.patch_embeddings.projection.weight'],
  ['patch_embed.proj.bias', 'embeddings.patch_embeddings.projection.bias'],
  ['norm.weight', 'layernorm.weight'],
  ['norm.bias', 'layernorm.bias'],
];
const MAE_DECODER_TOP: Table = [
  ['decoder_embed.weight', 'decoder.decoder_embed.weight'],
  ['decoder_embed.bias', 'decoder.decoder_embed.bias'],
  ['mask_token', 'decoder.mask_token'],
  ['decoder_pos_embed', 'decoder.decoder_pos_embed'],
  ['decoder_norm.weight', 'decoder.decoder_norm.weight'],
  ['decoder_norm.bias', 'decoder.decoder_norm.bias'],
  ['decoder_pred.weight', 'decoder.decoder_pred.weight'],
  ['decoder_pred.bias', 'decoder.decoder_pred.bias'],
];
const MAE_LAYER: Table = [
  ['norm1', 'layernorm_before'],
  ['attn.proj', 'attention.output.dense'],
  ['norm2', 'layernorm_after'],
  ['mlp.fc1', 'intermediate.dense'],
  ['mlp.fc2', 'output.dense'],
];
const QKV = ['query', 'key', 'value'] as const;

interface Layout {
  name: string;
  top: Table;
  layer: Table;
  /** per-layer tensors that are not `.weight`/`.bias` pairs */
  layerExact: Table;
  /** [kit block prefix, hf layer prefix] */
  stacks: ReadonlyArray<[string, string]>;
}

function toKitWith(lay: Layout, src: ReadonlyMap<string, SafeTensor>, strip: string, ignore: ReadonlyArray<[RegExp, string]>): Mapped {
  const b = new MapBuilder(src, `${lay.name} state dict`);
  const key = (k: string): string => strip + k;
  const fromHf = new Map<string, string>(); // hf name (without strip) → kit name, for 1:1 renames
  for (const [kit, hf] of lay.top) fromHf.set(hf, kit);
  for (const k of src.keys()) {
    if (!k.startsWith(strip)) continue;
    const bare = k.slice(strip.length);
    for (const [kitStack, hfStack] of lay.stacks) {
      const m = new RegExp(`^${hfStack.replace(/\./g, '\\.')}\\.(\\d+)\\.(.*)$`).exec(bare);
      if (!m) continue;
      for (const [kit, hf] of lay.layer) for (const p of ['weight', 'bias']) if (m[2] === `${hf}.${p}`) fromHf.set(bare, `${kitStack}.${m[1]}.${kit}.${p}`);
      for (const [kit, hf] of lay.layerExact) if (m[2] === hf) fromHf.set(bare, `${kitStack}.${m[1]}.${kit}`);
    }
  }
  const layers = new Set<string>();
  for (const [k, t] of src) {
    for (const [re, why] of ignore) {
      if (re.test(k)) {
        b.skip(k, 'ignored', why);
        break;
      }
    }
    if (b.used.has(k)) continue;
    if (!k.startsWith(strip)) continue;
    const bare = k.slice(strip.length);
    if (/\.mlp\.weights_(in|out)\./.test(bare)) throw new Error(`${lay.name} state dict: '${k}' is a SwiGLU FFN (ViT-g), which the kit's ViT does not implement`);
    const kit = fromHf.get(bare);
    if (kit) {
      b.put(kit, t, [k], 'loaded', `renamed from ${lay.name}`);
      continue;
    }
    for (const [kitStack, hfStack] of lay.stacks) {
      const m = new RegExp(`^(${hfStack.replace(/\./g, '\\.')}\\.\\d+)\\.attention\\.attention\\.(query|key|value)\\.(weight|bias)$`).exec(bare);
      if (m) layers.add(`${kitStack}|${m[1]}|${m[3]}`);
    }
  }
  for (const l of layers) {
    const [kitStack, hfLayer, p] = l.split('|');
    const idx = hfLayer.slice(hfLayer.lastIndexOf('.') + 1);
    const keys = QKV.map((q) => key(`${hfLayer}.attention.attention.${q}.${p}`));
    const missing = keys.filter((x) => !src.has(x));
    if (missing.length) throw new Error(`${lay.name} state dict: ${missing.join(', ')} missing (query, key and value are fused into one qkv)`);
    const target = `${kitStack}.${idx}.attn.qkv.${p}`;
    b.put(target, concat0(keys.map((x) => src.get(x)!), `${lay.name} state dict: ${keys.join(' + ')} → '${target}'`), keys, 'converted', 'query, key, value rows fused into qkv');
  }
  return b.finish();
}

function fromKitWith(lay: Layout, kit: ReadonlyMap<string, SafeTensor>, prefix: (kitKey: string) => string): Map<string, SafeTensor> {
  const out = new Map<string, SafeTensor>();
  const byKit = new Map<string, string>(lay.top.map(([k, h]) => [k, h]));
  for (const [k, t] of kit) {
    const top = byKit.get(k);
    if (top) {
      out.set(prefix(k) + top, t);
      continue;
    }
    let done = false;
    for (const [kitStack, hfStack] of lay.stacks) {
      const m = new RegExp(`^${kitStack.replace(/\./g, '\\.')}\\.(\\d+)\\.(.*)$`).exec(k);
      if (!m) continue;
      const base = `${prefix(k)}${hfStack}.${m[1]}`;
      const q = /^attn\.qkv\.(weight|bias)$/.exec(m[2]);
      if (q) {
        const D = t.shape[0] / 3;
        QKV.forEach((n, i) => out.set(`${base}.attention.attention.${n}.${q[1]}`, rows0(t, i * D, D)));
        done = true;
        break;
      }
      for (const [kk, hh] of lay.layer) {
        for (const p of ['weight', 'bias']) {
          if (m[2] === `${kk}.${p}`) {
            out.set(`${base}.${hh}.${p}`, t);
            done = true;
          }
        }
      }
      for (const [kk, hh] of lay.layerExact) {
        if (m[2] === kk) {
          out.set(`${base}.${hh}`, t);
          done = true;
        }
      }
      if (done) break;
    }
    if (!done) throw new Error(`${lay.name}: kit parameter '${k}' has no ${lay.name} name`);
  }
  return out;
}

const DINOV2: Layout = { name: 'HF Dinov2', top: DINOV2_TOP, layer: DINOV2_LAYER, layerExact: DINOV2_SCALE, stacks: [['blocks', 'encoder.layer']] };
const VITMAE: Layout = {
  name: 'HF ViTMAE',
  top: [...MAE_TOP, ...MAE_DECODER_TOP],
  layer: MAE_LAYER,
  layerExact: [],
  stacks: [
    ['blocks', 'encoder.layer'],
    ['decoder_blocks', 'decoder.decoder_layers'],
  ],
};

export interface HfDinov2MapOptions {
  /** fromKit: prefix for `Dinov2ForImageClassification` ('dinov2.'); default none (`Dinov2Model`). */
  prefix?: string;
}

export const hfDinov2KeyMap: KeyMap<HfDinov2MapOptions> = {
  name: 'hf-dinov2',
  reference: 'huggingface/transformers models/dinov2/convert_dinov2_to_hf.py, modeling_dinov2.py',
  toKit(src: ReadonlyMap<string, SafeTensor>): Mapped {
    const strip = [...src.keys()].some((k) => k.startsWith('dinov2.')) ? 'dinov2.' : '';
    const m = toKitWith(DINOV2, src, strip, [[/^classifier\./, "Dinov2ForImageClassification head (it reads [CLS, mean patch]; not the kit's head)"]]);
    return { ...m, info: { prefix: strip, registers: src.get(`${strip}embeddings.register_tokens`)?.shape[1] ?? 0 } };
  },
  fromKit(kit: ReadonlyMap<string, SafeTensor>, opts: HfDinov2MapOptions = {}): Map<string, SafeTensor> {
    return fromKitWith(DINOV2, kit, () => opts.prefix ?? '');
  },
};

export interface HfVitMaeMapOptions {
  /** fromKit: 'ViTMAEModel' (encoder keys unprefixed; default when there are no decoder keys) or 'ViTMAEForPreTraining' ('vit.' + 'decoder.'). */
  arch?: 'ViTMAEModel' | 'ViTMAEForPreTraining';
}

export const hfVitMaeKeyMap: KeyMap<HfVitMaeMapOptions> = {
  name: 'hf-vitmae',
  reference: 'huggingface/transformers models/vit_mae/convert_vit_mae_to_pytorch.py, modeling_vit_mae.py',
  toKit(src: ReadonlyMap<string, SafeTensor>): Mapped {
    const pre = [...src.keys()].some((k) => k.startsWith('vit.'));
    // encoder keys carry 'vit.' in ViTMAEForPreTraining; decoder keys never do
    const renamed = new Map<string, SafeTensor>();
    const back = new Map<string, string>();
    for (const [k, t] of src) {
      const bare = pre && k.startsWith('vit.') ? k.slice(4) : k;
      renamed.set(bare, t);
      back.set(bare, k);
    }
    const m = toKitWith(VITMAE, renamed, '', []);
    for (const r of m.rows) r.sources = r.sources.map((s) => back.get(s) ?? s);
    return { ...m, info: { arch: pre ? 'ViTMAEForPreTraining' : 'ViTMAEModel' } };
  },
  fromKit(kit: ReadonlyMap<string, SafeTensor>, opts: HfVitMaeMapOptions = {}): Map<string, SafeTensor> {
    const hasDecoder = [...kit.keys()].some((k) => /^(decoder_|mask_token$)/.test(k));
    const arch = opts.arch ?? (hasDecoder ? 'ViTMAEForPreTraining' : 'ViTMAEModel');
    if (arch === 'ViTMAEModel' && hasDecoder) throw new Error("hf-vitmae: the kit tensors include a decoder; use arch 'ViTMAEForPreTraining'");
    return fromKitWith(VITMAE, kit, (k) => (arch === 'ViTMAEForPreTraining' && !/^(decoder_|mask_token$)/.test(k) ? 'vit.' : ''));
  },
};
