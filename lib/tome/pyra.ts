/**
 * PYRA (parallel yielding re-activation, ECCV 2024) exactly as released (PYRA `model/vision_transformer_timm.py`
 * `Block`, `model/adaptive_merge.py`), and its paper's ablation variants as data (`PyraVariant`): generator subsets
 * with and without the activation, and two other generator designs.
 *
 * Released form (PYRA `model/adaptive_merge.py`, `model/vision_transformer_timm.py::Block`). Per block l with r_l > 0:
 *   `blocks.l.pyra_a`            W_r [r_l, 1]  U(−1, 1) (kaiming-uniform a=√5 on fan_in 1)
 *   `blocks.l.pyra_b`            W_D [1, D]    zeros
 *   `blocks.l.pyra_norm.weight`  γ [D] = 1, `blocks.l.pyra_norm.bias` β [D] = 0, eps 1e-5
 * (`pyra_a` / `pyra_b` are deliberately not `*.weight`: the checkpoint writer transposes rank-2 `*.weight` as Linear
 * layers, and PyTorch stores these two exactly as [r, 1] and [1, D].)
 *
 * Forward, inside the size-weighted merge of block l (P = size-weighted source rows in rank order, Q = size-weighted
 * pre-merge rows of their destinations, both [B, r, D]):
 *   M   = LN_pyra(P + Q)                  token-information matrix, normalised over channels
 *   δ_D = W_rᵀ M                           [B, 1, D]  (W_r, over the r pairs, yields the CHANNEL vector)
 *   δ_r = M W_Dᵀ                           [B, r, 1]  (W_D, over channels, yields the TOKEN vector)
 *   P'  = P + (P ⊙ 2σ(δ_D)) ⊙ (2σ(δ_r) − 1) = P ⊙ (1 + c ⊙ g)
 * then the usual pooling (sizes unmodulated). W_D = 0 ⇒ g = 0 exactly ⇒ PYRA = ToMe bit for bit at init, and W_r gets
 * no gradient until W_D moves.
 *
 * W_r initialisation (`wrInit`): 'uniform' = U(−1, 1), what the released code does (default); 'normal' = N(0, 1), the
 * "random Gaussian" the paper's text (§3) describes; 'zeros' (used by the W_r-only ablation, see below).
 *
 * Ablation variants (the paper's §4 ablation rows; their formulas are not in the released code, so this is our
 * reading of the paper's two-step description of the re-activation, §3):
 *   step 1, channel modulation   P̂ = a_c(δ_D) ⊙ P                 (a_c = 2σ(·): channel factor in (0, 2), 1 at 0)
 *   step 2, token re-activation  P' = P + a_g(δ_r) ⊙ P̂            (a_g = 2σ(·) − 1: token gate in (−1, 1), 0 at 0)
 * - `generators: 'wr'` (W_r only): no token generator, so step 2 is absent: P' = a_c(δ_D) ⊙ P. With the released
 *   U(−1, 1) W_r this would not start at ToMe, so the W_r-only presets use `wrInit: 'zeros'` (identity at init).
 * - `generators: 'wd'` (W_D only): no channel generator, so P̂ = P: P' = P + a_g(δ_r) ⊙ P (= 2σ(δ_r) ⊙ P).
 * - `activation: false`: each activation is replaced by its first-order expansion at 0 (same value and slope there):
 *   a_c(x) = 1 + x/2, a_g(x) = x/2. The neutral points (channel factor 1, gate 0) and hence the identity at init and
 *   the zero-gradient-of-W_r-at-step-0 property are kept; only the bounded non-linearity is removed.
 * Generator designs (`design`; the paper's generator-design ablation):
 * - 'full': the r_l × D modulation matrix is learned directly (no input dependence, no LayerNorm):
 *   `blocks.l.pyra_full` [r_l, D], zeros; P' = P + a_g(W) ⊙ P (identity at init).
 * - 'gatedMlp': the modulation matrix is generated from M by a bottleneck MLP whose output gates the sources through the
 *   same re-activation: A = GELU(M W₁) W₂, P' = P + a_g(A) ⊙ P; `blocks.l.pyra_mlp.fc1.weight` [D, h] (kaiming-uniform
 *   a=√5, PyTorch's Linear default), `…fc2.weight` [h, D] zeros (identity at init; W₁ gets no gradient at step 0, like
 *   W_r), no biases, plus `pyra_norm`. h = `mlpHidden` (default 4: 2·h·D·12 = 73,728 for ViT-B, the paper's 73.73 K).
 * Parameter counts per merging block: parallel both r + D, W_r only r, W_D only D (+ 2D LayerNorm each); full r·D;
 * gatedMlp 2hD (+ 2D).
 */
