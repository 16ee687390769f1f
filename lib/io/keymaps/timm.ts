/**
 * timm `VisionTransformer` state dicts as a key map (the layout folding itself is io/timm.ts `timmToKit`, checked
 * against real timm): `reg_token` → `register_tokens` (+ register positions folded in when timm's table covers them),
 * `pos_embed` re-laid to the kit's [1, 1+N, D] table; every other key is the kit's own. `fromKit` is the exact inverse
 * (io/timm.ts `kitToTimmLayout`, which `timmStateDict` also writes with).
 */
import type { SafeTensor } from '../safetensors';
import { kitToTimmLayout, timmToKit } from '../timm';
import { KeyMap, MapBuilder, Mapped } from './common';

export interface TimmMapOptions {
  /** timm's `no_embed_class` (default: inferred from the table length, see io/timm.ts). */
  noEmbedClass?: boolean;
  /** Patch grid of the stored table (exact inference for non-square grids). */
  grid?: readonly [number, number];
}

export const timmKeyMap: KeyMap<TimmMapOptions> = {
  name: 'timm',
  reference: 'huggingface/pytorch-image-models timm/models/vision_transformer.py (VisionTransformer, _pos_embed)',
  toKit(src: ReadonlyMap<string, SafeTensor>, opts: TimmMapOptions = {}): Mapped {
    const conv = timmToKit({ tensors: new Map(src), metadata: {} }, opts, 'timm state dict');
    const b = new MapBuilder(src, 'timm state dict');
    for (const [k, t] of conv.file.tensors) {
      if (k === 'register_tokens') {
        if (conv.noEmbedClass) b.put(k, t, ['reg_token'], 'loaded', "renamed from 'reg_token'");
        else b.put(k, t, ['reg_token', 'pos_embed'], 'converted', 'reg_token + its pos_embed rows');
      } else if (k === 'pos_embed') {
        if (conv.noEmbedClass) b.put(k, t, ['pos_embed'], 'converted', 'no_embed_class: zero CLS row prepended');
        else if (conv.numRegisters) b.put(k, t, ['pos_embed'], 'converted', 'register rows moved into register_tokens');
        else b.put(k, t, ['pos_embed']);
      }
      else b.put(k, t, [k]);
    }
    return b.finish({ info: { noEmbedClass: conv.noEmbedClass, registers: conv.numRegisters } });
  },
  fromKit(kit: ReadonlyMap<string, SafeTensor>, opts: TimmMapOptions = {}): Map<string, SafeTensor> {
    return kitToTimmLayout(kit, opts.noEmbedClass ?? false);
  },
};
