/**
 * Position embeddings: MAE's fixed 2-D sin-cos table and PyTorch-exact bicubic resizing of learned tables.
 *
 * Sin-cos (MAE `util/pos_embed.py`): for width E (divisible by 4) and a grid of H×W tokens in
 * row-major order, token (i, j) gets [code_{E/2}(j) ‖ code_{E/2}(i)] — the column (x) code first — where
 * code_{E'}(t) = [sin(t·ω_0..ω_{E'/2-1}) ‖ cos(t·ω_0..)], ω_k = 10000^(-k/(E'/2)). Blocks of sines then cosines.
 *
 * Bicubic (PyTorch `F.interpolate(mode='bicubic', align_corners=False)`): cubic convolution with a = -0.75, source
 * coordinate (dst + 0.5)·scale − 0.5 where scale = in/out (size mode) or 1/scale_factor (DINOv2's scale-factor mode,
 * with scale_factor = (out + 0.1)/in), taps clamped at the borders.
 *
 * Antialiased bicubic (PyTorch `F.interpolate(..., antialias=True)`, what timm's `resample_abs_pos_embed` uses by
 * default, both for `dynamic_img_size` and when loading a checkpoint at another size): Keys' cubic with a = -0.5
 * (Pillow's), centre (dst + 0.5)·scale, support 2·max(scale, 1) (the kernel is stretched by `scale` when shrinking),
 * taps outside the input dropped and the remaining weights renormalised to sum 1 (no border clamping). The resize of a [h·w, D] table is one matMul by
 * the Kronecker product of the two 1-D interpolation matrices, so it is differentiable and runs on any backend.
 */
import * as tf from '@tensorflow/tfjs';

/** 1-D sin-cos code of the positions `pos` with width `dim` (even): [P, dim], sines block then cosines block. */
export function sincos1d(dim: number, pos: ArrayLike<number>): Float32Array {
  if (dim % 2) throw new Error(`sincos1d: width must be even, got ${dim}`);
  const half = dim / 2;
  const out = new Float32Array(pos.length * dim);
  for (let p = 0; p < pos.length; p++) {
    for (let k = 0; k < half; k++) {
      // MAE computes omega in float64 then the product in float64 (numpy), stored as float32.
      const omega = 1 / Math.pow(10000, k / half);
      const v = pos[p] * omega;
      out[p * dim + k] = Math.sin(v);
      out[p * dim + half + k] = Math.cos(v);
    }
  }
  return out;
}

/**
 * 2-D sin-cos table for a `gridH`×`gridW` grid, optionally with a leading all-zero CLS row: [(cls?1:0) + H·W, dim].
 * Row-major tokens; channels [code(col) ‖ code(row)].
 */
export function sincos2d(dim: number, gridH: number, gridW: number, clsRow = true): Float32Array {
  if (dim % 4) throw new Error(`sincos2d: width must be divisible by 4, got ${dim}`);
  const half = dim / 2;
  const n = gridH * gridW;
  const off = clsRow ? 1 : 0;
  const out = new Float32Array((n + off) * dim);
  const cols = Float64Array.from({ length: n }, (_, t) => t % gridW);
  const rows = Float64Array.from({ length: n }, (_, t) => Math.floor(t / gridW));
  const ex = sincos1d(half, cols);
  const ey = sincos1d(half, rows);
  for (let t = 0; t < n; t++) {
    out.set(ex.subarray(t * half, (t + 1) * half), (t + off) * dim);
    out.set(ey.subarray(t * half, (t + 1) * half), (t + off) * dim + half);
  }
  return out;
}

/** PyTorch's cubic convolution kernel weights for fractional offset t ∈ [0, 1), a = -0.75: taps at -1, 0, 1, 2. */
export function cubicWeights(t: number, a = -0.75): [number, number, number, number] {
  const c1 = (x: number): number => ((a + 2) * x - (a + 3)) * x * x + 1; // |x| ≤ 1
  const c2 = (x: number): number => ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; // 1 < |x| < 2
  return [c2(t + 1), c1(t), c1(1 - t), c2(2 - t)];
}

/**
 * 1-D bicubic interpolation matrix [outSize, inSize] (PyTorch semantics, align_corners=False, clamped borders).
 * @param scaleFactor if given, the source coordinate uses 1/scaleFactor (PyTorch's scale_factor path without
 *   recompute_scale_factor) instead of inSize/outSize.
 */
export function bicubicMatrix(inSize: number, outSize: number, scaleFactor?: number): Float32Array {
  const m = new Float32Array(outSize * inSize);
  const scale = scaleFactor !== undefined ? 1 / scaleFactor : inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const src = (o + 0.5) * scale - 0.5;
    const i0 = Math.floor(src);
    const w = cubicWeights(src - i0);
    for (let k = 0; k < 4; k++) {
      const idx = Math.min(inSize - 1, Math.max(0, i0 - 1 + k));
      m[o * inSize + idx] += w[k];
    }
  }
  return m;
}

