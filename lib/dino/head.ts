/**
 * DINO / iBOT projection heads (DINOv2 `dinov2/layers/dino_head.py`).
 *
 *   x [M, in] → mlp.0 Linear in→hidden → GELU → mlp.2 Linear hidden→hidden → GELU → mlp.4 Linear hidden→bottleneck
 *     → L2-normalise (eps 1e-12) → last_layer: weight-normalised Linear bottleneck→K, no bias → logits [M, K]
 *   weight norm (PyTorch `weight_norm`, dim 0): W_k = g_k · v_k / ‖v_k‖ for every output row k.
 *
 * Parameter tree keyed like DINOv2 training checkpoints: `dino_head.mlp.{0,2,4}.{weight,bias}`,
 * `dino_head.last_layer.weight_g` [K, 1], `dino_head.last_layer.weight_v` [K, bottleneck] (and `ibot_head.*` for a
 * separate iBOT head). The MLP weights follow the kit's Linear layout ([in, out], transposed on disk because their key
 * ends in `.weight`). `weight_v` / `weight_g` do **not** end in `.weight`, so the checkpoint writer stores them as they
 * are: they are kept in PyTorch's shapes ([K, bottleneck], [K, 1]) in the kit too, and round-trip unchanged.
 * `nlayers` = 1 gives a single Linear `mlp.{weight,bias}` (in→bottleneck), as upstream's `_build_mlp`.
 *
 * Init (upstream): MLP Linear trunc-normal(0.02), biases 0; last layer v: PyTorch's default Linear init
 * (kaiming-uniform a=√5 ⇒ U(±1/√bottleneck)), g = 1 (trainable, as in DINOv2).
 * Defaults: hidden 2048, bottleneck 256, K 65,536 (DINOv2 default config; the official ViT-L/14 recipe used
 * K 131,072 and bottleneck 384 with a separate iBOT head).
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys, fmtValue, checkNumber } from '../check';
import { ParamFactory, LinearParams } from '../vit/params';
import { dense, gelu } from '../ops/nn';
import { countParams, disposeTree, flattenTree } from '../tree';

export interface DinoHeadConfig {
  /** Input width (the backbone's embedDim). */
  inDim: number;
  hiddenDim: number;
  bottleneckDim: number;
  /** Prototypes K (DINOv2: 65,536). */
  outDim: number;
  /** MLP depth (3 in DINOv2). */
  nlayers: number;
  /** Biases in the MLP Linear layers (true in DINOv2). */
  mlpBias: boolean;
  /** L2-normalisation eps (1e-12 in fp32; upstream uses 1e-6 in fp16). */
  normEps: number;
}

export const DINO_HEAD_KEYS: readonly (keyof DinoHeadConfig)[] = ['inDim', 'hiddenDim', 'bottleneckDim', 'outDim', 'nlayers', 'mlpBias', 'normEps'];

/** DINOv2 default head (ssl_default_config: 65,536 prototypes, bottleneck 256, hidden 2048, 3 layers). */
export const DINO_HEAD_DEFAULTS: Omit<DinoHeadConfig, 'inDim'> = Object.freeze({
  hiddenDim: 2048,
  bottleneckDim: 256,
  outDim: 65536,
  nlayers: 3,
  mlpBias: true,
  normEps: 1e-12,
});

/** Validated head config from the defaults + overrides (unknown keys, non-positive sizes and K ≤ 0 are errors). */
export function dinoHeadConfig(c: Partial<DinoHeadConfig> & Pick<DinoHeadConfig, 'inDim'>): DinoHeadConfig {
  checkKeys('DinoHeadConfig', c, DINO_HEAD_KEYS);
  const cfg: DinoHeadConfig = { ...DINO_HEAD_DEFAULTS, ...c };
  for (const k of ['inDim', 'hiddenDim', 'bottleneckDim', 'outDim', 'nlayers'] as const) {
    if (!Number.isInteger(cfg[k]) || cfg[k] <= 0) throw new Error(`DinoHeadConfig.${k}: expected a positive integer, got ${fmtValue(cfg[k])}`);
  }
  checkNumber('DinoHeadConfig.normEps', cfg.normEps, { gt: 0 });
  return Object.freeze(cfg);
}

/** The weight-normalised last layer: W = g·v/‖v‖ (row-wise). */
export interface WeightNormParams {
  /** [K, 1] */
  weight_g: tf.Variable;
  /** [K, bottleneck] (PyTorch layout, see the module note) */
  weight_v: tf.Variable;
}

/** One head: `mlp` keyed by the Sequential index ('0', '2', '4'; or the single Linear for nlayers = 1), `last_layer`. */
export interface DinoHeadParams {
  mlp: Record<string, LinearParams> | LinearParams;
  last_layer: WeightNormParams;
}

/** The heads of one model (student or teacher): `dino_head` and, when separate, `ibot_head`. */
export interface DinoHeadsParams {
  dino_head: DinoHeadParams;
  ibot_head?: DinoHeadParams;
}

/** Heads with their config and variable scope. */
export interface DinoHeads {
  readonly config: DinoHeadConfig;
  /** Separate iBOT head (DINOv2 `ibot.separate_head`; default false = the DINO head is shared). */
  readonly separateIbot: boolean;
  readonly params: DinoHeadsParams;
  readonly scope: string;
}

