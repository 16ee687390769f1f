/**
 * `fromPretrained(repoId)`: a hub model repo → a kit model with its weights and the key report.
 *
 * - timm repos (`timm/vit_large_patch14_dinov2.lvd142m`, `timm/vit_base_patch16_224.augreg_in21k`, …): `config.json`
 *   holds `architecture` + `pretrained_cfg` (timm `_hub.py` `save_config_for_hf` / `load_model_config_from_hf`); the
 *   architecture's constructor arguments are those of its register function in timm `vision_transformer.py`
 *   (`TIMM_VIT_ARCHS` below), `img_size` / `in_chans` come from `pretrained_cfg.input_size` as timm's builder does
 *   (`_update_default_model_kwargs`), `model_args` in the config override them. Weights: `model.safetensors`, else
 *   `pytorch_model.bin` (read by the safe .pth reader), through the timm key map.
 * - transformers repos (`facebook/dinov2-large`, `facebook/vit-mae-large`): `config.json` with `model_type` dinov2 /
 *   dinov2_with_registers / vit_mae → kit configs (io/hf-config.ts), weights through the HF key maps.
 */
import * as fs from 'fs';
import { HubFile, HubOptions, hubDownload, hubDownloadFirst } from './hub';
import { ConvertedReport, loadConverted } from './convert';
import { vitConfigFromTimm } from './timm';
import { HfModelConfig, vitConfigFromHf } from './hf-config';
import { Vit, createVit, disposeVit } from '../vit/params';
import { VitConfig, posGridHW } from '../vit/config';
import { Mae, createMae, maeVariables, disposeMae } from '../mae/mae';

const SIZES: Record<string, { embed_dim: number; depth: number; num_heads: number }> = {
  tiny: { embed_dim: 192, depth: 12, num_heads: 3 },
  small: { embed_dim: 384, depth: 12, num_heads: 6 },
  base: { embed_dim: 768, depth: 12, num_heads: 12 },
  large: { embed_dim: 1024, depth: 24, num_heads: 16 },
};

/**
 * Constructor arguments of timm ViT architectures the kit represents (register functions in timm
 * `vision_transformer.py`: `vit_{tiny,small,base,large}_patch{8,14,16,32}_{224,384}` = patch + size;
 * `vit_*_patch14_dinov2` add `init_values=1e-5`; `vit_*_patch14_reg4_dinov2` add `reg_tokens=4, no_embed_class=True`).
 */
export function timmArchKwargs(arch: string): Record<string, unknown> {
  const m = /^vit_(tiny|small|base|large)_patch(\d+)_(224|384|dinov2|reg4_dinov2)$/.exec(arch);
  if (!m) throw new Error(`fromPretrained: timm architecture '${arch}' is not one the kit maps (vit_{tiny,small,base,large}_patch{N}_{224,384,dinov2,reg4_dinov2})`);
  const kw: Record<string, unknown> = { patch_size: Number(m[2]), ...SIZES[m[1]] };
  if (m[3] === 'dinov2' || m[3] === 'reg4_dinov2') kw.init_values = 1e-5;
  if (m[3] === 'reg4_dinov2') Object.assign(kw, { reg_tokens: 4, no_embed_class: true });
  return kw;
}

export interface FromPretrainedOptions extends HubOptions {
  /** vit_mae repos: build only the encoder (a ViT) instead of the whole MAE. */
  encoderOnly?: boolean;
  /** Overrides of the resolved kit config (e.g. `{numClasses: 10}` — then the head is kept from init, reported 'kept'). */
  overrides?: Partial<VitConfig>;
  /** Seed for parameters not in the file (a new head). */
  seed?: number;
}

export interface Pretrained {
  repoId: string;
  kind: 'timm' | 'dinov2' | 'vit_mae';
  /** The encoder / classifier (for vit_mae: `mae.encoder`). */
  vit: Vit;
  /** vit_mae with the decoder. */
  mae?: Mae;
  /** The repo's config.json. */
  config: Record<string, unknown>;
  files: { config: HubFile; weights: HubFile };
  report: ConvertedReport;
  dispose(): void;
}

const WEIGHTS = ['model.safetensors', 'pytorch_model.bin'] as const;

/**
 * Download (or find in the cache) a timm or transformers ViT repo and return the kit model with its weights loaded.
 * @example const p = await fromPretrained('timm/vit_large_patch14_dinov2.lvd142m'); showTable(keyReportRows(p.report));
 */