import * as tf from '@tensorflow/tfjs';
import { ParamFactory, NormParams } from '../vit/params';
import { VitConfig } from '../vit/config';
import { layerNorm, gelu } from '../ops/nn';
import { checkKeys } from '../check';
import { Init } from '../init';
import { flattenTree, disposeTree, countParams } from '../tree';
import { SourceModulator } from './merge';

/** LayerNorm eps of PYRA's own norm (PyTorch default; the backbone uses 1e-6). */
export const PYRA_NORM_EPS = 1e-5;

/** Which generators the parallel design uses (the paper's ablation rows). */
export type PyraGenerators = 'both' | 'wr' | 'wd';
/** How the modulation is produced: PYRA's two parallel vectors, a directly learned r×D matrix, or a bottleneck MLP. */
export type PyraDesign = 'parallel' | 'full' | 'gatedMlp';
/** W_r initialisation: released U(−1, 1), the paper's Gaussian N(0, 1), or zeros. */
export type PyraWrInit = 'uniform' | 'normal' | 'zeros';

/** A PYRA configuration as data (see the module comment for the formulas). */
export interface PyraVariant {
  design: PyraDesign;
  /** Parallel design only: W_r and W_D ('both', PYRA), W_r only, or W_D only. */
  generators: PyraGenerators;
  /** Sigmoid re-activation (true, PYRA) or its first-order expansion (false). */
  activation: boolean;
  /** W_r init (parallel design with W_r). */
  wrInit: PyraWrInit;
  /** Hidden width h of the gatedMlp generator. */
  mlpHidden: number;
}

export const PYRA_VARIANT_KEYS: readonly (keyof PyraVariant)[] = ['design', 'generators', 'activation', 'wrInit', 'mlpHidden'];

/** PYRA as released. */
export const PYRA_RELEASED: Readonly<PyraVariant> = Object.freeze({
  design: 'parallel',
  generators: 'both',
  activation: true,
  wrInit: 'uniform',
  mlpHidden: 4,
});

/**
 * The paper's ablation rows (§4, ViT-B/16 high compression) and generator designs as variants. `tome` (no PYRA) is
 * the ToMe + LoRA preset, not a variant.
 */
export const PYRA_ABLATIONS = {
  wr_noact: { ...PYRA_RELEASED, generators: 'wr', activation: false, wrInit: 'zeros' },
  wr_act: { ...PYRA_RELEASED, generators: 'wr', wrInit: 'zeros' },
  wd_noact: { ...PYRA_RELEASED, generators: 'wd', activation: false },
  wd_act: { ...PYRA_RELEASED, generators: 'wd' },
  both_noact: { ...PYRA_RELEASED, activation: false },
  pyra: { ...PYRA_RELEASED },
  pyra_gaussian_wr: { ...PYRA_RELEASED, wrInit: 'normal' },
  full_matrix: { ...PYRA_RELEASED, design: 'full' },
  gated_mlp: { ...PYRA_RELEASED, design: 'gatedMlp' },
} as const satisfies Record<string, PyraVariant>;

export type PyraAblationName = keyof typeof PYRA_ABLATIONS;

/**
 * Resolve a (partial) variant over the released defaults; unknown keys and meaningless combinations are errors.
 * @example pyraVariant({generators: 'wd', activation: false})
 */
export function pyraVariant(v: Partial<PyraVariant> = {}): PyraVariant {
  checkKeys('PYRA variant', v, PYRA_VARIANT_KEYS);
  const out: PyraVariant = { ...PYRA_RELEASED, ...v };
  const oneOf = <K extends keyof PyraVariant>(k: K, valid: readonly PyraVariant[K][]): void => {
    if (!valid.includes(out[k])) throw new Error(`PYRA variant.${k}: expected one of ${valid.join(', ')}, got ${String(out[k])}`);
  };
  oneOf('design', ['parallel', 'full', 'gatedMlp']);
  oneOf('generators', ['both', 'wr', 'wd']);
  oneOf('activation', [true, false]);
  oneOf('wrInit', ['uniform', 'normal', 'zeros']);
  if (!Number.isInteger(out.mlpHidden) || out.mlpHidden <= 0) throw new Error(`PYRA variant.mlpHidden: expected a positive integer, got ${out.mlpHidden}`);
  if (out.design !== 'parallel' && out.generators !== 'both') {
    throw new Error(`PYRA variant: generators '${out.generators}' applies to the parallel design only (design is '${out.design}')`);
  }
  if (out.design !== 'parallel' && out.wrInit !== 'uniform') {
    throw new Error(`PYRA variant: wrInit applies to the parallel design's W_r only (design is '${out.design}')`);
  }
  if (out.design === 'parallel' && out.generators === 'wd' && out.wrInit !== 'uniform') {
    throw new Error(`PYRA variant: generators 'wd' has no W_r, so wrInit '${out.wrInit}' is meaningless`);
  }
  return out;
}

