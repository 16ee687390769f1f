/**
 * Deterministic geometric and normalisation transforms on `Img`s (plain JS, any channel count unless noted).
 *
 * Resampling follows Pillow's `Image.resize` (the reference pipelines hand PIL images to torchvision): separable
 * filters with support scaled by the downscale factor (built-in antialiasing), window clipped at the borders and
 * renormalised, bicubic a = −0.5. Pixel centres map as `src = box0 + (dst + 0.5)·scale` (align_corners = false).
 * Checked against Pillow mode 'F' outputs in test/data-transforms.test.ts.
 *
 * Rounding helpers reproduce Python's `round` (half to even), which torchvision uses for crop sizes and offsets.
 */
import { Img, makeImg, shapeOf } from './image';
import { checkNumber, fmtValue } from '../lib/check';

export type Interpolation = 'bicubic' | 'bilinear' | 'nearest';

/** Python's `round()` on floats: half to even. */
export function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function bicubic(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}
function triangle(x: number): number {
  x = Math.abs(x);
  return x < 1 ? 1 - x : 0;
}

/** Per-output-pixel source window and weights along one axis (Pillow's precompute_coeffs). */
export interface AxisWeights {
  /** First source index of each output pixel. */
  start: Int32Array;
  /** Number of taps of each output pixel. */
  count: Int32Array;
  /** Weights, `kmax` slots per output pixel. */
  weights: Float64Array;
  kmax: number;
}

/**
 * Resampling weights from source span [in0, in1) of an axis of length `inSize` to `outSize` pixels.
 * @param antialias widen the filter by the downscale factor (Pillow always does; default true)
 */
export function axisWeights(
  inSize: number,
  in0: number,
  in1: number,
  outSize: number,
  interp: Exclude<Interpolation, 'nearest'>,
  antialias = true,
): AxisWeights {
  const filter = interp === 'bicubic' ? bicubic : triangle;
  const support0 = interp === 'bicubic' ? 2 : 1;
  const scale = (in1 - in0) / outSize;
  const fscale = antialias ? Math.max(1, scale) : 1;
  const support = support0 * fscale;
  const kmax = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * kmax);
  for (let o = 0; o < outSize; o++) {
    const center = in0 + (o + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    const n = Math.min(xmax - xmin, kmax);
    let ww = 0;
    for (let k = 0; k < n; k++) {
      const w = filter((k + xmin - center + 0.5) / fscale);
      weights[o * kmax + k] = w;
      ww += w;
    }
    if (ww !== 0) for (let k = 0; k < n; k++) weights[o * kmax + k] /= ww;
    start[o] = xmin;
    count[o] = Math.max(0, n);
  }
  return { start, count, weights, kmax };
}

/** A crop box in source pixels (may be fractional for `resizedCrop`; integer for torchvision-style crops). */
export interface Box {
  top: number;
  left: number;
  height: number;
  width: number;
}

/**
 * Crop `box` out of `img` and resize it to outH×outW (Pillow `resize(size, resample, box)`). Works for any channel
 * count. 'nearest' picks the source pixel containing each output centre (use it for masks / label maps).
 */
export function resizedCrop(img: Img, box: Box, outH: number, outW: number, interp: Interpolation = 'bicubic'): Img {
  if (!(box.height > 0 && box.width > 0)) throw new Error(`resizedCrop: empty box ${JSON.stringify(box)}`);
  if (!Number.isInteger(outH) || !Number.isInteger(outW) || outH <= 0 || outW <= 0) {
    throw new Error(`resizedCrop: output size must be positive integers, got ${fmtValue(outH)}×${outW}`);
  }
  const { height: H, width: W, channels: C, data } = img;
  const out = makeImg(outH, outW, C);
  if (interp === 'nearest') {
    const sy = box.height / outH;
    const sx = box.width / outW;
    for (let y = 0; y < outH; y++) {
      const iy = Math.min(H - 1, Math.max(0, Math.floor(box.top + (y + 0.5) * sy)));
      for (let x = 0; x < outW; x++) {
        const ix = Math.min(W - 1, Math.max(0, Math.floor(box.left + (x + 0.5) * sx)));
        const s = (iy * W + ix) * C;
        const d = (y * outW + x) * C;
        for (let c = 0; c < C; c++) out.data[d + c] = data[s + c];
      }
    }
    return out;
  }
  // horizontal pass over the needed rows, then vertical
  const wx = axisWeights(W, box.left, box.left + box.width, outW, interp);
  const wy = axisWeights(H, box.top, box.top + box.height, outH, interp);
  let y0 = H;
  let y1 = 0;
  for (let y = 0; y < outH; y++) {
    y0 = Math.min(y0, wy.start[y]);
    y1 = Math.max(y1, wy.start[y] + wy.count[y]);
  }
  const rows = Math.max(0, y1 - y0);
  const tmp = new Float64Array(rows * outW * C);
  for (let r = 0; r < rows; r++) {
    const srcRow = (y0 + r) * W * C;
    for (let x = 0; x < outW; x++) {
      const s0 = wx.start[x];
      const n = wx.count[x];
      const wo = x * wx.kmax;
      const d = (r * outW + x) * C;
      for (let c = 0; c < C; c++) {
        let acc = 0;
        for (let k = 0; k < n; k++) acc += wx.weights[wo + k] * data[srcRow + (s0 + k) * C + c];
        tmp[d + c] = acc;
      }
    }
  }
  for (let y = 0; y < outH; y++) {
    const s0 = wy.start[y] - y0;
    const n = wy.count[y];
    const wo = y * wy.kmax;
    for (let x = 0; x < outW; x++) {
      const d = (y * outW + x) * C;
      for (let c = 0; c < C; c++) {
        let acc = 0;
        for (let k = 0; k < n; k++) acc += wy.weights[wo + k] * tmp[((s0 + k) * outW + x) * C + c];
        out.data[d + c] = acc;
      }
    }
  }
  return out;
}

