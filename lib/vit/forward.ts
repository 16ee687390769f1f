/**
 * The ViT forward pass as pure functions over a parameter tree, with named sites where LoRA, ToMe and PYRA attach.
 *
 * Block (pre-norm; timm `vision_transformer.py` `Block`, DINOv2 `dinov2/layers/block.py`, MAE via timm):
 *   y = x + DropPath(LS1(Attn(LN1(x))))
 *   [merge site: ToMe / PYRA reduce the tokens of y here]
 *   z = y + DropPath(LS2(MLP(LN2(y))))
 *
 * Sites:
 * - every Linear is called through `linearSite(env, path, params, x)`: the hook `env.hooks.linear` (LoRA) sees the
 *   site path (`blocks.3.attn.qkv`, `blocks.3.mlp.fc1`, `decoder_blocks.0.attn.qkv`, `head`, ...), the 2-D input and
 *   the base output, and returns the output to use;
 * - `env.hooks.merge` is called between the attention residual and the MLP of every block with the token state
 *   (tokens, sizes, sources) and the head-averaged attention keys.
 * Without hooks the forward is the plain ViT. Nothing here mutates the parameters.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../rng';
import { assertLive } from '../tree';
import { checkKeys, fmtValue } from '../check';
import { dropPath } from '../ops/nn';
import { linear as dense, layerNormFast as layerNorm, geluFast as gelu, attentionQKV } from '../ops/fast';
import { VitConfig, imgHW, posGridHW, dropPathRates, numPosPrefix, numPrefixTokens } from './config';
import { BlockParams, LinearParams, NormParams, Vit, VitParams } from './params';
import { resizeGridEmbed, sincos2d } from './posembed';
import { CheckpointOptions, ForwardReplay, checkpointedBlock } from './checkpoint';

/** Tokens flowing through the blocks. ToMe adds sizes (patches each token stands for) and sources (for visualisation). */
export interface TokenState {
  /** [B, N, D] */
  x: tf.Tensor3D;
  /** [B, N, 1] number of input patches per token, or null before any merge (all ones). */
  size: tf.Tensor3D | null;
  /** [B, N, N0] 0/1 source map (which input tokens each token holds), or null when not tracked. */
  source: tf.Tensor3D | null;
}

/** What the merge hook receives at block `index`. */
export interface MergeSiteInput {
  index: number;
  /** e.g. `blocks.3` */
  prefix: string;
  state: TokenState;
  /** Head-averaged attention keys of this block, [B, N, dh] (LoRA deltas included). */
  keyMean: tf.Tensor3D;
  env: ForwardEnv;
}

export interface VitHooks {
  /**
   * Adapter at a linear site: returns the output to use given the 2-D input [M, in] and base output [M, out].
   * `samples`: how many samples of the forward's batch the M rows belong to (sample-major, M = samples × rows per
   * sample), so that random draws over x (LoRA dropout) can be made per sample of the global batch in a data-parallel
   * worker (lib/ops/nn.ts `dropout`).
   */
  linear?: (site: string, x: tf.Tensor2D, y: tf.Tensor2D, env: ForwardEnv, samples?: number) => tf.Tensor2D;
  /** Token merging between attention and MLP (ToMe / PYRA). */
  merge?: (input: MergeSiteInput) => TokenState;
  /** Add log(size) to the attention logits of every key when sizes are tracked (ToMe proportional attention). */
  propAttn?: boolean;
}

export interface ForwardEnv {
  training: boolean;
  /** Source of randomness for drop-path / dropout; required when training with any stochastic part. */
  rng: Rng | null;
  hooks: VitHooks;
  /** Activation recomputation for the block stacks run with this env (ViT blocks, MAE encoder and decoder). */
  checkpoint?: CheckpointOptions | null;
  /**
   * Record / replay of data-dependent, gradient-free choices inside a block (a merge hook's matching), keyed by site
   * prefix: set by activation recomputation so that the backward's re-run of a block merges exactly the tokens the
   * forward merged (lib/vit/checkpoint.ts). Hooks without such choices ignore it.
   */
  replay?: ForwardReplay | null;
}

export interface VitForwardOptions {
  training?: boolean;
  rng?: Rng | null;
  hooks?: VitHooks;
  /** DINOv2 iBOT masking: [B, N] (1 = replace the patch embedding by mask_token). */
  masks?: tf.Tensor2D | null;
  /** Also return the outputs of the last n blocks (DINOv2 get_intermediate_layers). */
  returnLayers?: number;
  /** Override the model's stochastic-depth rate for this call. */
  dropPathRate?: number;
  /**
   * Activation recomputation per block (lib/vit/checkpoint.ts): keep only block inputs in the forward, recompute each
   * block in the backward. Pass the trainable set given to `trainStep`; variables named under `blocks.i.` get
   * gradients through block i. Composes with the merge hooks (ToMe / PYRA: the matching is recorded and replayed).
   */
  checkpoint?: CheckpointOptions | null;
}