/** Short label of a variant for tables (e.g. 'W_D only, no act.'). */
export function pyraVariantLabel(v: PyraVariant): string {
  const act = v.activation ? '' : ', no act.';
  if (v.design === 'full') return `full r×D matrix${act}`;
  if (v.design === 'gatedMlp') return `gated MLP (h ${v.mlpHidden})${act}`;
  const gen = v.generators === 'both' ? 'W_r & W_D' : v.generators === 'wr' ? 'W_r only' : 'W_D only';
  const init = v.wrInit === 'uniform' || v.generators === 'wd' ? '' : `, W_r ${v.wrInit}`;
  return `${gen}${act}${init}`;
}

/**
 * PYRA parameters of one merging block (present fields depend on the variant): parallel `pyra_a` (W_r, unless W_D
 * only), `pyra_b` (W_D, unless W_r only), `pyra_norm`; full `pyra_full`; gatedMlp `pyra_mlp`, `pyra_norm`.
 */
export interface PyraBlockParams {
  /** W_r [r_l, 1] */
  pyra_a?: tf.Variable;
  /** W_D [1, D] */
  pyra_b?: tf.Variable;
  /** full design: the modulation matrix [r_l, D] */
  pyra_full?: tf.Variable;
  /** gatedMlp design: fc1 [D, h], fc2 [h, D] (kit Linear layout [in, out]) */
  pyra_mlp?: { fc1: { weight: tf.Variable }; fc2: { weight: tf.Variable } };
  pyra_norm?: NormParams;
}

/** PYRA parameters of a model: `blocks[l]` is undefined for blocks with r_l = 0. */
export interface PyraParams {
  blocks: (PyraBlockParams | undefined)[];
}

export interface Pyra {
  /** The per-layer r the parameters were sized for (length = depth). */
  readonly schedule: readonly number[];
  readonly embedDim: number;
  readonly variant: PyraVariant;
  readonly params: PyraParams;
  readonly scope: string;
}

function wrInitOf(kind: PyraWrInit): Init {
  switch (kind) {
    case 'uniform':
      return { kind: 'kaimingUniformA5', fanIn: 1 }; // U(−1, 1) as released
    case 'normal':
      return { kind: 'normal', std: 1 };
    case 'zeros':
      return { kind: 'zeros' };
  }
}

/**
 * Create PYRA parameters for a resolved per-layer schedule (see `resolveSchedule`). The schedule must be feasible as
 * written (the hooks check it with `tokenCounts(..., {onCap: 'error'})`); for a ToMe-style constant r use the capped
 * list `tokenCounts(r, depth, {numTokens}).r` (e.g. r = 16 on ViT-B/16 gives PYRA's "low" [16×11, 10]).
 * @param opts.variant an ablation variant (default: PYRA as released), e.g. `PYRA_ABLATIONS.wd_act`
 * @example const pyra = createPyra(vit.config, pyraSchedule('vit_base_patch16_224', 'low'), {seed: 0});
 */
