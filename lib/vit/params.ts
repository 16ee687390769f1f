/**
 * ViT parameters as data: a typed tree of `tf.Variable`s whose paths are the timm / DINOv2 / MAE checkpoint keys.
 *
 * Layout (kit convention, chosen for the backends' fast paths; checkpoints on disk use PyTorch layout, see io/):
 * - Linear `weight` is stored **[in, out]** (transposed from PyTorch's [out, in]) so `x·W` needs no transposeB.
 * - `patch_embed.proj.weight` is stored **[p, p, C, D]** (HWIO; PyTorch OIHW [D, C, p, p]).
 * - Everything else has the checkpoint's shape: `cls_token` [1,1,D], `pos_embed` [1, 1+N, D], `mask_token` [1, D],
 *   `register_tokens` [1, R, D], LayerNorm `weight`/`bias` [D], LayerScale `gamma` [D].
 *
 * Initialisation (DINOv2 `vision_transformer.py` `init_weights`, MAE `models_mae.py` `initialize_weights`),
 * deterministic from `seed`:
 * - timm / dinov2: Linear trunc-normal(0.02), bias 0; pos_embed trunc-normal(0.02); cls N(0, 1e-6); mask token 0;
 *   patch embedding PyTorch's Conv2d default (kaiming-uniform a=√5: weight and bias U(±1/√(C·p²))).
 * - mae: Linear xavier-uniform, bias 0; patch embedding xavier-uniform on its [D, C·p²] view; cls N(0, 0.02);
 *   fixed sin-cos pos_embed (a frozen variable).
 * - LayerNorm γ=1 β=0; LayerScale γ = `layerScale`; head trunc-normal(0.02) (timm) — fine-tuning recipes re-init it.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../rng';
import { fillInit, Init } from '../init';
import { makeVariable, newScope, flattenTree, disposeTree, countParams } from '../tree';
import { VitConfig, vitConfig, VitPresetName, gridHW, posGridHW, mlpHidden } from './config';
import { sincos2d } from './posembed';

export interface LinearParams {
  /** [in, out] */
  weight: tf.Variable;
  /** [out] */
  bias?: tf.Variable;
}
export interface NormParams {
  weight: tf.Variable;
  bias: tf.Variable;
}
export interface LayerScaleParams {
  gamma: tf.Variable;
}
export interface BlockParams {
  norm1: NormParams;
  attn: { qkv: LinearParams; proj: LinearParams };
  ls1?: LayerScaleParams;
  norm2: NormParams;
  mlp: { fc1: LinearParams; fc2: LinearParams };
  ls2?: LayerScaleParams;
}
export interface VitParams {
  patch_embed: { proj: { weight: tf.Variable; bias: tf.Variable } };
  cls_token: tf.Variable;
  register_tokens?: tf.Variable;
  mask_token?: tf.Variable;
  pos_embed: tf.Variable;
  blocks: BlockParams[];
  /** Final LayerNorm (absent when pool = 'avg', as timm deletes it when fc_norm is used). */
  norm?: NormParams;
  fc_norm?: NormParams;
  head?: LinearParams;
}

/**
 * A model: its resolved config, its parameter tree and a scope name. For a `createVit` model `scope` is the tfjs
 * variable scope of its parameters; for a derived model it is only a label: `mergeLora` (and the D-ExPLoRA teacher
 * copies) make new variables in scopes of their own, so `{...vit, params: mergeLora(vit.params, lora)}` keeps the old
 * model's `scope` while none of its variables live there.
 */
export interface Vit {
  readonly config: VitConfig;
  readonly params: VitParams;
  readonly scope: string;
}

/** Helper that creates variables of one tree from a seeded stream. */
export class ParamFactory {
  readonly scope: string;
  readonly seed: number;
  /** When true every tensor starts at zero (fast; for weights about to be loaded from a checkpoint). */
  readonly skipInit: boolean;
  constructor(kind: string, seed: number, skipInit = false) {
    this.scope = newScope(kind);
    this.seed = seed;
    this.skipInit = skipInit;
  }
  /** A variable at `path` with `shape` initialised by `init`, drawn from a stream derived from (seed, path) only. */
  make(path: string, shape: number[], init: Init, trainable = true): tf.Variable {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = this.skipInit ? new Float32Array(size) : fillInit(size, init, Rng.derive(this.seed, path));
    return makeVariable(this.scope, path, values, shape, trainable);
  }
  /** A variable from explicit values. */
  fromValues(path: string, shape: number[], values: Float32Array, trainable = true): tf.Variable {
    return makeVariable(this.scope, path, values, shape, trainable);
  }
  /** Linear layer `path` with weight [din, dout] (+ bias [dout]). */
  linear(path: string, din: number, dout: number, weightInit: Init, bias = true): LinearParams {
    const p: LinearParams = { weight: this.make(`${path}.weight`, [din, dout], weightInit) };
    if (bias) p.bias = this.make(`${path}.bias`, [dout], { kind: 'zeros' });
    return p;
  }
  norm(path: string, d: number): NormParams {
    return { weight: this.make(`${path}.weight`, [d], { kind: 'ones' }), bias: this.make(`${path}.bias`, [d], { kind: 'zeros' }) };
  }
}