export interface BlockOutputs {
  /** CLS token [B, D] */
  cls: tf.Tensor2D;
  /** patch tokens [B, N, D] (registers and the distillation token excluded) */
  patchTokens: tf.Tensor3D;
}

export interface VitOutput extends BlockOutputs {
  /** All tokens after the last block, before the final norm [B, T, D]. */
  prenorm: tf.Tensor3D;
  /** Last n block outputs (oldest first), passed through the final norm when the model has one. */
  intermediates: BlockOutputs[];
  /**
   * What the head sees [B, D]: norm(x)[:,0] for pool 'cls'; fc_norm(mean of patch tokens) for 'avg'; with a DeiT
   * distillation token (norm(x)[:,0] + norm(x)[:,1]) / 2 (timm's pre-logits).
   */
  pooled: tf.Tensor2D;
  /**
   * Head output [B, numClasses], or null without a head. With a DeiT distillation token: in evaluation the mean of the
   * two heads, (head(cls) + head_dist(dist)) / 2, as DeiT infers; in training head(cls) alone (both heads are in
   * `distilled`; PYRA's released DeiT training uses the cls head only).
   */
  logits: tf.Tensor2D | null;
  /** DeiT: the distillation token after the final norm and both heads' logits; null without a distillation token. */
  distilled: { dist: tf.Tensor2D; clsLogits: tf.Tensor2D | null; distLogits: tf.Tensor2D | null } | null;
  /** Final token state (sizes/sources after merging). */
  state: TokenState;
}

export function makeEnv(opts: { training?: boolean; rng?: Rng | null; hooks?: VitHooks; checkpoint?: CheckpointOptions | null } = {}): ForwardEnv {
  const env: ForwardEnv = { training: opts.training ?? false, rng: opts.rng ?? null, hooks: opts.hooks ?? {} };
  if (opts.checkpoint) env.checkpoint = opts.checkpoint;
  return env;
}

/** Weights of a linear layer as tensors (a `LinearParams`, or a reshaped view such as the patch embedding). */
export interface LinearLike {
  /** [in, out] */
  weight: tf.Tensor;
  /** [out] */
  bias?: tf.Tensor;
}

/**
 * A Linear layer called through its site: base output, then the linear hook (if any). x [..., in] → [..., out].
 * `samples`: the number of batch samples x's leading axes hold, sample-major (default: x's first axis, the batch of
 * a [B, N, in] or [B, in] input); give it when x is already flattened, e.g. patches [B·N, in] → B.
 */
export function linearSite(env: ForwardEnv, site: string, p: LinearLike | LinearParams, x: tf.Tensor, samples?: number): tf.Tensor {
  const hook = env.hooks.linear;
  if (!hook) return dense(x, p.weight, p.bias);
  const din = x.shape[x.shape.length - 1];
  const lead = x.shape.slice(0, -1);
  const x2 = x.reshape([-1, din]) as tf.Tensor2D; // [M, in]
  const y2 = dense(x2, p.weight, p.bias) as tf.Tensor2D; // [M, out]
  const out = hook(site, x2, y2, env, samples ?? (x.rank > 1 ? x.shape[0] : undefined));
  return out.reshape([...lead, out.shape[1]]);
}

export function norm(p: NormParams, x: tf.Tensor, eps: number): tf.Tensor {
  return layerNorm(x, p.weight, p.bias, eps);
}

export interface BlockOptions {
  prefix: string;
  index: number;
  numHeads: number;
  eps: number;
  dropPath: number;
}