/** Resize the whole image to outH×outW. */
export function resize(img: Img, outH: number, outW: number, interp: Interpolation = 'bicubic'): Img {
  return resizedCrop(img, { top: 0, left: 0, height: img.height, width: img.width }, outH, outW, interp);
}

/**
 * torchvision `Resize(size)` with an int: the shorter side becomes `size`, the longer `int(size · long / short)`.
 */
export function resizeShorter(img: Img, size: number, interp: Interpolation = 'bicubic'): Img {
  const { height: h, width: w } = img;
  if ((w <= h && w === size) || (h <= w && h === size)) return img;
  if (w < h) return resize(img, Math.floor((size * h) / w), size, interp);
  return resize(img, size, Math.floor((size * w) / h), interp);
}

/** Integer crop (must lie inside the image). */
export function crop(img: Img, box: Box): Img {
  const { top, left, height, width } = box;
  if (![top, left, height, width].every(Number.isInteger) || top < 0 || left < 0 || height <= 0 || width <= 0 ||
    top + height > img.height || left + width > img.width) {
    throw new Error(`crop: box ${JSON.stringify(box)} is not an integer box inside ${shapeOf(img)}`);
  }
  const C = img.channels;
  const out = makeImg(height, width, C);
  for (let y = 0; y < height; y++) {
    const s = ((top + y) * img.width + left) * C;
    out.data.set(img.data.subarray(s, s + width * C), y * width * C);
  }
  return out;
}

/**
 * torchvision `CenterCrop`: offsets `int(round((H − h) / 2))`; an image smaller than the crop is zero-padded first
 * (as torchvision does).
 */
export function centerCrop(img: Img, outH: number, outW: number = outH): Img {
  let src = img;
  if (outH > img.height || outW > img.width) {
    const ph = Math.max(0, outH - img.height);
    const pw = Math.max(0, outW - img.width);
    const top = Math.floor(ph / 2);
    const left = Math.floor(pw / 2);
    const H = img.height + ph;
    const W = img.width + pw;
    src = makeImg(H, W, img.channels);
    for (let y = 0; y < img.height; y++) {
      src.data.set(
        img.data.subarray(y * img.width * img.channels, (y + 1) * img.width * img.channels),
        ((y + top) * W + left) * img.channels,
      );
    }
  }
  const top = pyRound((src.height - outH) / 2);
  const left = pyRound((src.width - outW) / 2);
  return crop(src, { top, left, height: outH, width: outW });
}

