/**
 * Pillow-exact resizing of 8-bit images (Pillow `src/libImaging/Resample.c`, the path `Image.resize` takes for 'L' and
 * 'RGB' images — i.e. what torchvision's `Resize` / `RandomResizedCrop` do to PIL images in the reference pipelines):
 *
 * - the filter coefficients of each output pixel (`precompute_coeffs`: support scaled by the downscale factor, window
 *   clipped at the borders, weights normalised; box coordinates are float32) are converted to fixed point,
 *   `round(w · 2²²)` (`normalize_coeffs_8bpc`);
 * - each pass accumulates integer samples from `2²¹` and keeps `acc >> 22` clipped to 0…255 (`clip8`): **the image is
 *   rounded to whole grey levels after the horizontal pass and again after the vertical one**;
 * - a pass is skipped when it would be the identity (`need_horizontal` / `need_vertical`), the horizontal pass runs
 *   only over the rows the vertical pass reads.
 * The float path (transforms.ts `resizedCrop`) is Pillow's mode 'F' and differs from this by up to several grey levels
 * at edges (measured on the fixture: LOG.md); released models were evaluated on the 8-bit path, so use this one to
 * reproduce their numbers from image files. Inputs are `Img`s decoded from 8-bit files (values k/255); the output has
 * values k/255 too (torchvision `ToTensor`).
 */
import { Img, makeImg, shapeOf } from './image';
import { Box, NormStats, centerCrop, normalize, pyRound, resize, resizeShorter } from './transforms';
import type { SampleTransform } from './dataset';
import { mapImages } from './augment';

export type Interpolation8 = 'bicubic' | 'bilinear';

const PRECISION_BITS = 22;
const ONE = 1 << PRECISION_BITS;

function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}
function bilinear(x: number): number {
  if (x < 0) x = -x;
  return x < 1 ? 1 - x : 0;
}

interface Coeffs {
  start: Int32Array;
  count: Int32Array;
  /** fixed-point weights, `ksize` per output pixel */
  k: Int32Array;
  ksize: number;
}

