/**
 * MAE random masking as plain data (MAE `models_mae.py` `random_masking`; SatMAE `models_mae_group_channels.py`,
 * `models_mae_temporal.py`).
 *
 * Per sample: noise ~ U(0,1)^N from a seeded `Rng`; ids_shuffle = argsort(noise) ascending (small = keep);
 * ids_restore = argsort(ids_shuffle); the first lenKeep = ⌊N·(1 − ratio)⌋ shuffled ids are kept; the binary mask
 * (1 = removed) is [0]·lenKeep + [1]·(N − lenKeep) in shuffled order, un-shuffled with ids_restore.
 *
 * Every variant is expressed as one permutation of the whole token sequence, so encoders keep `idsShuffle[:lenKeep]`
 * and decoders restore with `idsRestore` the same way:
 * - `randomMasking`: independent per token (RGB MAE; SatMAE group model default: per (group, position) token);
 * - `spatialMasking`: SatMAE `--spatial_mask`: positions drawn once per sample over the L grid cells, every group of a
 *   kept cell stays visible; visible order is group-major over the kept cells in shuffled order (as SatMAE's
 *   permute/reshape produces), tokens indexed g·L + l;
 * - `frameMasking`: SatMAE temporal `same_mask`: one spatial shuffle per sample shared by all T frames; the kept part is
 *   frame-major ([frame 0 kept, frame 1 kept, …] then the removed parts), keep = T·⌊L·(1 − ratio)⌋, tokens t·L + l.
 * Plans hold no tensors; `keepTokens` / `restoreTokens` / `maskTensor` turn them into ops (call inside a tidy).
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../rng';
import { fmtValue } from '../check';

export type MaskKind = 'random' | 'spatial' | 'frames';

export interface MaskPlan {
  kind: MaskKind;
  /** B */
  batch: number;
  /** N tokens per sample (before masking, CLS excluded). */
  numTokens: number;
  /** K visible tokens per sample. */
  lenKeep: number;
  /** [B·N] per-sample permutation; the first K entries of each row are the visible tokens, in encoder order. */
  idsShuffle: Int32Array;
  /** [B·N] inverse permutation of each row. */
  idsRestore: Int32Array;
  /** [B·N] 1 = removed (masked), 0 = visible, in original token order. */
  mask: Float32Array;
}

/** Validate a mask ratio: a number strictly inside (0, 1). */
export function checkMaskRatio(ratio: number, what = 'maskRatio'): number {
  if (typeof ratio !== 'number' || !Number.isFinite(ratio) || ratio <= 0 || ratio >= 1) {
    throw new Error(`${what}: expected a number strictly between 0 and 1, got ${fmtValue(ratio)}`);
  }
  return ratio;
}

