/**
 * timm `VisionTransformer` checkpoints ↔ the kit's ViT.
 *
 * Key names are the same (`blocks.3.attn.qkv.weight`, `ls1.gamma`, `norm`, `fc_norm`, `head`, ...) and the tensors are
 * PyTorch layout on disk like every kit checkpoint (io/checkpoint.ts). Two layouts differ, and both are folded
 * exactly (no approximation; checked against real timm 1.0.29 outputs in test/timm-golden.test.ts):
 *
 * 1. `no_embed_class=True` (timm's `vit_*_reg4_dinov2`, DeiT-III): timm adds `pos_embed` [1, N, D] to the patches only,
 *    then prepends [cls, reg...]. The kit (DINOv2 hub semantics) adds a table [1, 1+N, D] to [cls, patches] and inserts
 *    registers after CLS without position. Equivalent kit table: a zero CLS row, then timm's rows; cls unchanged.
 * 2. `reg_tokens=R` with `no_embed_class=False`: timm's table is [1, 1+R+N, D] and also positions the registers.
 *    The kit's register tokens carry no position, so the register rows are added into `register_tokens`
 *    (reg + pos, the same float32 sum timm computes in its forward).
 * `reg_token` [1, R, D] is renamed `register_tokens`. timm never stores DINOv2's `mask_token`.
 * DeiT distilled (`VisionTransformerDistilled`): `dist_token` and `head_dist` keep their names and the table covers
 * [cls, dist, patches] exactly as the kit's (config.distillToken); nothing is folded.
 *
 * timm options without an equivalent in the kit (pre_norm, qk_norm, attention pooling, gated MLPs, no class token)
 * are refused with an error naming the key.
 */
import * as tf from '@tensorflow/tfjs';
import { SafeFile, SafeTensor, TensorToWrite, readSafetensors, writeSafetensors } from './safetensors';
import { LoadOptions, LoadReport, kitToTorch, loadTensors } from './checkpoint';
import { VitConfig, VitPresetName, vitConfig, posGridHW } from '../vit/config';
import { Vit, vitVariables } from '../vit/params';
import { checkKeys } from '../check';

/** Keys of timm models the kit cannot represent, with the timm option that produces them. */
const UNSUPPORTED: ReadonlyArray<[RegExp, string]> = [
  [/^norm_pre\./, 'pre_norm=True (a LayerNorm before the blocks)'],
  [/\.attn\.(q_norm|k_norm)\./, 'qk_norm=True'],
  [/\.attn\.norm\./, 'scale_attn_norm=True'],
  [/\.mlp\.norm\./, 'scale_mlp_norm=True'],
  [/^attn_pool\./, "global_pool='map' (attention pooling)"],
  [/^patch_embed\.norm\./, 'a patch-embedding norm'],
  [/\.mlp\.(fc1_g|fc1_x|w12|w3)\./, 'a gated (SwiGLU) MLP'],
];

export interface TimmLayoutOptions {
  /** timm's `no_embed_class`. Default: inferred from the `pos_embed` length (and `grid` when given). */
  noEmbedClass?: boolean;
  /** Patch grid [rows, cols] of the target's stored table; makes the inference exact for non-square grids. */
  grid?: readonly [number, number];
}

/** A converted state dict and the layout that was found. */
export interface TimmConversion {
  file: SafeFile;
  noEmbedClass: boolean;
  numRegisters: number;
}

function f32(key: string, t: SafeTensor, where: string): Float32Array {
  if (!(t.data instanceof Float32Array)) throw new Error(`${where}: '${key}' must be a float tensor, got ${t.dtype}`);
  return t.data;
}

const isSquare = (n: number): boolean => n > 0 && Number.isInteger(Math.sqrt(n));

/**
 * Convert a timm VisionTransformer state dict (torch layout, timm names) to the kit's names and layout (still torch
 * layout: load it with `loadTensors`, or use `loadTimmCheckpoint`). Throws naming the key on anything it cannot map.
 * @param where names the source in errors (file name).
 */
