/**
 * A light segmentation head on ViT patch tokens, for SpaceNet-v1 building segmentation.
 *
 * Which head the papers used: SatMAE reports SpaceNet-v1 building segmentation but released no segmentation code
 * (SatMAE issue #2 "Segmentation Experiments", open); ExPLoRA's SpaceNet protocol is not published either. MAE-family
 * papers segment with UperNet (mmsegmentation) — convolutions, batch norm, a pyramid pooling module and an FPN, far
 * too slow for the wasm CPU backend. The kit offers two matMul-only heads instead (documented, golden-tested):
 *
 * - `'linear'` (SETR-naive / linear decoder): each of the last `layers` block outputs' patch tokens goes through its own
 *   LayerNorm, the results are concatenated per patch ([B, L, layers·D]), one Linear gives K logits per patch
 *   ([B, gh, gw, K]), and bilinear upsampling (PyTorch `F.interpolate(mode='bilinear', align_corners=False)`) brings
 *   them to the image size [B, H, W, K].
 * - `'patch'`: the same features, one Linear gives p·p·K values per patch, unpatchified (ky, kx, k) to [B, H, W, K]
 *   — a learned per-pixel decoder inside each patch (like MAE's `decoder_pred`).
 *
 * Parameters live under `decode_head.*` (`decode_head.norms.i.{weight,bias}`, `decode_head.proj.{weight,bias}`), so they
 * never collide with a backbone's `head` / `norm` in a trainable selection.
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys } from '../check';
import { flattenTree, disposeTree, countParams } from '../tree';
import { LinearParams, NormParams, ParamFactory } from '../vit/params';
import { ForwardEnv, linearSite, makeEnv, norm } from '../vit/forward';
import { unpatchify } from '../mae/patchify';

export interface SegHeadConfig {
  /** 'linear' (K logits per patch + bilinear upsampling) or 'patch' (p·p·K values per patch). */
  mode: 'linear' | 'patch';
  /** Token width D of the backbone. */
  embedDim: number;
  /** How many of the last block outputs are concatenated (each with its own LayerNorm). */
  layers: number;
  /** Classes K (binary building masks: 2, background 0 and building 1). */
  numClasses: number;
  /** Backbone patch size p (pixels per token side). */
  patchSize: number;
  normEps: number;
}

const KEYS: readonly (keyof SegHeadConfig)[] = ['mode', 'embedDim', 'layers', 'numClasses', 'patchSize', 'normEps'];

export const SEG_HEAD_DEFAULTS: Readonly<Omit<SegHeadConfig, 'embedDim' | 'patchSize'>> = Object.freeze({
  mode: 'linear',
  layers: 1,
  numClasses: 2,
  normEps: 1e-6,
});

export function segHeadConfig(c: Partial<SegHeadConfig> & Pick<SegHeadConfig, 'embedDim' | 'patchSize'>): SegHeadConfig {
  checkKeys('SegHeadConfig', c, KEYS);
  const r: SegHeadConfig = { ...SEG_HEAD_DEFAULTS, ...c };
  if (r.mode !== 'linear' && r.mode !== 'patch') throw new Error(`SegHeadConfig.mode: expected 'linear' or 'patch', got ${String(r.mode)}`);
  for (const k of ['embedDim', 'layers', 'numClasses', 'patchSize'] as const) {
    if (!Number.isInteger(r[k]) || r[k] < 1) throw new Error(`SegHeadConfig.${k}: expected a positive integer, got ${r[k]}`);
  }
  if (r.numClasses < 2) throw new Error(`SegHeadConfig.numClasses: expected ≥ 2 (background + at least one class), got ${r.numClasses}`);
  return Object.freeze(r);
}

export interface SegHeadParams {
  decode_head: { norms: NormParams[]; proj: LinearParams };
}

export interface SegHead {
  readonly config: SegHeadConfig;
  readonly params: SegHeadParams;
}

/** A new head: LayerNorms at identity, projection trunc-normal(0.02) with zero bias. */
export function createSegHead(c: Partial<SegHeadConfig> & Pick<SegHeadConfig, 'embedDim' | 'patchSize'>, opts: { seed?: number } = {}): SegHead {
  const config = segHeadConfig(c);
  const f = new ParamFactory('seg-head', opts.seed ?? 0);
  const out = config.mode === 'linear' ? config.numClasses : config.patchSize * config.patchSize * config.numClasses;
  return {
    config,
    params: {
      decode_head: {
        norms: Array.from({ length: config.layers }, (_, i) => f.norm(`decode_head.norms.${i}`, config.embedDim)),
        proj: f.linear('decode_head.proj', config.embedDim * config.layers, out, { kind: 'truncNormal', std: 0.02 }),
      },
    },
  };
}

export function segHeadVariables(h: SegHead): Map<string, tf.Variable> {
  return flattenTree(h.params);
}

export function disposeSegHead(h: SegHead): void {
  disposeTree(h.params);
}

export function segHeadParamCount(h: SegHead): number {
  return countParams(h.params);
}

/**
 * 1-D bilinear interpolation matrix [outSize, inSize] of PyTorch's `F.interpolate(mode='bilinear',
 * align_corners=False)` (size mode): source coordinate (o + 0.5)·in/out − 0.5, clamped below at 0, neighbours i0 and
 * min(i0 + 1, in − 1).
 */