/**
 * 1-D antialiased bicubic matrix [outSize, inSize] (PyTorch `antialias=True`, align_corners=False, size mode):
 * scale = in/out; taps j ∈ [max(0, ⌊c − s + 0.5⌋), min(in, ⌊c + s + 0.5⌋)) with c = (o + 0.5)·scale, s = 2·max(scale, 1),
 * weight cubic_{-0.5}((j − c + 0.5)/max(scale, 1)), normalised per row.
 */
export function bicubicMatrixAA(inSize: number, outSize: number): Float32Array {
  const m = new Float32Array(outSize * inSize);
  const scale = inSize / outSize;
  const support = 2 * Math.max(scale, 1);
  const inv = scale >= 1 ? 1 / scale : 1;
  const filt = (x: number): number => {
    const t = Math.abs(x);
    const a = -0.5;
    if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
    if (t < 2) return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a;
    return 0;
  };
  for (let o = 0; o < outSize; o++) {
    const c = scale * (o + 0.5);
    const lo = Math.max(Math.trunc(c - support + 0.5), 0);
    const hi = Math.min(Math.trunc(c + support + 0.5), inSize);
    const w: number[] = [];
    let total = 0;
    for (let j = lo; j < hi; j++) {
      const v = filt((j - c + 0.5) * inv);
      w.push(v);
      total += v;
    }
    for (let j = lo; j < hi; j++) m[o * inSize + j] = total !== 0 ? w[j - lo] / total : w[j - lo];
  }
  return m;
}

/** Kronecker product of [a, b] and [c, d] row-major matrices → [a·c, b·d]. */
function kron(A: Float32Array, ar: number, ac: number, B: Float32Array, br: number, bc: number): Float32Array {
  const out = new Float32Array(ar * br * ac * bc);
  const cols = ac * bc;
  for (let i = 0; i < ar; i++)
    for (let j = 0; j < ac; j++) {
      const a = A[i * ac + j];
      if (a === 0) continue;
      for (let k = 0; k < br; k++)
        for (let l = 0; l < bc; l++) out[(i * br + k) * cols + j * bc + l] = a * B[k * bc + l];
    }
  return out;
}

export interface ResizeSpec {
  from: [number, number];
  to: [number, number];
  /**
   * 'size': PyTorch bicubic by output size (MAE's interpolate_pos_embed); 'size-antialias': the same with
   * antialias=True (timm's resample_abs_pos_embed default); 'dinov2-offset': DINOv2's scale factor (to + 0.1)/from.
   */
  mode: 'size' | 'size-antialias' | 'dinov2-offset';
}

const matrixCache = new Map<string, Float32Array>();

/** The [toH·toW, fromH·fromW] matrix that resizes a row-major grid (cached; plain data, no tensors). */
export function gridResizeMatrix(spec: ResizeSpec): Float32Array {
  const key = `${spec.from}|${spec.to}|${spec.mode}`;
  let m = matrixCache.get(key);
  if (!m) {
    const [fh, fw] = spec.from;
    const [th, tw] = spec.to;
    const sf = (t: number, f: number): number | undefined => (spec.mode === 'dinov2-offset' ? (t + 0.1) / f : undefined);
    const aa = spec.mode === 'size-antialias';
    const rh = aa ? bicubicMatrixAA(fh, th) : bicubicMatrix(fh, th, sf(th, fh));
    const rw = aa ? bicubicMatrixAA(fw, tw) : bicubicMatrix(fw, tw, sf(tw, fw));
    m = kron(rh, th, fh, rw, tw, fw);
    matrixCache.set(key, m);
  }
  return m;
}

/**
 * Resize the patch part of a position table [1, from.h·from.w, D] → [1, to.h·to.w, D] (bicubic, differentiable).
 * Returns the input unchanged when the grids are equal.
 */
export function resizeGridEmbed(pos: tf.Tensor3D, spec: ResizeSpec): tf.Tensor3D {
  const [fh, fw] = spec.from;
  const [th, tw] = spec.to;
  if (pos.shape[1] !== fh * fw) {
    throw new Error(`resizeGridEmbed: table has ${pos.shape[1]} tokens, expected ${fh}x${fw}=${fh * fw}`);
  }
  if (fh === th && fw === tw) return pos;
  return tf.tidy(() => {
    const m = tf.tensor2d(gridResizeMatrix(spec), [th * tw, fh * fw]);
    const d = pos.shape[2];
    const flat = pos.reshape([fh * fw, d]); // [hw, D]
    return tf.matMul(m, flat).reshape([1, th * tw, d]) as tf.Tensor3D;
  });
}
