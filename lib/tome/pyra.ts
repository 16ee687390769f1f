/**
 * PYRA (parallel yielding re-activation, ECCV 2024) exactly as released (PYRA `model/vision_transformer_timm.py`
 * `Block`, `model/adaptive_merge.py`).
 *
 * Per block l with r_l > 0 (parameters as a separate tree keyed like the released checkpoint):
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
 */
import * as tf from '@tensorflow/tfjs';
import { ParamFactory, NormParams } from '../vit/params';
import { VitConfig } from '../vit/config';
import { layerNorm } from '../ops/nn';
import { flattenTree, disposeTree, countParams } from '../tree';
import { SourceModulator } from './merge';

/** LayerNorm eps of PYRA's own norm (PyTorch default; the backbone uses 1e-6). */
export const PYRA_NORM_EPS = 1e-5;

export interface PyraBlockParams {
  /** W_r [r_l, 1] */
  pyra_a: tf.Variable;
  /** W_D [1, D] */
  pyra_b: tf.Variable;
  pyra_norm: NormParams;
}

/** PYRA parameters of a model: `blocks[l]` is undefined for blocks with r_l = 0. */
export interface PyraParams {
  blocks: (PyraBlockParams | undefined)[];
}

export interface Pyra {
  /** The per-layer r the parameters were sized for (length = depth). */
  readonly schedule: readonly number[];
  readonly embedDim: number;
  readonly params: PyraParams;
  readonly scope: string;
}

/**
 * Create PYRA parameters for a resolved per-layer schedule (see `resolveSchedule`). The schedule must be feasible as
 * written (the hooks check it with `tokenCounts(..., {onCap: 'error'})`); for a ToMe-style constant r use the capped
 * list `tokenCounts(r, depth, {numTokens}).r` (e.g. r = 16 on ViT-B/16 gives PYRA's "low" [16×11, 10]).
 * @example const pyra = createPyra(vit.config, pyraSchedule('vit_base_patch16_224', 'low'), {seed: 0});
 */
export function createPyra(cfg: Pick<VitConfig, 'depth' | 'embedDim'>, schedule: readonly number[], opts: { seed?: number } = {}): Pyra {
  if (schedule.length !== cfg.depth) {
    throw new Error(`createPyra: schedule has ${schedule.length} entries, the model has ${cfg.depth} blocks (resolve it first)`);
  }
  schedule.forEach((r, i) => {
    if (!Number.isInteger(r) || r < 0) throw new Error(`createPyra: schedule[${i}] must be a non-negative integer, got ${r}`);
  });
  const D = cfg.embedDim;
  const f = new ParamFactory('pyra', opts.seed ?? 0);
  const blocks = schedule.map((r, i): PyraBlockParams | undefined => {
    if (r === 0) return undefined;
    const pre = `blocks.${i}`;
    return {
      pyra_a: f.make(`${pre}.pyra_a`, [r, 1], { kind: 'kaimingUniformA5', fanIn: 1 }),
      pyra_b: f.make(`${pre}.pyra_b`, [1, D], { kind: 'zeros' }),
      pyra_norm: f.norm(`${pre}.pyra_norm`, D),
    };
  });
  return { schedule: [...schedule], embedDim: D, params: { blocks }, scope: f.scope };
}

/**
 * The PYRA re-activation of block `index` as a source modulator for `mergeWavg`.
 * P [B, r, D] size-weighted sources (rank order), Q [B, r, D] size-weighted pre-merge destinations → P' [B, r, D].
 */
export function pyraModulator(p: PyraBlockParams, index: number): SourceModulator {
  const r = p.pyra_a.shape[0];
  const D = p.pyra_b.shape[1];
  return (P: tf.Tensor3D, Q: tf.Tensor3D): tf.Tensor3D => {
    const [B, rr, d] = P.shape;
    if (rr !== r || d !== D) {
      throw new Error(
        `PYRA blocks.${index}: the merge removes ${rr} tokens of width ${d} but pyra_a / pyra_b were made for r = ${r}, D = ${D} ` +
          `(the run-time cap ⌊(N − protected)/2⌋ changed r — different input size or schedule?)`,
      );
    }
    const M = layerNorm(tf.add(P, Q), p.pyra_norm.weight, p.pyra_norm.bias, PYRA_NORM_EPS) as tf.Tensor3D; // [B,r,D]
    const deltaD = tf.sum(tf.mul(M, p.pyra_a.reshape([1, r, 1])), 1, true); // W_rᵀM: [B,1,D]
    const deltaR = tf.matMul(M.reshape([B * r, D]), p.pyra_b, false, true).reshape([B, r, 1]); // M W_Dᵀ: [B·r,D]·[D,1] → [B,r,1]
    const c = tf.mul(tf.sigmoid(deltaD), 2); // channel factor ∈ (0, 2)
    const g = tf.sub(tf.mul(tf.sigmoid(deltaR), 2), 1); // token gate ∈ (−1, 1); exactly 0 when W_D = 0
    return tf.add(P, tf.mul(tf.mul(P, c), g)) as tf.Tensor3D; // P + (P ⊙ c) ⊙ g
  };
}

/** Flat path → variable map of the PYRA parameters (`blocks.3.pyra_a`, …), for the trainable set / checkpoints. */
export function pyraVariables(pyra: Pyra): Map<string, tf.Variable> {
  return flattenTree(pyra.params);
}

export interface PyraParamCount {
  /** Σ_l (r_l + D) over blocks with r_l > 0: the paper's count (W_r + W_D). */
  generators: number;
  /** Σ_l 2D: the trainable LayerNorm affine, reported separately (the paper's percentages exclude it). */
  layerNorm: number;
  total: number;
}

/** Count PYRA parameters for a schedule analytically (no variables needed). */
export function pyraParamCount(schedule: readonly number[], embedDim: number): PyraParamCount {
  let generators = 0;
  let ln = 0;
  for (const r of schedule) {
    if (r > 0) {
      generators += r + embedDim;
      ln += 2 * embedDim;
    }
  }
  return { generators, layerNorm: ln, total: generators + ln };
}

/** Count the parameters a `Pyra` actually holds, split as `pyraParamCount`. */
export function countPyraParams(pyra: Pyra): PyraParamCount {
  let generators = 0;
  let ln = 0;
  for (const b of pyra.params.blocks) {
    if (!b) continue;
    generators += b.pyra_a.size + b.pyra_b.size;
    ln += countParams(b.pyra_norm);
  }
  return { generators, layerNorm: ln, total: generators + ln };
}

/** Dispose the PYRA variables. */
export function disposePyra(pyra: Pyra): void {
  disposeTree(pyra.params);
}