/** Pillow `precompute_coeffs` + `normalize_coeffs_8bpc` (in0 / in1 are C floats there). */
function coeffs8(inSize: number, in0f: number, in1f: number, outSize: number, interp: Interpolation8): Coeffs {
  const in0 = Math.fround(in0f);
  const in1 = Math.fround(in1f);
  const filter = interp === 'bicubic' ? bicubic : bilinear;
  const support0 = interp === 'bicubic' ? 2 : 1;
  const scale = Math.fround(in1 - in0) / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = support0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const k = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = filter((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? w[x] / ww : w[x];
      k[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    start[xx] = xmin;
    count[xx] = Math.max(0, xmax);
  }
  return { start, count, k, ksize };
}

/** `clip8`: keep the integer part of the fixed-point sum, clipped to a byte. */
function clip8(acc: number): number {
  const v = Math.floor(acc / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Integer grey levels of an image decoded from an 8-bit file (values k/255); anything else is an error. */
export function toBytes(img: Img, what = 'image'): Uint8Array {
  const out = new Uint8Array(img.data.length);
  for (let i = 0; i < img.data.length; i++) {
    const v = img.data[i] * 255;
    const q = Math.round(v);
    if (!(Math.abs(v - q) < 1e-3) || q < 0 || q > 255) {
      const p = Math.floor(i / img.channels);
      throw new Error(`${what}: value ${img.data[i]} at (${Math.floor(p / img.width)}, ${p % img.width}) is not an 8-bit level k/255 — the 8-bit resize needs the image as decoded (before normalisation or float transforms)`);
    }
    out[i] = q;
  }
  return out;
}

/** Bytes → an `Img` with values k/255. */
export function fromBytes(bytes: Uint8Array, height: number, width: number, channels: number): Img {
  const img = makeImg(height, width, channels);
  for (let i = 0; i < bytes.length; i++) img.data[i] = bytes[i] / 255;
  return img;
}

/**
 * Pillow `Image.resize((outW, outH), resample, box)` on 8 bits per channel (any channel count, each channel like an
 * 'L' band). `box` in source pixels (fractional allowed), default the whole image.
 */
export function resize8Bytes(src: Uint8Array, H: number, W: number, C: number, outH: number, outW: number, interp: Interpolation8 = 'bicubic', box?: Box): Uint8Array {
  if (src.length !== H * W * C) throw new Error(`resize8: ${src.length} samples for ${H}×${W}×${C}`);
  if (!Number.isInteger(outH) || !Number.isInteger(outW) || outH <= 0 || outW <= 0) throw new Error(`resize8: output size must be positive integers, got ${outH}×${outW}`);
  const b = box ?? { left: 0, top: 0, width: W, height: H };
  if (!(b.width > 0 && b.height > 0)) throw new Error(`resize8: empty box ${JSON.stringify(b)}`);
  const x0 = b.left;
  const x1 = b.left + b.width;
  const y0 = b.top;
  const y1 = b.top + b.height;
  // Python's Image.resize returns a copy when nothing changes
  if (outW === W && outH === H && x0 === 0 && y0 === 0 && x1 === W && y1 === H) return src.slice();
  const needH = outW !== W || Math.fround(x0) !== 0 || Math.fround(x1) !== outW;
  const needV = outH !== H || Math.fround(y0) !== 0 || Math.fround(y1) !== outH;
  const cv = coeffs8(H, y0, y1, outH, interp);
  const yFirst = cv.start[0];
  const yLast = cv.start[outH - 1] + cv.count[outH - 1];
  let cur = src;
  let curH = H;
  let curW = W;
  let rowOffset = 0; // first source row of `cur`
  if (needH) {
    const ch = coeffs8(W, x0, x1, outW, interp);
    const rows = yLast - yFirst;
    const tmp = new Uint8Array(rows * outW * C);
    for (let r = 0; r < rows; r++) {
      const srow = (yFirst + r) * W * C;
      for (let xx = 0; xx < outW; xx++) {
        const s0 = ch.start[xx];
        const n = ch.count[xx];
        const ko = xx * ch.ksize;
        for (let c = 0; c < C; c++) {
          let acc = 1 << (PRECISION_BITS - 1);
          for (let x = 0; x < n; x++) acc += src[srow + (s0 + x) * C + c] * ch.k[ko + x];
          tmp[(r * outW + xx) * C + c] = clip8(acc);
        }
      }
    }
    cur = tmp;
    curH = rows;
    curW = outW;
    rowOffset = yFirst;
  }
  if (!needV) {
    // no vertical pass: `cur` has the rows yFirst…yLast of the source (all of them, as the box spans the image)
    if (curH !== outH) throw new Error('resize8: internal row bookkeeping');
    return cur;
  }
  const out = new Uint8Array(outH * curW * C);
  for (let yy = 0; yy < outH; yy++) {
    const s0 = cv.start[yy] - rowOffset;
    const n = cv.count[yy];
    const ko = yy * cv.ksize;
    for (let xx = 0; xx < curW; xx++) {
      for (let c = 0; c < C; c++) {
        let acc = 1 << (PRECISION_BITS - 1);
        for (let y = 0; y < n; y++) acc += cur[((s0 + y) * curW + xx) * C + c] * cv.k[ko + y];
        out[(yy * curW + xx) * C + c] = clip8(acc);
      }
    }
  }
  return out;
}

/** `resizedCrop` on the 8-bit path: crop `box`, resize to outH×outW as Pillow does on 'RGB' / 'L' images. */
export function resizedCrop8(img: Img, box: Box, outH: number, outW: number, interp: Interpolation8 = 'bicubic'): Img {
  const bytes = resize8Bytes(toBytes(img, `resizedCrop8 (${shapeOf(img)})`), img.height, img.width, img.channels, outH, outW, interp, box);
  return fromBytes(bytes, outH, outW, img.channels);
}

/** Whole-image resize on the 8-bit path. */
export function resize8(img: Img, outH: number, outW: number, interp: Interpolation8 = 'bicubic'): Img {
  return resizedCrop8(img, { top: 0, left: 0, height: img.height, width: img.width }, outH, outW, interp);
}

/** torchvision `Resize(size)` (shorter side) on the 8-bit path. */
export function resizeShorter8(img: Img, size: number, interp: Interpolation8 = 'bicubic'): Img {
  const { height: h, width: w } = img;
  if ((w <= h && w === size) || (h <= w && h === size)) return img;
  if (w < h) return resize8(img, Math.floor((size * h) / w), size, interp);
  return resize8(img, size, Math.floor((size * w) / h), interp);
}

/** Resize(shorter side) + CenterCrop on the 8-bit path, as a SampleTransform (the usual evaluation transform). */
export function resizeCenterCrop8(resizeShort: number, cropSize: number, interp: Interpolation8 = 'bicubic'): SampleTransform {
  return (s) =>
    mapImages(
      s,
      (img) => centerCrop(resizeShorter8(img, resizeShort, interp), cropSize),
      (m) => centerCrop(resizeShorter(m, resizeShort, 'nearest'), cropSize),
    );
}

/** Direct resize to a fixed size on the 8-bit path (VTAB-1k / PYRA: 224×224 bicubic), as a SampleTransform. */
export function resizeTo8(size: number | [number, number], interp: Interpolation8 = 'bicubic'): SampleTransform {
  const [oh, ow] = typeof size === 'number' ? [size, size] : size;
  return (s) => mapImages(s, (img) => resize8(img, oh, ow, interp), (m) => resize(m, oh, ow, 'nearest'));
}

/** A released model's evaluation preprocessing. */
export interface EvalPreprocess {
  /** Resize: shorter side to this (then center crop), or 'direct' to resize straight to the crop size. */
  resize: number | 'direct';
  crop: number;
  interp: Interpolation8;
  stats: NormStats;
}

/**
 * timm's evaluation transform from a `pretrained_cfg` (timm `data/transforms_factory.py` `transforms_imagenet_eval`):
 * Resize(floor(size / crop_pct)) + CenterCrop(size), the model's interpolation, mean and std.
 */
export function timmEvalPreprocess(cfg: { input_size: number[]; crop_pct?: number; interpolation?: string; mean: number[]; std: number[] }): EvalPreprocess {
  const size = cfg.input_size[cfg.input_size.length - 1];
  const crop = cfg.crop_pct ?? 0.875;
  const interp = cfg.interpolation === 'bilinear' ? 'bilinear' : 'bicubic';
  return { resize: Math.floor(size / crop), crop: size, interp, stats: { mean: cfg.mean, std: cfg.std } };
}

/** Apply `EvalPreprocess` to a decoded 8-bit image: 8-bit resize, crop, then ToTensor + Normalize. */
export function preprocess8(img: Img, p: EvalPreprocess): Img {
  const resized = p.resize === 'direct' ? resize8(img, p.crop, p.crop, p.interp) : centerCrop(resizeShorter8(img, p.resize, p.interp), p.crop);
  return normalize(resized, p.stats);
}