export async function fromPretrained(repoId: string, opts: FromPretrainedOptions = {}): Promise<Pretrained> {
  const { encoderOnly, overrides, seed, ...hub } = opts;
  const cfgFile = await hubDownload(repoId, 'config.json', hub);
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(fs.readFileSync(cfgFile.path, 'utf8'));
  } catch (e) {
    throw new Error(`fromPretrained: ${repoId} config.json is not JSON (${(e as Error).message})`);
  }
  if (typeof config.architecture === 'string') {
    const pc = (config.pretrained_cfg ?? {}) as Record<string, unknown>;
    const kw: Record<string, unknown> = { ...timmArchKwargs(config.architecture) };
    const inSize = pc.input_size as number[] | undefined;
    if (Array.isArray(inSize) && inSize.length === 3) Object.assign(kw, { in_chans: inSize[0], img_size: inSize[1] === inSize[2] ? inSize[1] : [inSize[1], inSize[2]] });
    if (typeof config.num_classes === 'number') kw.num_classes = config.num_classes;
    else if (typeof pc.num_classes === 'number') kw.num_classes = pc.num_classes;
    if (typeof config.global_pool === 'string' && config.global_pool) kw.global_pool = config.global_pool;
    Object.assign(kw, (config.model_args ?? {}) as Record<string, unknown>);
    const weights = await hubDownloadFirst(repoId, WEIGHTS, hub);
    const vit = createVit(vitConfigFromTimm(kw, overrides ?? {}), {}, { seed, skipInit: seed === undefined });
    try {
      const report = loadConverted(weights.path, vit.params, { map: 'timm', mapOptions: { noEmbedClass: kw.no_embed_class === true, grid: posGridHW(vit.config) }, allowMissing: overrides?.numClasses !== undefined ? /^(mask_token|head\..*)$/ : /^mask_token$/, source: `${repoId}/${weights.filename}`, strict: overrides?.numClasses === undefined, ignore: overrides?.numClasses !== undefined ? /^head\./ : undefined });
      return { repoId, kind: 'timm', vit, config, files: { config: cfgFile, weights }, report, dispose: () => disposeVit(vit) };
    } catch (e) {
      disposeVit(vit);
      throw e;
    }
  }
  if (typeof config.model_type === 'string') {
    const fr = vitConfigFromHf(config as HfModelConfig, overrides ?? {});
    const weights = await hubDownloadFirst(repoId, WEIGHTS, hub);
    const source = `${repoId}/${weights.filename}`;
    if (fr.kind === 'dinov2') {
      const vit = createVit(fr.vit, {}, { seed, skipInit: seed === undefined });
      try {
        const report = loadConverted(weights.path, vit.params, { map: 'hf-dinov2', source, allowMissing: overrides?.numClasses !== undefined ? /^head\./ : undefined });
        return { repoId, kind: 'dinov2', vit, config, files: { config: cfgFile, weights }, report, dispose: () => disposeVit(vit) };
      } catch (e) {
        disposeVit(vit);
        throw e;
      }
    }
    if (encoderOnly) {
      const vit = createVit(fr.vit, {}, { seed, skipInit: seed === undefined });
      try {
        const report = loadConverted(weights.path, vit.params, { map: 'hf-vitmae', source, strict: false, ignore: /^(decoder_|mask_token$)/ });
        return { repoId, kind: 'vit_mae', vit, config, files: { config: cfgFile, weights }, report, dispose: () => disposeVit(vit) };
      } catch (e) {
        disposeVit(vit);
        throw e;
      }
    }
    const mae = createMae(fr.vit, { decoder: fr.decoder, maskRatio: fr.maskRatio, normPixLoss: fr.normPixLoss, seed, skipInit: seed === undefined });
    try {
      const report = loadConverted(weights.path, maeVariables(mae), { map: 'hf-vitmae', source });
      return { repoId, kind: 'vit_mae', vit: mae.encoder, mae, config, files: { config: cfgFile, weights }, report, dispose: () => disposeMae(mae) };
    } catch (e) {
      disposeMae(mae);
      throw e;
    }
  }
  throw new Error(`fromPretrained: ${repoId} config.json has neither 'architecture' (timm) nor 'model_type' (transformers)`);
}
