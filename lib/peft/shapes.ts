/**
 * Parameter shapes of a ViT without allocating it: the same paths, order and kit shapes as `createVit` (tests check
 * the two agree), so trainable-parameter counts of ViT-L/g recipes cost microseconds instead of seconds and gigabytes.
 * Use it with `planLora` / `classifyParams` (dry runs of ExPLoRA recipes, notebook "what would train" tables).
 */
import { VitConfig, VitPresetName, vitConfig, posGridHW, mlpHidden, numPosPrefix } from '../vit/config';
import type { ShapeLike } from './lora';

/** Ordered path → {shape} map of the parameters `createVit(preset, overrides)` would create. */
export function vitShapes(preset: VitPresetName | VitConfig, overrides: Partial<VitConfig> = {}): Map<string, ShapeLike> {
  const cfg = vitConfig(preset, overrides);
  const { embedDim: D, patchSize: p, inChans: C } = cfg;
  const [ph, pw] = posGridHW(cfg);
  const H = mlpHidden(cfg);
  const out = new Map<string, ShapeLike>();
  const add = (path: string, shape: number[]): void => {
    out.set(path, { shape });
  };
  add('cls_token', [1, 1, D]);
  add('pos_embed', [1, numPosPrefix(cfg) + ph * pw, D]);
  if (cfg.numRegisters > 0) add('register_tokens', [1, cfg.numRegisters, D]);
  if (cfg.maskToken) add('mask_token', [1, D]);
  if (cfg.distillToken) add('dist_token', [1, 1, D]);
  add('patch_embed.proj.weight', [p, p, C, D]);
  add('patch_embed.proj.bias', [D]);
  const linear = (path: string, din: number, dout: number, bias = true): void => {
    add(`${path}.weight`, [din, dout]);
    if (bias) add(`${path}.bias`, [dout]);
  };
  const norm = (path: string): void => {
    add(`${path}.weight`, [D]);
    add(`${path}.bias`, [D]);
  };
  for (let i = 0; i < cfg.depth; i++) {
    const b = `blocks.${i}`;
    norm(`${b}.norm1`);
    linear(`${b}.attn.qkv`, D, 3 * D, cfg.qkvBias);
    linear(`${b}.attn.proj`, D, D);
    if (cfg.layerScale !== null) add(`${b}.ls1.gamma`, [D]);
    norm(`${b}.norm2`);
    linear(`${b}.mlp.fc1`, D, H);
    linear(`${b}.mlp.fc2`, H, D);
    if (cfg.layerScale !== null) add(`${b}.ls2.gamma`, [D]);
  }
  if (cfg.pool === 'cls') norm('norm');
  else norm('fc_norm');
  if (cfg.numClasses > 0) linear('head', D, cfg.numClasses);
  if (cfg.numClasses > 0 && cfg.distillToken) linear('head_dist', D, cfg.numClasses);
  return out;
}