/** Mirror left–right. */
export function flipH(img: Img): Img {
  const { height: H, width: W, channels: C } = img;
  const out = makeImg(H, W, C);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const s = (y * W + x) * C;
      const d = (y * W + (W - 1 - x)) * C;
      for (let c = 0; c < C; c++) out.data[d + c] = img.data[s + c];
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------------------------------
// normalisation

/** Per-channel mean/std of a normalisation preset. */
export interface NormStats {
  mean: readonly number[];
  std: readonly number[];
}

/** ImageNet statistics (DINOv2 pre-training, linear probing, VTAB-1k in PYRA), for [0, 1] RGB. */
export const IMAGENET_STATS: NormStats = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
/** fMoW-RGB statistics (SatMAE/ExPLoRA fine-tuning and MAE), for [0, 1] RGB. */
export const FMOW_RGB_STATS: NormStats = {
  mean: [0.4182007312774658, 0.4214799106121063, 0.3991275727748871],
  std: [0.28774282336235046, 0.27541765570640564, 0.2764017581939697],
};
/** Sentinel-2 13-band statistics (B1…B12 incl. B8A, raw L1C digital numbers) from SatMAE's fMoW-Sentinel / EuroSAT. */
export const SENTINEL2_STATS: NormStats = {
  mean: [
    1370.19151926, 1184.3824625, 1120.77120066, 1136.26026392, 1263.73947144, 1645.40315151, 1846.87040806,
    1762.59530783, 1972.62420416, 582.72633433, 14.77112979, 1732.16362238, 1247.91870117,
  ],
  std: [
    633.15169573, 650.2842772, 712.12507725, 965.23119807, 948.9819932, 1108.06650639, 1258.36394548, 1233.1492281,
    1364.38688993, 472.37967789, 14.3114637, 1310.36996126, 1087.6020813,
  ],
};
/** SatMAE/ExPLoRA default dropped bands: B1, B9, B10. */
export const SENTINEL2_DROPPED_BANDS = [0, 9, 10] as const;

/** Named normalisation presets. */
export const NORM_PRESETS = { imagenet: IMAGENET_STATS, fmow: FMOW_RGB_STATS, sentinel2: SENTINEL2_STATS } as const;

function checkStats(img: Img, s: NormStats, what: string): void {
  if (s.mean.length !== img.channels || s.std.length !== img.channels) {
    throw new Error(`${what}: statistics for ${s.mean.length} channels, image has ${img.channels} (${shapeOf(img)})`);
  }
  checkStatsValues(s, what);
}

/** Throw unless every mean is finite and every std finite and > 0 (a zero std turns a channel into NaN). */
export function checkStatsValues(stats: { mean: readonly number[]; std: readonly number[] }, what: string): void {
  stats.mean.forEach((m, c) => checkNumber(`${what}: mean[${c}]`, m));
  stats.std.forEach((s, c) => checkNumber(`${what}: std[${c}]`, s, { gt: 0 }));
}

/** (x − mean) / std per channel. */
export function normalize(img: Img, stats: NormStats): Img {
  checkStats(img, stats, 'normalize');
  const C = img.channels;
  const out = makeImg(img.height, img.width, C);
  for (let i = 0; i < img.data.length; i++) {
    const c = i % C;
    out.data[i] = (img.data[i] - stats.mean[c]) / stats.std[c];
  }
  return out;
}

/**
 * SatMAE's SentinelNormalize: per band x' = clip((x − (μ − 2σ)) / (4σ) · 255, 0, 255), cast to uint8 (truncation),
 * then /255 (ToTensor) → values in [0, 1] with 256 levels. `quantize: false` skips the uint8 cast.
 */
export function sentinelNormalize(img: Img, stats: NormStats = SENTINEL2_STATS, quantize = true): Img {
  checkStats(img, stats, 'sentinelNormalize');
  const C = img.channels;
  const out = makeImg(img.height, img.width, C);
  for (let i = 0; i < img.data.length; i++) {
    const c = i % C;
    const lo = stats.mean[c] - 2 * stats.std[c];
    const hi = stats.mean[c] + 2 * stats.std[c];
    let v = ((img.data[i] - lo) / (hi - lo)) * 255;
    v = v < 0 ? 0 : v > 255 ? 255 : v;
    if (quantize) v = Math.floor(v);
    out.data[i] = v / 255;
  }
  return out;
}

/** Keep only `bands` (in the given order). */
export function selectBands(img: Img, bands: readonly number[]): Img {
  for (const b of bands) {
    if (!Number.isInteger(b) || b < 0 || b >= img.channels) {
      throw new Error(`selectBands: band ${b} out of range for a ${img.channels}-band image`);
    }
  }
  const C = img.channels;
  const K = bands.length;
  const out = makeImg(img.height, img.width, K);
  const n = img.height * img.width;
  for (let p = 0; p < n; p++) for (let k = 0; k < K; k++) out.data[p * K + k] = img.data[p * C + bands[k]];
  return out;
}

/** Drop `bands` (e.g. SENTINEL2_DROPPED_BANDS: 13 → 10 bands). */
export function dropBands(img: Img, bands: readonly number[]): Img {
  for (const b of bands) {
    if (!Number.isInteger(b) || b < 0 || b >= img.channels) {
      throw new Error(`dropBands: band ${b} out of range for a ${img.channels}-band image`);
    }
  }
  const keep: number[] = [];
  for (let c = 0; c < img.channels; c++) if (!bands.includes(c)) keep.push(c);
  return selectBands(img, keep);
}

/** SatMAE `masked_bands`: overwrite `bands` with constant values (their means). */
export function maskBands(img: Img, bands: readonly number[], values: readonly number[]): Img {
  const out = makeImg(img.height, img.width, img.channels, img.data.slice());
  const C = img.channels;
  for (const b of bands) {
    if (b < 0 || b >= C) throw new Error(`maskBands: band ${b} out of range for a ${C}-band image`);
    for (let p = b; p < out.data.length; p += C) out.data[p] = values[b];
  }
  return out;
}