/** ⌊n·(1 − ratio)⌋, checked to keep at least one token. */
export function keepCount(n: number, ratio: number, what = 'masking'): number {
  checkMaskRatio(ratio, `${what}: mask ratio`);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${what}: token count must be a positive integer, got ${fmtValue(n)}`);
  // Python's int(L * (1 - r)) on a float64 product, as MAE computes it.
  const k = Math.floor(n * (1 - ratio));
  if (k < 1) throw new Error(`${what}: mask ratio ${ratio} keeps ⌊${n}·${1 - ratio}⌋ = 0 of ${n} tokens; lower the ratio`);
  return k;
}

/** argsort ascending of `noise` (ties broken by index, as a stable sort). */
export function argsort(noise: ArrayLike<number>): Int32Array {
  const idx = Array.from({ length: noise.length }, (_, i) => i);
  idx.sort((a, b) => noise[a] - noise[b] || a - b);
  return Int32Array.from(idx);
}

/** One row of uniform noise from `rng`. */
function noiseRow(rng: Rng, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.next();
  return out;
}

/**
 * Build a plan from explicit per-sample permutations (SatMAE temporal's `mask=` argument; tests).
 * @param idsShuffle [B·N], each row a permutation of 0..N−1 whose first `lenKeep` ids are the visible tokens
 */
export function planFromShuffle(kind: MaskKind, batch: number, numTokens: number, lenKeep: number, idsShuffle: Int32Array): MaskPlan {
  const N = numTokens;
  if (idsShuffle.length !== batch * N) {
    throw new Error(`planFromShuffle: idsShuffle has ${idsShuffle.length} entries, expected B·N = ${batch}·${N}`);
  }
  if (!Number.isInteger(lenKeep) || lenKeep < 1 || lenKeep > N) {
    throw new Error(`planFromShuffle: lenKeep must be an integer in [1, ${N}], got ${fmtValue(lenKeep)}`);
  }
  const idsRestore = new Int32Array(batch * N).fill(-1);
  const mask = new Float32Array(batch * N);
  for (let b = 0; b < batch; b++) {
    const o = b * N;
    for (let j = 0; j < N; j++) {
      const id = idsShuffle[o + j];
      if (!(id >= 0 && id < N) || idsRestore[o + id] !== -1) {
        throw new Error(`planFromShuffle: row ${b} is not a permutation of 0..${N - 1} (entry ${j} = ${id})`);
      }
      idsRestore[o + id] = j;
      mask[o + id] = j < lenKeep ? 0 : 1;
    }
  }
  return { kind, batch, numTokens: N, lenKeep, idsShuffle, idsRestore, mask };
}

/**
 * Independent per-token masking: per sample, argsort of N uniforms; keep ⌊N·(1 − ratio)⌋.
 * @example randomMasking(rng, 8, 196, 0.75).lenKeep // 49
 */
export function randomMasking(rng: Rng, batch: number, numTokens: number, ratio: number): MaskPlan {
  const K = keepCount(numTokens, ratio, 'randomMasking');
  const shuffle = new Int32Array(batch * numTokens);
  for (let b = 0; b < batch; b++) shuffle.set(argsort(noiseRow(rng, numTokens)), b * numTokens);
  return planFromShuffle('random', batch, numTokens, K, shuffle);
}

/**
 * SatMAE spatially consistent masking over G groups × L cells (tokens g·L + l): one shuffle of the L cells per sample,
 * keep ⌊L·(1 − ratio)⌋ cells with all their groups.
 */
export function spatialMasking(rng: Rng, batch: number, groups: number, cells: number, ratio: number): MaskPlan {
  const k = keepCount(cells, ratio, 'spatialMasking');
  return tiledPlan('spatial', rng, batch, groups, cells, k);
}

/**
 * SatMAE temporal same-mask: one shuffle of the L cells per sample shared by all T frames (tokens t·L + l), keep
 * ⌊L·(1 − ratio)⌋ cells in every frame.
 */
export function frameMasking(rng: Rng, batch: number, frames: number, cells: number, ratio: number): MaskPlan {
  const k = keepCount(cells, ratio, 'frameMasking');
  return tiledPlan('frames', rng, batch, frames, cells, k);
}

/** Shared layout of spatial / frame masking: copies × cells tokens, kept part copy-major then removed part copy-major. */
function tiledPlan(kind: MaskKind, rng: Rng, batch: number, copies: number, cells: number, k: number): MaskPlan {
  if (!Number.isInteger(copies) || copies < 1) throw new Error(`${kind} masking: expected ≥ 1 groups/frames, got ${fmtValue(copies)}`);
  const N = copies * cells;
  const shuffle = new Int32Array(batch * N);
  for (let b = 0; b < batch; b++) {
    const s = argsort(noiseRow(rng, cells));
    let j = b * N;
    for (let c = 0; c < copies; c++) for (let i = 0; i < k; i++) shuffle[j++] = c * cells + s[i];
    for (let c = 0; c < copies; c++) for (let i = k; i < cells; i++) shuffle[j++] = c * cells + s[i];
  }
  return planFromShuffle(kind, batch, N, copies * k, shuffle);
}

/** Flat row indices b·N + ids[b, j] for the first `count` entries of every row of `ids` ([B·N]). */
function flatIndices(ids: Int32Array, batch: number, N: number, count: number): Int32Array {
  const out = new Int32Array(batch * count);
  for (let b = 0; b < batch; b++) for (let j = 0; j < count; j++) out[b * count + j] = b * N + ids[b * N + j];
  return out;
}

function checkTokens(x: tf.Tensor, plan: MaskPlan, n: number, what: string): void {
  if (x.rank !== 3 || x.shape[0] !== plan.batch || x.shape[1] !== n) {
    throw new Error(`${what}: expected tokens [${plan.batch}, ${n}, D], got [${x.shape}]`);
  }
}

/** Visible tokens: x [B, N, D] → [B, K, D] in shuffled (encoder) order. Differentiable (gather). */
export function keepTokens(x: tf.Tensor3D, plan: MaskPlan): tf.Tensor3D {
  checkTokens(x, plan, plan.numTokens, 'keepTokens');
  const [B, N, D] = x.shape;
  const K = plan.lenKeep;
  return tf.tidy(() => {
    const idx = tf.tensor1d(flatIndices(plan.idsShuffle, B, N, K), 'int32');
    return tf.gather(x.reshape([B * N, D]), idx).reshape([B, K, D]) as tf.Tensor3D; // [B·N, D] → [B·K, D] → [B, K, D]
  });
}

/**
 * Decoder side: append N − K copies of `maskToken` ([D] or [1, 1, D]) to the visible tokens [B, K, D] and un-shuffle
 * with ids_restore → [B, N, D] in original token order.
 */
export function restoreTokens(visible: tf.Tensor3D, maskToken: tf.Tensor, plan: MaskPlan): tf.Tensor3D {
  checkTokens(visible, plan, plan.lenKeep, 'restoreTokens');
  const [B, K, D] = visible.shape;
  const N = plan.numTokens;
  if (maskToken.size !== D) throw new Error(`restoreTokens: mask token has ${maskToken.size} values, expected width ${D}`);
  return tf.tidy(() => {
    const fill = tf.broadcastTo(maskToken.reshape([1, 1, D]), [B, N - K, D]); // [D] | [1,1,D] → [B, N−K, D]
    const full = tf.concat([visible, fill], 1).reshape([B * N, D]); // [B, N, D] shuffled order → [B·N, D]
    const idx = tf.tensor1d(flatIndices(plan.idsRestore, B, N, N), 'int32');
    return tf.gather(full, idx).reshape([B, N, D]) as tf.Tensor3D; // [B·N, D] original order → [B, N, D]
  });
}

/** The binary mask [B, N] (1 = removed) as a tensor. */
export function maskTensor(plan: MaskPlan): tf.Tensor2D {
  return tf.tensor2d(plan.mask, [plan.batch, plan.numTokens]);
}