/** One transformer block with its sites. state.x [B, N, D] → [B, N', D] (N' < N only if a merge hook reduces). */
export function blockForward(p: BlockParams, state: TokenState, o: BlockOptions, env: ForwardEnv): TokenState {
  const { prefix, eps } = o;
  const x = state.x;
  const [B, N, D] = x.shape;
  // --- attention ---
  const h = norm(p.norm1, x, eps);
  const qkv = linearSite(env, `${prefix}.attn.qkv`, p.attn.qkv, h) as tf.Tensor3D; // [B,N,3D]
  const keyBias =
    env.hooks.propAttn && state.size ? (tf.log(state.size.reshape([B, N])) as tf.Tensor2D) : null; // [B,N]
  const wantKeys = env.hooks.merge !== undefined;
  // columns Q | K | V of the fused weight; the wasm fast path never splits (lib/ops/fast.ts)
  const { out, keyMean } = attentionQKV(qkv, o.numHeads, keyBias, wantKeys);
  let a = linearSite(env, `${prefix}.attn.proj`, p.attn.proj, out);
  if (p.ls1) a = tf.mul(a, p.ls1.gamma);
  let next: TokenState = { ...state, x: tf.add(x, dropPath(a, o.dropPath, env.training, env.rng)) as tf.Tensor3D };
  // --- merge site (ToMe / PYRA) ---
  if (env.hooks.merge && keyMean) {
    next = env.hooks.merge({ index: o.index, prefix, state: next, keyMean, env });
    if (next.x.shape[2] !== D) throw new Error(`${prefix}: merge hook changed the width ${D} → ${next.x.shape[2]}`);
  }
  // --- MLP ---
  const h2 = norm(p.norm2, next.x, eps);
  let m = linearSite(env, `${prefix}.mlp.fc2`, p.mlp.fc2, gelu(linearSite(env, `${prefix}.mlp.fc1`, p.mlp.fc1, h2)));
  if (p.ls2) m = tf.mul(m, p.ls2.gamma);
  return { ...next, x: tf.add(next.x, dropPath(m, o.dropPath, env.training, env.rng)) as tf.Tensor3D };
}

/** Check an image batch against the model: [B, H, W, C] with C = inChans and H, W divisible by the patch. */
export function checkImages(cfg: VitConfig, images: tf.Tensor): [number, number] {
  // duck-typed: a second copy of tfjs-core (e.g. under tfjs-node) has its own Tensor class
  if (!images || !Array.isArray(images.shape) || typeof images.dataSync !== 'function') {
    throw new Error(`ViT input: expected a tf.Tensor [B, H, W, C], got ${fmtValue(images)}`);
  }
  if (images.isDisposed) throw new Error(`ViT input: the images tensor [${images.shape}] was disposed before the forward`);
  if (images.rank !== 4) {
    throw new Error(`ViT input: expected images [B, H, W, C] (NHWC), got rank ${images.rank} shape [${images.shape}]`);
  }
  const [B, H, W, C] = images.shape;
  if (B === 0) throw new Error(`ViT input: empty batch (shape [${images.shape}])`);
  if (C !== cfg.inChans) {
    throw new Error(`ViT input: expected ${cfg.inChans} channels (NHWC, last axis), got ${C} (shape [${images.shape}])`);
  }
  const p = cfg.patchSize;
  if (H % p || W % p) {
    throw new Error(`ViT input: image size ${H}x${W} is not divisible by the patch size ${p}`);
  }
  return [H / p, W / p];
}

/**
 * Patch embedding as one matMul on non-overlapping patches (equal to the stride-p convolution).
 * images [B, H, W, C] → tokens [B, N, D], N = (H/p)·(W/p) row-major; patch vectors flattened (ky, kx, c) to match
 * the [p, p, C, D] weight.
 */
export function patchEmbed(vit: Vit, images: tf.Tensor4D, env: ForwardEnv): tf.Tensor3D {
  const [gh, gw] = checkImages(vit.config, images);
  assertLive(vit.params, 'ViT forward', 'disposeVit was called on this ViT, or the tree it came from was disposed');
  const { patchSize: p, inChans: C, embedDim: D } = vit.config;
  const B = images.shape[0];
  // [B, H, W, C] → [B·gh, p(ky), gw, p·C (kx,c)] → [B·gh, gw, ky, (kx,c)] → [B·N, p·p·C]
  const rows = images.reshape([B * gh, p, gw, p * C]);
  const patches = rows.transpose([0, 2, 1, 3]).reshape([B * gh * gw, p * p * C]);
  const w = vit.params.patch_embed.proj.weight.reshape([p * p * C, D]);
  const proj: LinearLike = { weight: w, bias: vit.params.patch_embed.proj.bias };
  const tokens = linearSite(env, 'patch_embed.proj', proj, patches, B); // [B·N, D]
  return tokens.reshape([B, gh * gw, D]) as tf.Tensor3D;
}

const sincosCache = new Map<string, Float32Array>();

/**
 * The position table for a gh×gw input grid, [1, P + gh·gw, D] (CLS slot first, then the distillation token's when
 * the model has one; P = `numPosPrefix`): the stored table when the grid matches, else the bicubic resize of its
 * patch part (learned) or a freshly computed sin-cos table (fixed; zero prefix rows).
 */