export function timmToKit(src: SafeFile, opts: TimmLayoutOptions = {}, where = 'timm state dict'): TimmConversion {
  const t = src.tensors;
  const bad = [...t.keys()].flatMap((k) => UNSUPPORTED.filter(([re]) => re.test(k)).map(([, why]) => `'${k}' (${why})`));
  if (bad.length) throw new Error(`${where}: no equivalent in the kit's ViT for ${bad.slice(0, 4).join(', ')}${bad.length > 4 ? `, … (${bad.length} keys)` : ''}`);
  const cls = t.get('cls_token');
  if (!cls) throw new Error(`${where}: no 'cls_token' (timm class_token=False); the kit's ViT always has a CLS token`);
  if (cls.shape.length !== 3 || cls.shape[0] !== 1 || cls.shape[1] !== 1) {
    throw new Error(`${where}: 'cls_token' has shape [${cls.shape}], expected [1, 1, D]`);
  }
  const D = cls.shape[2];
  const reg = t.get('reg_token');
  if (reg && (reg.shape.length !== 3 || reg.shape[0] !== 1 || reg.shape[2] !== D)) {
    throw new Error(`${where}: 'reg_token' has shape [${reg.shape}], expected [1, R, ${D}]`);
  }
  if (t.has('register_tokens')) throw new Error(`${where}: 'register_tokens' is DINOv2-hub layout, not timm's (load it with loadCheckpoint)`);
  const R = reg ? reg.shape[1] : 0;
  const dist = t.get('dist_token');
  if (dist && (dist.shape.length !== 3 || dist.shape[0] !== 1 || dist.shape[1] !== 1 || dist.shape[2] !== D)) {
    throw new Error(`${where}: 'dist_token' has shape [${dist.shape}], expected [1, 1, ${D}]`);
  }
  if (dist && reg) throw new Error(`${where}: both 'dist_token' and 'reg_token': not a timm layout the kit knows`);
  const pos = t.get('pos_embed');
  if (!pos) throw new Error(`${where}: no 'pos_embed' (timm pos_embed='none' is not supported)`);
  if (pos.shape.length !== 3 || pos.shape[0] !== 1 || pos.shape[2] !== D) {
    throw new Error(`${where}: 'pos_embed' has shape [${pos.shape}], expected [1, L, ${D}]`);
  }
  const L = pos.shape[1];
  const prefix = 1 + R + (dist ? 1 : 0);
  let noEmbedClass = opts.noEmbedClass;
  if (noEmbedClass === undefined) {
    if (opts.grid && L === opts.grid[0] * opts.grid[1]) noEmbedClass = true;
    else if (opts.grid && L === prefix + opts.grid[0] * opts.grid[1]) noEmbedClass = false;
    else if (isSquare(L) !== isSquare(L - prefix)) noEmbedClass = isSquare(L);
    else {
      throw new Error(
        `${where}: cannot tell whether 'pos_embed' [${pos.shape}] covers the ${prefix} prefix token(s) (timm no_embed_class); pass noEmbedClass`,
      );
    }
  }
  if (!noEmbedClass && L <= prefix) throw new Error(`${where}: 'pos_embed' [${pos.shape}] is shorter than its ${prefix} prefix rows plus patches`);
  const p = f32('pos_embed', pos, where);
  const out = new Map<string, SafeTensor>();
  for (const [k, v] of t) {
    if (k === 'reg_token' || k === 'pos_embed') continue;
    out.set(k, v);
    if (k === 'cls_token' && reg) out.set('register_tokens', reg); // keep the checkpoint's key order
  }
  const N = noEmbedClass ? L : L - prefix;
  if (dist) {
    if (noEmbedClass) throw new Error(`${where}: 'dist_token' with no_embed_class (DeiT-III style) is not supported`);
    out.set('pos_embed', pos); // [1, 2 + N, D]: [cls, dist, patches] rows, as the kit's
    return { file: { tensors: out, metadata: src.metadata }, noEmbedClass, numRegisters: 0 };
  }
  const table = new Float32Array((1 + N) * D); // [1, 1+N, D]: CLS row then patch rows
  if (noEmbedClass) {
    table.set(p, D); // CLS row stays 0: cls + 0 = cls exactly
  } else {
    table.set(p.subarray(0, D), 0);
    table.set(p.subarray(prefix * D), D);
  }
  out.set('pos_embed', { dtype: 'F32', shape: [1, 1 + N, D], data: table });
  if (reg) {
    const r = Float32Array.from(f32('reg_token', reg, where));
    if (!noEmbedClass) for (let i = 0; i < R * D; i++) r[i] += p[D + i]; // fold the register positions (float32 sum)
    out.set('register_tokens', { dtype: 'F32', shape: [1, R, D], data: r });
  }
  return { file: { tensors: out, metadata: src.metadata }, noEmbedClass, numRegisters: R };
}