export function bilinearMatrix(inSize: number, outSize: number): Float32Array {
  const m = new Float32Array(outSize * inSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const src = Math.max(0, (o + 0.5) * scale - 0.5);
    const i0 = Math.min(inSize - 1, Math.floor(src));
    const i1 = Math.min(inSize - 1, i0 + 1);
    const l1 = src - i0;
    m[o * inSize + i0] += 1 - l1;
    m[o * inSize + i1] += l1;
  }
  return m;
}

/**
 * Bilinear resize of a [B, h, w, K] map to [B, H, W, K] as two matMuls (differentiable on every backend; equal to
 * PyTorch's bilinear `F.interpolate`, align_corners=False).
 */
export function upsampleBilinear(x: tf.Tensor4D, size: readonly [number, number]): tf.Tensor4D {
  const [B, h, w, K] = x.shape;
  const [H, W] = size;
  if (h === H && w === W) return x;
  return tf.tidy(() => {
    const mh = tf.tensor2d(bilinearMatrix(h, H), [H, h]);
    const mw = tf.tensor2d(bilinearMatrix(w, W), [W, w]);
    // rows: [B, h, w, K] → [h, B·w·K] → Mh· → [H, B, w, K]
    const r = tf.matMul(mh, x.transpose([1, 0, 2, 3]).reshape([h, B * w * K])).reshape([H, B, w, K]);
    // columns: [H, B, w, K] → [w, B·H·K] → Mw· → [W, B, H, K] → [B, H, W, K]
    const c = tf.matMul(mw, r.transpose([2, 1, 0, 3]).reshape([w, B * H * K])).reshape([W, B, H, K]);
    return c.transpose([1, 2, 0, 3]) as tf.Tensor4D;
  });
}

/**
 * Head forward. `tokens`: the patch tokens (no CLS / registers) of the last `layers` block outputs, oldest first,
 * each [B, L, D] with L = gh·gw row-major → logits [B, gh·p, gw·p, K].
 */
export function segHeadForward(h: SegHead, tokens: readonly tf.Tensor3D[], grid: readonly [number, number], env: ForwardEnv = makeEnv()): tf.Tensor4D {
  const c = h.config;
  if (tokens.length !== c.layers) throw new Error(`segHeadForward: the head takes ${c.layers} token layer(s), got ${tokens.length}`);
  const [gh, gw] = grid;
  const [B, L, D] = tokens[0].shape;
  tokens.forEach((t, i) => {
    if (t.rank !== 3 || t.shape[0] !== B || t.shape[1] !== gh * gw || t.shape[2] !== c.embedDim) {
      throw new Error(`segHeadForward: tokens[${i}] is [${t.shape}], expected [${B}, ${gh}·${gw} = ${gh * gw}, ${c.embedDim}] (patch tokens only, CLS removed)`);
    }
  });
  if (L !== gh * gw || D !== c.embedDim) throw new Error(`segHeadForward: tokens [${tokens[0].shape}] do not fit grid ${gh}x${gw} and width ${c.embedDim}`);
  const p = c.patchSize;
  const K = c.numClasses;
  const feats = tf.concat(tokens.map((t, i) => norm(h.params.decode_head.norms[i], t, c.normEps)), 2); // [B, L, layers·D]
  const y = linearSite(env, 'decode_head.proj', h.params.decode_head.proj, feats) as tf.Tensor3D; // [B, L, K] or [B, L, p²K]
  if (c.mode === 'patch') return unpatchify(y, p, K, [gh, gw]); // (ky, kx, k) per patch → [B, H, W, K]
  return upsampleBilinear(y.reshape([B, gh, gw, K]) as tf.Tensor4D, [gh * p, gw * p]); // [B, L, K] → [B, gh, gw, K] → [B, H, W, K]
}

/** Check a mask batch against logits: masks [B, H, W, 1] (or [B, H, W]) with the logits' B, H, W. */
export function checkMasks(logits: tf.Tensor4D, masks: tf.Tensor, what = 'masks'): tf.Tensor3D {
  const [B, H, W] = logits.shape;
  const ok = (masks.rank === 4 && masks.shape[3] === 1) || masks.rank === 3;
  if (!ok || masks.shape[0] !== B || masks.shape[1] !== H || masks.shape[2] !== W) {
    throw new Error(`${what}: shape [${masks.shape}] does not match the logits [${logits.shape}]; expected [${B}, ${H}, ${W}, 1] (one class id per pixel)`);
  }
  return masks.reshape([B, H, W]) as tf.Tensor3D;
}

/**
 * Pixel-wise cross-entropy averaged over the pixels whose class is not `ignoreIndex`. logits [B, H, W, K], masks
 * [B, H, W, 1] of class ids (0 … K−1; building masks 0/1).
 */
export function segCrossEntropy(logits: tf.Tensor4D, masks: tf.Tensor, opts: { ignoreIndex?: number } = {}): tf.Scalar {
  const K = logits.shape[3];
  return tf.tidy(() => {
    const m = checkMasks(logits, masks).toInt(); // [B, H, W]
    const logp = tf.logSoftmax(logits, -1);
    const nll = tf.neg(tf.sum(tf.mul(logp, tf.oneHot(m.flatten(), K).reshape(logits.shape)), -1)); // [B, H, W]
    if (opts.ignoreIndex === undefined) return tf.mean(nll) as tf.Scalar;
    const keep = tf.notEqual(m, opts.ignoreIndex).toFloat();
    return tf.div(tf.sum(tf.mul(nll, keep)), tf.maximum(tf.sum(keep), 1)) as tf.Scalar;
  });
}