export function posEmbedFor(vit: Vit, gh: number, gw: number): tf.Tensor3D {
  const cfg = vit.config;
  const [ph, pw] = posGridHW(cfg);
  const pos = vit.params.pos_embed as tf.Tensor as tf.Tensor3D;
  if (ph === gh && pw === gw) return pos;
  const D = cfg.embedDim;
  const P = numPosPrefix(cfg);
  if (cfg.posEmbed === 'sincos') {
    const key = `${D}|${gh}|${gw}`;
    let table = sincosCache.get(key);
    if (!table) sincosCache.set(key, (table = sincos2d(D, gh, gw, true)));
    const t = tf.tensor3d(table, [1, 1 + gh * gw, D]);
    if (P === 1) return t;
    const out = tf.concat([tf.zeros([1, P - 1, D]), t], 1) as tf.Tensor3D; // zero rows for the extra prefix token
    return out;
  }
  const cls = pos.slice([0, 0, 0], [1, P, D]); // [1, P, D] prefix rows
  const grid = pos.slice([0, P, 0], [1, ph * pw, D]) as tf.Tensor3D;
  const resized = resizeGridEmbed(grid, { from: [ph, pw], to: [gh, gw], mode: cfg.posEmbedInterp });
  return tf.concat([cls, resized], 1) as tf.Tensor3D;
}

/**
 * Input tokens: patch embedding, DINOv2 mask tokens, position embedding (CLS slot included), CLS first, then the DeiT
 * distillation token (positioned), then registers (no position). images [B, H, W, C] → [B, 1 (+1) + R + N, D].
 */
export function prepareTokens(vit: Vit, images: tf.Tensor4D, env: ForwardEnv, masks?: tf.Tensor2D | null): tf.Tensor3D {
  const { embedDim: D } = vit.config;
  const [gh, gw] = checkImages(vit.config, images);
  let x = patchEmbed(vit, images, env); // [B,N,D]
  const [B, N] = x.shape;
  if (masks) {
    if (!vit.params.mask_token) throw new Error('prepareTokens: masks given but the model has no mask_token (config.maskToken)');
    if (masks.shape[0] !== B || masks.shape[1] !== N) {
      throw new Error(`prepareTokens: masks must be [${B}, ${N}], got [${masks.shape}]`);
    }
    const m = masks.cast('bool').reshape([B, N, 1]);
    x = tf.where(m, tf.broadcastTo(vit.params.mask_token.reshape([1, 1, D]), [B, N, D]), x) as tf.Tensor3D;
  }
  const cls = tf.broadcastTo(vit.params.cls_token, [B, 1, D]);
  const prefix = [cls];
  if (vit.config.distillToken) {
    if (!vit.params.dist_token) throw new Error('prepareTokens: config.distillToken is set but the model has no dist_token');
    prefix.push(tf.broadcastTo(vit.params.dist_token, [B, 1, D]));
  }
  x = tf.add(tf.concat([...prefix, x], 1), posEmbedFor(vit, gh, gw)) as tf.Tensor3D; // [B,P+N,D]
  if (vit.params.register_tokens) {
    const R = vit.params.register_tokens.shape[1] as number;
    const regs = tf.broadcastTo(vit.params.register_tokens, [B, R, D]);
    x = tf.concat([x.slice([0, 0, 0], [B, 1, D]), regs, x.slice([0, 1, 0], [B, N, D])], 1) as tf.Tensor3D;
  }
  return x;
}

/**
 * Run the encoder blocks on prepared tokens.
 * @returns the final state and, if `returnLayers` = n > 0, the raw outputs of the last n blocks.
 */
export function runBlocks(
  vit: Vit,
  tokens: tf.Tensor3D,
  env: ForwardEnv,
  opts: { returnLayers?: number; dropPathRate?: number; checkpoint?: CheckpointOptions | null } = {},
): { state: TokenState; layers: tf.Tensor3D[] } {
  const cfg = vit.config;
  const rates = dropPathRates({ ...cfg, dropPathRate: opts.dropPathRate ?? cfg.dropPathRate });
  const n = opts.returnLayers ?? 0;
  if (n < 0 || n > cfg.depth || !Number.isInteger(n)) {
    throw new Error(`returnLayers: expected an integer in [0, ${cfg.depth}], got ${n}`);
  }
  let state: TokenState = { x: tokens, size: null, source: null };
  const layers: tf.Tensor3D[] = [];
  const ck = opts.checkpoint ?? env.checkpoint ?? null;
  vit.params.blocks.forEach((bp, i) => {
    const bo: BlockOptions = { prefix: `blocks.${i}`, index: i, numHeads: cfg.numHeads, eps: cfg.normEps, dropPath: rates[i] };
    state = ck ? checkpointedBlock(blockForward, bp, state, bo, env, ck) : blockForward(bp, state, bo, env);
    if (i >= cfg.depth - n) layers.push(state.x);
  });
  return { state, layers };
}