/** `loadCheckpoint` for a timm VisionTransformer safetensors file (layout folded by `timmToKit`). */
export function loadTimmCheckpoint(
  file: string,
  vit: Vit,
  opts: LoadOptions & TimmLayoutOptions = {},
): LoadReport & { noEmbedClass: boolean; numRegisters: number } {
  const { noEmbedClass, grid, ...load } = opts;
  const conv = timmToKit(readSafetensors(file), { noEmbedClass, grid: grid ?? posGridHW(vit.config) }, file);
  const user = load.allowMissing;
  // timm never stores DINOv2's mask_token: keep the model's own when it has one.
  const allowMissing = new RegExp(`(?:^mask_token$)${user ? `|(?:${user.source})` : ''}`, user?.flags);
  const report = loadTensors(conv.file, file, { params: vit.params }, { resizeMode: 'size-antialias', ...load, allowMissing });
  return { ...report, noEmbedClass: conv.noEmbedClass, numRegisters: conv.numRegisters };
}

/**
 * The model as a timm state dict (torch layout, timm names) for `VisionTransformer(..., no_embed_class=noEmbedClass,
 * reg_tokens=R)`: the inverse of `timmToKit` (no_embed_class folds the CLS position into `cls_token` as timm's own
 * DINOv2 conversion does). `mask_token` is left out (timm has none).
 */
export function timmStateDict(vit: Vit, opts: { noEmbedClass: boolean }): Map<string, TensorToWrite> {
  const kit = new Map<string, F32Tensor>();
  for (const [k, v] of vitVariables(vit)) {
    if (k === 'mask_token') continue;
    const t = tf.tidy(() => kitToTorch(k, v));
    kit.set(k, { dtype: 'F32', shape: t.shape, data: Float32Array.from(t.dataSync()) });
    t.dispose();
  }
  return kitToTimmLayout(kit, opts.noEmbedClass);
}

/** A float32 tensor (both a `SafeTensor` and a `TensorToWrite`). */
interface F32Tensor {
  dtype: 'F32';
  shape: number[];
  data: Float32Array;
}

/**
 * Kit tensors (torch layout, kit names) → timm's layout, the inverse of `timmToKit`: `register_tokens` → `reg_token`
 * (right after `cls_token`), `pos_embed` [1, 1+N, D] → timm's table (with R zero register rows, or without the CLS row
 * under no_embed_class, whose CLS position is folded into `cls_token` as timm's own DINOv2 conversion does);
 * `mask_token` is left out (timm has none); every other tensor passes through, in the kit's order.
 */
export function kitToTimmLayout<T extends { shape: number[]; data: Float32Array | Int32Array | Uint8Array }>(
  kit: ReadonlyMap<string, T>,
  noEmbedClass: boolean,
): Map<string, T | F32Tensor> {
  const cls = kit.get('cls_token');
  const pos = kit.get('pos_embed');
  if (!cls || !pos) throw new Error("timm layout: 'cls_token' and 'pos_embed' are needed");
  const D = cls.shape[2];
  const p = pos.data as Float32Array;
  const reg = kit.get('register_tokens');
  const R = reg ? reg.shape[1] : 0;
  const out = new Map<string, T | F32Tensor>();
  for (const [k, t] of kit) {
    if (k === 'register_tokens' || k === 'mask_token') continue;
    if (k === 'cls_token') {
      const c = Float32Array.from(t.data as Float32Array);
      if (noEmbedClass) for (let i = 0; i < D; i++) c[i] += p[i];
      out.set(k, { dtype: 'F32', shape: [1, 1, D], data: c });
      if (reg) out.set('reg_token', reg);
    } else if (k === 'pos_embed') {
      const n = p.length / D - 1;
      if (noEmbedClass) {
        out.set(k, { dtype: 'F32', shape: [1, n, D], data: p.slice(D) });
      } else {
        const table = new Float32Array((1 + R + n) * D); // register rows 0: the kit's registers carry no position
        table.set(p.subarray(0, D), 0);
        table.set(p.subarray(D), (1 + R) * D);
        out.set(k, { dtype: 'F32', shape: [1, 1 + R + n, D], data: table });
      }
    } else {
      out.set(k, t);
    }
  }
  return out;
}

