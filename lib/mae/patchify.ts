/**
 * Patchify / unpatchify: cut NHWC images into non-overlapping p×p patches and back (MAE `models_mae.py` `patchify`;
 * SatMAE `models_mae_group_channels.py`).
 *
 * Two flatten orders of a patch vector, one per reference model:
 * - **(ky, kx, c)** — RGB MAE and SatMAE temporal (`models_mae.py` `patchify`: einsum `nchpwq->nhwpqc`): vector index
 *   (ky·p + kx)·C + c. Same order as the kit's patch embedding weight [p, p, C, D].
 * - **(band, ky, kx)** — SatMAE group-channel model (einsum `nchpwq->nhwcpq`): vector index (c·p + ky)·p + kx, so that
 *   [B, L, C·p²] reshapes to [B, L, C, p²] (one p² block per band).
 * Patches are numbered row-major over the (H/p)×(W/p) grid: token index = row·(W/p) + col. Non-square images are
 * allowed (MAE asserts square; the kit only needs divisibility).
 */
import * as tf from '@tensorflow/tfjs';
import { fmtValue } from '../check';

/** Check an NHWC batch and a patch size; returns the grid [rows, cols]. Throws naming `what` on bad input. */
export function patchGrid(images: tf.Tensor, p: number, what = 'patchify'): [number, number] {
  if (images.rank !== 4) {
    throw new Error(`${what}: expected images [B, H, W, C] (NHWC), got rank ${images.rank} shape [${images.shape}]`);
  }
  if (!Number.isInteger(p) || p <= 0) throw new Error(`${what}: patch size must be a positive integer, got ${fmtValue(p)}`);
  const [, H, W] = images.shape;
  if (H % p || W % p) {
    throw new Error(`${what}: image size ${H}x${W} is not divisible by the patch size ${p}`);
  }
  return [H / p, W / p];
}

/**
 * images [B, H, W, C] → patches [B, L, p·p·C], L = (H/p)·(W/p), vectors in (ky, kx, c) order.
 * @example patchify(x, 16) // [B, 196, 768] for 224-px RGB
 */
export function patchify(images: tf.Tensor4D, p: number): tf.Tensor3D {
  const [gh, gw] = patchGrid(images, p);
  const [B, , , C] = images.shape;
  return tf.tidy(() => {
    // [B, H, W, C] → [B·gh, p(ky), gw, p·C (kx, c)] → [B·gh, gw, ky, (kx, c)] → [B, L, p·p·C]
    const rows = images.reshape([B * gh, p, gw, p * C]);
    return rows.transpose([0, 2, 1, 3]).reshape([B, gh * gw, p * p * C]) as tf.Tensor3D;
  });
}

/** Resolve the grid of a patch sequence: explicit [rows, cols], or square √L (MAE's convention). */
function resolveGrid(L: number, grid: readonly [number, number] | undefined, what: string): [number, number] {
  if (grid) {
    if (grid[0] * grid[1] !== L) throw new Error(`${what}: grid ${grid[0]}x${grid[1]} does not hold ${L} patches`);
    return [grid[0], grid[1]];
  }
  const s = Math.round(Math.sqrt(L));
  if (s * s !== L) throw new Error(`${what}: ${L} patches is not a square grid; pass grid [rows, cols]`);
  return [s, s];
}

/**
 * Inverse of `patchify`: patches [B, L, p·p·C] in (ky, kx, c) order → images [B, H, W, C].
 * @param grid patch grid [rows, cols] (default: square)
 */
export function unpatchify(patches: tf.Tensor3D, p: number, channels: number, grid?: readonly [number, number]): tf.Tensor4D {
  const [B, L, V] = patches.shape;
  if (V !== p * p * channels) {
    throw new Error(`unpatchify: patch vectors have ${V} values, expected p·p·C = ${p}·${p}·${channels} = ${p * p * channels}`);
  }
  const [gh, gw] = resolveGrid(L, grid, 'unpatchify');
  return tf.tidy(() => {
    // [B, L, V] → [B·gh, gw, p(ky), p·C (kx, c)] → [B·gh, ky, gw, (kx, c)] → [B, H, W, C]
    const x = patches.reshape([B * gh, gw, p, p * channels]);
    return x.transpose([0, 2, 1, 3]).reshape([B, gh * p, gw * p, channels]) as tf.Tensor4D;
  });
}

/**
 * images [B, H, W, C] → patches [B, L, C·p·p] with vectors in (band, ky, kx) order (SatMAE group-channel target).
 * `.reshape([B, L, C, p*p])` then gives one p² block per band.
 */
export function patchifyBands(images: tf.Tensor4D, p: number): tf.Tensor3D {
  const [gh, gw] = patchGrid(images, p, 'patchifyBands');
  const [B, , , C] = images.shape;
  return tf.tidy(() => {
    // [B, H, W, C] → [B·gh, p(ky), gw, p(kx), C] → [B·gh, gw, C, ky, kx] → [B, L, C·p·p]
    const x = images.reshape([B * gh, p, gw, p, C]);
    return x.transpose([0, 2, 4, 1, 3]).reshape([B, gh * gw, C * p * p]) as tf.Tensor3D;
  });
}

/** Inverse of `patchifyBands`: [B, L, C·p·p] in (band, ky, kx) order → images [B, H, W, C]. */
export function unpatchifyBands(
  patches: tf.Tensor3D,
  p: number,
  channels: number,
  grid?: readonly [number, number],
): tf.Tensor4D {
  const [B, L, V] = patches.shape;
  if (V !== p * p * channels) {
    throw new Error(`unpatchifyBands: patch vectors have ${V} values, expected C·p·p = ${channels}·${p}·${p} = ${p * p * channels}`);
  }
  const [gh, gw] = resolveGrid(L, grid, 'unpatchifyBands');
  return tf.tidy(() => {
    // [B, L, V] → [B·gh, gw, C, p(ky), p(kx)] → [B·gh, ky, gw, kx, C] → [B, H, W, C]
    const x = patches.reshape([B * gh, gw, channels, p, p]);
    return x.transpose([0, 3, 1, 4, 2]).reshape([B, gh * p, gw * p, channels]) as tf.Tensor4D;
  });
}

/**
 * Spread a per-patch value [B, L] to pixels [B, H, W, 1] (e.g. the MAE mask for display: 1 = removed).
 */
export function patchValuesToPixels(values: tf.Tensor2D, p: number, grid: readonly [number, number]): tf.Tensor4D {
  const [B, L] = values.shape;
  const [gh, gw] = resolveGrid(L, grid, 'patchValuesToPixels');
  return tf.tidy(() => {
    // [B, L] → [B, gh, 1, gw, 1] → tile → [B, gh, p, gw, p] → [B, H, W, 1]
    const v = values.reshape([B, gh, 1, gw, 1]);
    return tf.tile(v, [1, 1, p, 1, p]).reshape([B, gh * p, gw * p, 1]) as tf.Tensor4D;
  });
}