function linearsOf(p: DinoHeadParams, nlayers: number): LinearParams[] {
  if (nlayers === 1) return [p.mlp as LinearParams];
  const m = p.mlp as Record<string, LinearParams>;
  return Array.from({ length: nlayers }, (_, i) => m[String(2 * i)]);
}

function createOne(f: ParamFactory, prefix: string, c: DinoHeadConfig): DinoHeadParams {
  const tn = { kind: 'truncNormal', std: 0.02 } as const;
  const dims = c.nlayers === 1 ? [c.inDim, c.bottleneckDim] : [c.inDim, ...Array(c.nlayers - 1).fill(c.hiddenDim), c.bottleneckDim];
  let mlp: DinoHeadParams['mlp'];
  if (c.nlayers === 1) {
    mlp = f.linear(`${prefix}.mlp`, dims[0], dims[1], tn, c.mlpBias);
  } else {
    const m: Record<string, LinearParams> = {};
    for (let i = 0; i < c.nlayers; i++) m[String(2 * i)] = f.linear(`${prefix}.mlp.${2 * i}`, dims[i], dims[i + 1], tn, c.mlpBias);
    mlp = m;
  }
  return {
    mlp,
    last_layer: {
      weight_g: f.make(`${prefix}.last_layer.weight_g`, [c.outDim, 1], { kind: 'ones' }),
      weight_v: f.make(`${prefix}.last_layer.weight_v`, [c.outDim, c.bottleneckDim], { kind: 'kaimingUniformA5', fanIn: c.bottleneckDim }),
    },
  };
}

/**
 * Create the DINO head (and a separate iBOT head if asked), deterministic from `seed`.
 * @example const heads = createDinoHeads({inDim: 1024}); // DINOv2 default: 2048 / 256 / 65,536, shared iBOT head
 */
export function createDinoHeads(
  config: Partial<DinoHeadConfig> & Pick<DinoHeadConfig, 'inDim'>,
  opts: { separateIbot?: boolean; seed?: number; skipInit?: boolean } = {},
): DinoHeads {
  checkKeys('createDinoHeads options', opts, ['separateIbot', 'seed', 'skipInit']);
  const c = dinoHeadConfig(config);
  const f = new ParamFactory('dino-heads', opts.seed ?? 0, opts.skipInit ?? false);
  const params: DinoHeadsParams = { dino_head: createOne(f, 'dino_head', c) };
  const separateIbot = opts.separateIbot ?? false;
  if (separateIbot) params.ibot_head = createOne(f, 'ibot_head', c);
  return { config: c, separateIbot, params, scope: f.scope };
}

/** The head that scores masked patches: `ibot_head` when separate, else the shared `dino_head`. */
export function ibotHeadOf(p: DinoHeadsParams): DinoHeadParams {
  return p.ibot_head ?? p.dino_head;
}

/** Effective last-layer weight W = g·v/‖v‖, [K, bottleneck] (PyTorch layout). Call inside a tidy. */
export function weightNormWeight(p: WeightNormParams): tf.Tensor2D {
  const v = p.weight_v as tf.Tensor2D; // [K, bot]
  const norm = tf.sqrt(tf.sum(tf.square(v), 1, true)); // [K, 1]
  return tf.mul(p.weight_g, tf.div(v, norm)) as tf.Tensor2D;
}

/** L2-normalise rows: x / max(‖x‖, eps) (PyTorch `F.normalize`). x [M, D]. */
export function l2Normalize(x: tf.Tensor2D, eps: number): tf.Tensor2D {
  const n = tf.sqrt(tf.sum(tf.square(x), -1, true)); // [M, 1]
  return tf.div(x, tf.maximum(n, eps)) as tf.Tensor2D;
}

/**
 * Head forward: x [M, in] → logits [M, K] (scaled cosines: |logit| ≤ g). Call inside a tidy.
 * @example const logits = dinoHeadForward(heads.params.dino_head, cls, heads.config);
 */
export function dinoHeadForward(p: DinoHeadParams, x: tf.Tensor2D, c: DinoHeadConfig): tf.Tensor2D {
  if (x.rank !== 2 || x.shape[1] !== c.inDim) throw new Error(`DINO head: expected input [M, ${c.inDim}], got [${x.shape}]`);
  const lins = linearsOf(p, c.nlayers);
  let h: tf.Tensor = x;
  lins.forEach((l, i) => {
    h = dense(h, l.weight, l.bias);
    if (i < lins.length - 1) h = gelu(h);
  });
  const z = l2Normalize(h as tf.Tensor2D, c.normEps); // [M, bot]
  return tf.matMul(z, weightNormWeight(p.last_layer), false, true) as tf.Tensor2D; // [M, bot]·[K, bot]ᵀ = [M, K]
}

/** Ordered path → variable map of the heads (`dino_head.*`, `ibot_head.*`). */
export function dinoHeadVariables(h: DinoHeads | DinoHeadsParams): Map<string, tf.Variable> {
  return flattenTree('params' in h ? h.params : h);
}

/** Parameter count of the heads. */
export function dinoHeadParamCount(h: DinoHeads): number {
  return countParams(h.params);
}

export function disposeDinoHeads(h: DinoHeads): void {
  disposeTree(h.params);
}