/** Write `timmStateDict(vit, opts)` to a safetensors file (atomic), loadable by timm's `load_state_dict`. */
export function saveTimmCheckpoint(file: string, vit: Vit, opts: { noEmbedClass: boolean }): void {
  writeSafetensors(file, timmStateDict(vit, opts), { format: 'pt' });
}

/** timm `VisionTransformer.__init__` arguments `vitConfigFromTimm` understands. */
export const TIMM_VIT_KWARGS = [
  'img_size', 'patch_size', 'in_chans', 'num_classes', 'global_pool', 'embed_dim', 'depth', 'num_heads', 'mlp_ratio',
  'qkv_bias', 'qk_norm', 'init_values', 'class_token', 'pos_embed', 'no_embed_class', 'reg_tokens', 'pre_norm',
  'final_norm', 'fc_norm', 'dynamic_img_size', 'drop_path_rate',
] as const;

/**
 * A kit config from timm `VisionTransformer` keyword arguments (timm's defaults where absent: ViT-B/16, 224,
 * 1000 classes, 'token' pool). `no_embed_class` is a storage layout only (see `timmToKit`) and `dynamic_img_size` is
 * always on in the kit. Refuses options the kit does not implement, naming them.
 * @example vitConfigFromTimm({img_size: 518, patch_size: 14, embed_dim: 384, num_heads: 6, init_values: 1e-5, reg_tokens: 4, no_embed_class: true})
 */
export function vitConfigFromTimm(kw: Record<string, unknown>, overrides: Partial<VitConfig> = {}): VitConfig {
  checkKeys('timm VisionTransformer kwargs', kw, TIMM_VIT_KWARGS);
  const refuse = (k: string, ok: (v: unknown) => boolean, why: string): void => {
    if (k in kw && !ok(kw[k])) throw new Error(`timm kwarg ${k}=${JSON.stringify(kw[k])}: ${why}`);
  };
  refuse('class_token', (v) => v === true, "the kit's ViT always has a CLS token");
  refuse('qk_norm', (v) => v === false, 'qk_norm is not implemented in the kit');
  refuse('pre_norm', (v) => v === false, 'pre_norm is not implemented in the kit');
  refuse('final_norm', (v) => v === true, 'final_norm=False is not implemented in the kit');
  refuse('pos_embed', (v) => v === 'learn', "only pos_embed='learn' maps to the kit");
  refuse('global_pool', (v) => v === 'token' || v === 'avg', "the kit pools 'token' (CLS) or 'avg'");
  const pool = (kw.global_pool ?? 'token') === 'avg' ? 'avg' : 'cls';
  refuse('fc_norm', (v) => v === null || v === (pool === 'avg'), "the kit uses fc_norm exactly with 'avg' pooling (timm's default)");
  const num = (k: string, d: number): number => (kw[k] === undefined ? d : (kw[k] as number));
  const img = kw.img_size ?? 224;
  const init = kw.init_values;
  const cfg: Partial<VitConfig> = {
    imgSize: Array.isArray(img) ? [img[0] as number, img[1] as number] : (img as number),
    patchSize: num('patch_size', 16),
    inChans: num('in_chans', 3),
    numClasses: num('num_classes', 1000),
    embedDim: num('embed_dim', 768),
    depth: num('depth', 12),
    numHeads: num('num_heads', 12),
    mlpRatio: num('mlp_ratio', 4),
    qkvBias: (kw.qkv_bias ?? true) as boolean,
    layerScale: init === undefined || init === null ? null : (init as number),
    numRegisters: num('reg_tokens', 0),
    dropPathRate: num('drop_path_rate', 0),
    pool,
    maskToken: false,
    posEmbed: 'learned',
    posEmbedInterp: 'size-antialias',
  };
  const base: VitPresetName = 'vit_base_patch16_224';
  return vitConfig(base, { ...cfg, ...overrides });
}