export function createPyra(
  cfg: Pick<VitConfig, 'depth' | 'embedDim'>,
  schedule: readonly number[],
  opts: { seed?: number; variant?: Partial<PyraVariant> } = {},
): Pyra {
  checkKeys('createPyra options', opts, ['seed', 'variant']);
  if (schedule.length !== cfg.depth) {
    throw new Error(`createPyra: schedule has ${schedule.length} entries, the model has ${cfg.depth} blocks (resolve it first)`);
  }
  schedule.forEach((r, i) => {
    if (!Number.isInteger(r) || r < 0) throw new Error(`createPyra: schedule[${i}] must be a non-negative integer, got ${r}`);
  });
  const variant = pyraVariant(opts.variant);
  const D = cfg.embedDim;
  const f = new ParamFactory('pyra', opts.seed ?? 0);
  const blocks = schedule.map((r, i): PyraBlockParams | undefined => {
    if (r === 0) return undefined;
    const pre = `blocks.${i}`;
    if (variant.design === 'full') return { pyra_full: f.make(`${pre}.pyra_full`, [r, D], { kind: 'zeros' }) };
    if (variant.design === 'gatedMlp') {
      const h = variant.mlpHidden;
      return {
        pyra_mlp: {
          fc1: { weight: f.make(`${pre}.pyra_mlp.fc1.weight`, [D, h], { kind: 'kaimingUniformA5', fanIn: D }) },
          fc2: { weight: f.make(`${pre}.pyra_mlp.fc2.weight`, [h, D], { kind: 'zeros' }) },
        },
        pyra_norm: f.norm(`${pre}.pyra_norm`, D),
      };
    }
    const p: PyraBlockParams = {};
    if (variant.generators !== 'wd') p.pyra_a = f.make(`${pre}.pyra_a`, [r, 1], wrInitOf(variant.wrInit));
    if (variant.generators !== 'wr') p.pyra_b = f.make(`${pre}.pyra_b`, [1, D], { kind: 'zeros' });
    p.pyra_norm = f.norm(`${pre}.pyra_norm`, D);
    return p;
  });
  return { schedule: [...schedule], embedDim: D, variant, params: { blocks }, scope: f.scope };
}

/** The r (rows) and D a block's parameters were made for, and whether they fit the variant. */
export function pyraBlockShape(p: PyraBlockParams, variant: PyraVariant): { r: number | null; D: number } {
  const need = (v: tf.Variable | undefined, what: string): tf.Variable => {
    if (!v) throw new Error(`PYRA: ${pyraVariantLabel(variant)} needs ${what}, which the block parameters lack`);
    if (v.isDisposed) throw new Error(`PYRA: ${what} is disposed`);
    return v;
  };
  if (variant.design === 'full') {
    const w = need(p.pyra_full, 'pyra_full');
    return { r: w.shape[0] as number, D: w.shape[1] as number };
  }
  if (variant.design === 'gatedMlp') {
    need(p.pyra_norm?.weight, 'pyra_norm');
    const w1 = need(p.pyra_mlp?.fc1.weight, 'pyra_mlp.fc1.weight');
    need(p.pyra_mlp?.fc2.weight, 'pyra_mlp.fc2.weight');
    return { r: null, D: w1.shape[0] as number };
  }
  need(p.pyra_norm?.weight, 'pyra_norm');
  const a = variant.generators !== 'wd' ? need(p.pyra_a, 'pyra_a (W_r)') : null;
  const b = variant.generators !== 'wr' ? need(p.pyra_b, 'pyra_b (W_D)') : null;
  return { r: a ? (a.shape[0] as number) : null, D: (b ? b.shape[1] : p.pyra_norm!.weight.shape[0]) as number };
}

/**
 * The PYRA re-activation of block `index` as a source modulator for `mergeWavg`.
 * P [B, r, D] size-weighted sources (rank order), Q [B, r, D] size-weighted pre-merge destinations → P' [B, r, D].
 */
