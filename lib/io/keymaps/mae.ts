/**
 * MAE and SatMAE checkpoints ↔ the kit (facebookresearch/mae `models_mae.py`, `models_vit.py`, `main_pretrain.py`
 * `misc.save_model`; sustainlab-group/SatMAE `models_mae_group_channels.py`, `models_mae_temporal.py`,
 * `models_vit_group_channels.py`).
 *
 * The files are dicts with the state dict under `model` (select it with `readTorchCheckpoint(file, {select: 'model'})`
 * or the default 'auto'); the parameter names are the kit's own:
 * - encoder: `cls_token`, `pos_embed` (fixed sin-cos, stored), `patch_embed.proj.*` (SatMAE group:
 *   `patch_embed.<g>.proj.*` + `channel_embed`), `blocks.i.*`, `norm.*` (fine-tuned `models_vit` with global pool:
 *   `fc_norm.*` + `head.*` instead of `norm.*`);
 * - decoder (`mae_visualize_vit_large.pth`, `*_full.pth`, SatMAE pre-training checkpoints): `decoder_embed.*`,
 *   `mask_token` [1, 1, Dd], `decoder_pos_embed`, `decoder_blocks.i.*`, `decoder_norm.*`, `decoder_pred.*`
 *   (SatMAE group: `decoder_pred.<g>.*`, `decoder_channel_embed`).
 * `mae_pretrain_vit_large.pth` holds the encoder only (MAE issues #3/#8). With `encoderOnly: true` decoder keys are
 * reported as ignored, so a file with a decoder loads into a plain ViT.
 */
import type { SafeTensor } from '../safetensors';
import { KeyMap, MapBuilder, Mapped } from './common';

export interface MaeMapOptions {
  /** Treat decoder keys as ignored (load an MAE / SatMAE file into an encoder-only model). */
  encoderOnly?: boolean;
}

/** Decoder keys of MAE / SatMAE pre-training models. */
export const MAE_DECODER_KEY = /^(decoder_|mask_token$)/;

export const maeKeyMap: KeyMap<MaeMapOptions> = {
  name: 'mae',
  reference: 'facebookresearch/mae models_mae.py, models_vit.py; sustainlab-group/SatMAE models_mae_group_channels.py, models_mae_temporal.py',
  toKit(src: ReadonlyMap<string, SafeTensor>, opts: MaeMapOptions = {}): Mapped {
    const b = new MapBuilder(src, 'MAE checkpoint');
    let decoder = 0;
    for (const [k0, t] of src) {
      const k = k0.startsWith('module.') ? k0.slice(7) : k0;
      if (MAE_DECODER_KEY.test(k)) {
        decoder++;
        if (opts.encoderOnly) {
          b.skip(k0, 'ignored', 'MAE decoder (encoderOnly)');
          continue;
        }
      }
      b.put(k, t, [k0], 'loaded', k === k0 ? undefined : "prefix 'module.' removed");
    }
    const group = [...src.keys()].some((k) => /^patch_embed\.\d+\.proj\./.test(k));
    return b.finish({ info: { decoderKeys: decoder, satmaeGroup: group, channelEmbed: src.has('channel_embed') } });
  },
  fromKit(kit: ReadonlyMap<string, SafeTensor>): Map<string, SafeTensor> {
    return new Map(kit);
  },
};