/** Create the parameters of one transformer block at `prefix` (e.g. `blocks.3`, `decoder_blocks.0`). */
export function createBlockParams(
  f: ParamFactory,
  prefix: string,
  dim: number,
  hidden: number,
  opts: { qkvBias: boolean; layerScale: number | null; init: VitConfig['init'] },
): BlockParams {
  const lin = (din: number, dout: number): Init =>
    opts.init === 'mae' ? { kind: 'xavierUniform', fanIn: din, fanOut: dout } : { kind: 'truncNormal', std: 0.02 };
  const b: BlockParams = {
    norm1: f.norm(`${prefix}.norm1`, dim),
    attn: {
      qkv: f.linear(`${prefix}.attn.qkv`, dim, 3 * dim, lin(dim, 3 * dim), opts.qkvBias),
      proj: f.linear(`${prefix}.attn.proj`, dim, dim, lin(dim, dim)),
    },
    norm2: f.norm(`${prefix}.norm2`, dim),
    mlp: {
      fc1: f.linear(`${prefix}.mlp.fc1`, dim, hidden, lin(dim, hidden)),
      fc2: f.linear(`${prefix}.mlp.fc2`, hidden, dim, lin(hidden, dim)),
    },
  };
  if (opts.layerScale !== null) {
    b.ls1 = { gamma: f.make(`${prefix}.ls1.gamma`, [dim], { kind: 'constant', value: opts.layerScale }) };
    b.ls2 = { gamma: f.make(`${prefix}.ls2.gamma`, [dim], { kind: 'constant', value: opts.layerScale }) };
  }
  // Keep the checkpoint's key order: norm1, attn, ls1, norm2, mlp, ls2.
  return { norm1: b.norm1, attn: b.attn, ...(b.ls1 ? { ls1: b.ls1 } : {}), norm2: b.norm2, mlp: b.mlp, ...(b.ls2 ? { ls2: b.ls2 } : {}) };
}

/**
 * Build a ViT from a preset or config. `opts.seed` (default 0) fixes the initialisation; `opts.skipInit` leaves all
 * weights at zero (fast) for models whose weights are loaded next (the fixed sin-cos table is always filled).
 * @example const vit = createVit('vit_small_patch16_224', {numClasses: 10}, {seed: 0});
 */
export function createVit(
  preset: VitPresetName | VitConfig,
  overrides: Partial<VitConfig> = {},
  opts: { seed?: number; skipInit?: boolean } = {},
): Vit {
  const config = vitConfig(preset, overrides);
  const f = new ParamFactory('vit', opts.seed ?? 0, opts.skipInit ?? false);
  const { embedDim: D, patchSize: p, inChans: C } = config;
  const [ph, pw] = posGridHW(config);
  const npos = ph * pw;
  const fanIn = C * p * p;
  const isMae = config.init === 'mae';

  const params: VitParams = {
    patch_embed: {
      proj: {
        weight: f.make(
          'patch_embed.proj.weight',
          [p, p, C, D],
          isMae ? { kind: 'xavierUniform', fanIn, fanOut: D } : { kind: 'kaimingUniformA5', fanIn },
        ),
        bias: f.make('patch_embed.proj.bias', [D], isMae ? { kind: 'zeros' } : { kind: 'kaimingUniformA5', fanIn }),
      },
    },
    cls_token: f.make('cls_token', [1, 1, D], { kind: 'normal', std: isMae ? 0.02 : 1e-6 }),
    pos_embed:
      config.posEmbed === 'sincos'
        ? f.fromValues('pos_embed', [1, 1 + npos, D], sincos2d(D, ph, pw, true), false)
        : f.make('pos_embed', [1, 1 + npos, D], { kind: 'truncNormal', std: 0.02 }),
    blocks: [],
  };
  if (config.numRegisters > 0) {
    params.register_tokens = f.make('register_tokens', [1, config.numRegisters, D], { kind: 'normal', std: 1e-6 });
  }
  if (config.maskToken) params.mask_token = f.make('mask_token', [1, D], { kind: 'zeros' });
  const hidden = mlpHidden(config);
  for (let i = 0; i < config.depth; i++) {
    params.blocks.push(createBlockParams(f, `blocks.${i}`, D, hidden, config));
  }
  if (config.pool === 'cls') params.norm = f.norm('norm', D);
  else params.fc_norm = f.norm('fc_norm', D);
  if (config.numClasses > 0) {
    params.head = f.linear('head', D, config.numClasses, { kind: 'truncNormal', std: 0.02 });
  }
  // Canonical key order (checkpoint order): cls_token, pos_embed, register_tokens, mask_token, patch_embed, blocks, norm, fc_norm, head.
  const ordered: VitParams = {
    cls_token: params.cls_token,
    pos_embed: params.pos_embed,
    ...(params.register_tokens ? { register_tokens: params.register_tokens } : {}),
    ...(params.mask_token ? { mask_token: params.mask_token } : {}),
    patch_embed: params.patch_embed,
    blocks: params.blocks,
    ...(params.norm ? { norm: params.norm } : {}),
    ...(params.fc_norm ? { fc_norm: params.fc_norm } : {}),
    ...(params.head ? { head: params.head } : {}),
  };
  return { config, params: ordered, scope: f.scope };
}

/** Number of patch tokens for an input of the configured size. */
export function numPatches(cfg: VitConfig): number {
  const [h, w] = gridHW(cfg);
  return h * w;
}

/** Parameter count of the encoder (everything but `head`). */
export function encoderParamCount(vit: Vit): number {
  const { head: _head, ...rest } = vit.params;
  return countParams(rest);
}

/** Flat path → variable map of a model. */
export function vitVariables(vit: Vit): Map<string, tf.Variable> {
  return flattenTree(vit.params);
}

/** Dispose all variables of a model. */
export function disposeVit(vit: Vit): void {
  disposeTree(vit.params);
}