/**
 * Split tokens [B, T, D] into CLS [B, D] and patch tokens [B, T − 1 − R (− 1), D] (after CLS, the DeiT distillation
 * token when `distillToken`, and R registers).
 */
export function splitTokens(x: tf.Tensor3D, numRegisters: number, distillToken = false): BlockOutputs {
  const [B, T, D] = x.shape;
  const skip = 1 + (distillToken ? 1 : 0) + numRegisters;
  return {
    cls: x.slice([0, 0, 0], [B, 1, D]).reshape([B, D]) as tf.Tensor2D,
    patchTokens: x.slice([0, skip, 0], [B, T - skip, D]) as tf.Tensor3D,
  };
}

function finalNorm(params: VitParams, x: tf.Tensor3D, eps: number): tf.Tensor3D {
  return params.norm ? (norm(params.norm, x, eps) as tf.Tensor3D) : x;
}

/**
 * Full forward. images [B, H, W, C] (NHWC, any size divisible by the patch) → features, pooled vector and logits.
 * @example const out = vitForward(vit, x); out.cls // [B, D]
 */
export function vitForward(vit: Vit, images: tf.Tensor4D, opts: VitForwardOptions = {}): VitOutput {
  checkKeys('vitForward options', opts, ['training', 'rng', 'hooks', 'masks', 'returnLayers', 'dropPathRate', 'checkpoint']);
  const cfg = vit.config;
  const env = makeEnv(opts);
  const tokens = prepareTokens(vit, images, env, opts.masks);
  const { state, layers } = runBlocks(vit, tokens, env, opts);
  const R = numPrefixTokens(cfg);
  const x = state.x;
  const normed = finalNorm(vit.params, x, cfg.normEps);
  const { cls, patchTokens } = splitTokens(normed, cfg.numRegisters, cfg.distillToken);
  const intermediates = layers.map((l) => splitTokens(finalNorm(vit.params, l, cfg.normEps), cfg.numRegisters, cfg.distillToken));
  let pooled: tf.Tensor2D;
  let dist: tf.Tensor2D | null = null;
  if (cfg.distillToken) {
    const [B, , D] = normed.shape;
    dist = normed.slice([0, 1, 0], [B, 1, D]).reshape([B, D]) as tf.Tensor2D; // token 1 (ToMe keeps it there)
    pooled = tf.div(tf.add(cls, dist), 2) as tf.Tensor2D;
  } else if (cfg.pool === 'cls') {
    pooled = cls;
  } else {
    const pre = splitTokens(x, cfg.numRegisters, cfg.distillToken).patchTokens; // mean over patch tokens of the pre-norm output (MAE global_pool)
    let mean: tf.Tensor2D;
    if (state.size) {
      const [B, T] = x.shape;
      const s = state.size.slice([0, R, 0], [B, T - R, 1]); // size-weighted mean = mean over original patches
      mean = tf.div(tf.sum(tf.mul(pre, s), 1), tf.sum(s, 1)) as tf.Tensor2D;
    } else {
      mean = tf.mean(pre, 1) as tf.Tensor2D;
    }
    if (!vit.params.fc_norm) throw new Error("vitForward: pool 'avg' needs fc_norm parameters");
    pooled = norm(vit.params.fc_norm, mean, cfg.normEps) as tf.Tensor2D;
  }
  if (dist) {
    const { head, head_dist } = vit.params;
    if (head && !head_dist) throw new Error('vitForward: a distilled model with a head needs head_dist parameters');
    const clsLogits = head ? (linearSite(env, 'head', head, cls) as tf.Tensor2D) : null;
    const distLogits = head_dist ? (linearSite(env, 'head_dist', head_dist, dist) as tf.Tensor2D) : null;
    // DeiT: inference averages the two classifiers; training reports both (cls head as `logits`)
    const logits = clsLogits && distLogits ? (env.training ? clsLogits : (tf.div(tf.add(clsLogits, distLogits), 2) as tf.Tensor2D)) : null;
    return { cls, patchTokens, prenorm: x, intermediates, pooled, logits, state, distilled: { dist, clsLogits, distLogits } };
  }
  const logits = vit.params.head ? (linearSite(env, 'head', vit.params.head, pooled) as tf.Tensor2D) : null;
  return { cls, patchTokens, prenorm: x, intermediates, pooled, logits, state, distilled: null };
}