export function pyraModulator(p: PyraBlockParams, index: number, variant: PyraVariant = PYRA_RELEASED): SourceModulator {
  const { r, D } = pyraBlockShape(p, variant);
  const act = variant.activation;
  const chan = (x: tf.Tensor): tf.Tensor => (act ? tf.mul(tf.sigmoid(x), 2) : tf.add(tf.mul(x, 0.5), 1)); // a_c ∈ (0, 2); 1 at 0
  const gate = (x: tf.Tensor): tf.Tensor => (act ? tf.sub(tf.mul(tf.sigmoid(x), 2), 1) : tf.mul(x, 0.5)); // a_g ∈ (−1, 1); 0 at 0
  return (P: tf.Tensor3D, Q: tf.Tensor3D): tf.Tensor3D => {
    const [B, rr, d] = P.shape;
    if ((r !== null && rr !== r) || d !== D) {
      throw new Error(
        `PYRA blocks.${index}: the merge removes ${rr} tokens of width ${d} but the PYRA parameters were made for r = ${r ?? 'any'}, D = ${D} ` +
          `(the run-time cap ⌊(N − protected)/2⌋ changed r — different input size or schedule?)`,
      );
    }
    if (variant.design === 'full') {
      return tf.add(P, tf.mul(P, gate(p.pyra_full!))) as tf.Tensor3D; // [B,r,D] + [B,r,D]⊙[r,D]
    }
    const M = layerNorm(tf.add(P, Q), p.pyra_norm!.weight, p.pyra_norm!.bias, PYRA_NORM_EPS) as tf.Tensor3D; // [B,r,D]
    if (variant.design === 'gatedMlp') {
      const { fc1, fc2 } = p.pyra_mlp!;
      const hid = gelu(tf.matMul(M.reshape([B * rr, D]), fc1.weight)); // [B·r, D]·[D, h] → [B·r, h]
      const A = tf.matMul(hid as tf.Tensor2D, fc2.weight).reshape([B, rr, D]); // [B·r, h]·[h, D] → [B, r, D]
      return tf.add(P, tf.mul(P, gate(A))) as tf.Tensor3D;
    }
    const deltaD = p.pyra_a ? tf.sum(tf.mul(M, p.pyra_a.reshape([1, rr, 1])), 1, true) : null; // W_rᵀM: [B,1,D]
    const deltaR = p.pyra_b ? tf.matMul(M.reshape([B * rr, D]), p.pyra_b, false, true).reshape([B, rr, 1]) : null; // M W_Dᵀ: [B·r,D]·[D,1] → [B,r,1]
    if (variant.generators === 'wr') return tf.mul(P, chan(deltaD!)) as tf.Tensor3D; // step 1 only
    if (variant.generators === 'wd') return tf.add(P, tf.mul(P, gate(deltaR!))) as tf.Tensor3D; // step 2 with P̂ = P
    return tf.add(P, tf.mul(tf.mul(P, chan(deltaD!)), gate(deltaR!))) as tf.Tensor3D; // P + (P ⊙ c) ⊙ g
  };
}

/** Flat path → variable map of the PYRA parameters (`blocks.3.pyra_a`, …), for the trainable set / checkpoints. */
export function pyraVariables(pyra: Pyra): Map<string, tf.Variable> {
  return flattenTree(pyra.params);
}

export interface PyraParamCount {
  /** Generator parameters (W_r + W_D, the full matrix, or the MLP): the paper's count. */
  generators: number;
  /** Σ_l 2D: the trainable LayerNorm affine, reported separately (the paper's percentages exclude it). */
  layerNorm: number;
  total: number;
  /**
   * Generators of the last merging block: with cls pooling they get exactly zero gradient (the block's merge is
   * followed only by per-token MLPs), so `generators − lastBlock` is what can learn.
   */
  lastBlock: number;
}

/** Generator parameters of one merging block removing r tokens. */
function generatorCount(r: number, D: number, v: PyraVariant): number {
  if (v.design === 'full') return r * D;
  if (v.design === 'gatedMlp') return 2 * v.mlpHidden * D;
  return (v.generators !== 'wd' ? r : 0) + (v.generators !== 'wr' ? D : 0);
}

/**
 * Count PYRA parameters for a schedule analytically (no variables needed).
 * @example pyraParamCount(pyraSchedule('vit_base_patch16_224', 'high'), 768).generators // 9408
 */
export function pyraParamCount(schedule: readonly number[], embedDim: number, variant: Partial<PyraVariant> = {}): PyraParamCount {
  const v = pyraVariant(variant);
  let generators = 0;
  let ln = 0;
  let lastBlock = 0;
  for (const r of schedule) {
    if (r > 0) {
      lastBlock = generatorCount(r, embedDim, v);
      generators += lastBlock;
      if (v.design !== 'full') ln += 2 * embedDim;
    }
  }
  return { generators, layerNorm: ln, total: generators + ln, lastBlock };
}

/** Count the parameters a `Pyra` actually holds, split as `pyraParamCount`. */
export function countPyraParams(pyra: Pyra): PyraParamCount {
  let generators = 0;
  let ln = 0;
  let lastBlock = 0;
  for (const b of pyra.params.blocks) {
    if (!b) continue;
    const { pyra_norm, ...gen } = b;
    lastBlock = countParams(gen);
    generators += lastBlock;
    if (pyra_norm) ln += countParams(pyra_norm);
  }
  return { generators, layerNorm: ln, total: generators + ln, lastBlock };
}

/** Dispose the PYRA variables. */
export function disposePyra(pyra: Pyra): void {
  disposeTree(pyra.params);
}
