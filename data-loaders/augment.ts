/**
 * Random augmentations as `SampleTransform`s (deterministic given the per-sample `Rng` the loader passes), with
 * torchvision semantics: RandomResizedCrop (scale/ratio sampling, bicubic), horizontal flip, colour jitter (random op
 * order, tensor-path formulas), random grayscale, Gaussian blur (9-tap kernel, reflect padding), solarize, and the
 * DINOv2 multi-crop with its *effective* blur probabilities.
 *
 * Geometric ops move `image`, every temporal `frame` (jointly, same crop) and the `mask` (nearest) together.
 * Photometric ops that assume RGB throw on other channel counts; `spectralJitter` is the multispectral-safe variant.
 */
import { Rng } from '../lib/rng';
import { checkKeys, fmtValue, checkNumber, checkOneOf } from '../lib/check';
import { Img, makeImg, shapeOf } from './image';
import type { Sample, SampleTransform, ViewsTransform } from './dataset';
import {
  Box,
  IMAGENET_STATS,
  Interpolation,
  NormStats,
  SENTINEL2_STATS,
  centerCrop,
  flipH,
  normalize,
  pyRound,
  resize,
  resizeShorter,
  resizedCrop,
  sentinelNormalize,
} from './transforms';

/** Apply transforms left to right. */
export function compose(...ts: SampleTransform[]): SampleTransform {
  return (s, rng) => ts.reduce((acc, t) => t(acc, rng), s);
}

/** Map every image of a sample (image, frames) with `f`; the mask with `fm` when given. */
export function mapImages(s: Sample, f: (img: Img) => Img, fm?: (mask: Img) => Img): Sample {
  const out: Sample = { ...s, image: f(s.image) };
  if (s.frames) out.frames = s.frames.map((fr, t) => (t === 0 && fr === s.image ? out.image : f(fr)));
  if (s.mask && fm) out.mask = fm(s.mask);
  else if (s.mask && !fm) throw new Error('mapImages: sample has a mask but the transform gave no mask rule');
  return out;
}

/** A deterministic (non-random) per-image op as a SampleTransform; masks follow with nearest resampling if geometric. */
export function pointwise(f: (img: Img) => Img): SampleTransform {
  return (s) => mapImages(s, f, (m) => m);
}

// ------------------------------------------------------------------------------------------------------------------
// geometric

/**
 * torchvision `RandomResizedCrop.get_params`: up to 10 tries of area ∈ scale·H·W and log-uniform aspect ∈ ratio,
 * w = round(√(area·ar)), h = round(√(area/ar)), accepted if it fits; else a central crop clamped to the ratio range.
 */
export function rrcParams(h: number, w: number, scale: readonly [number, number], ratio: readonly [number, number], rng: Rng): Box {
  const area = h * w;
  const logR = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let t = 0; t < 10; t++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const ar = Math.exp(rng.uniform(logR[0], logR[1]));
    const cw = pyRound(Math.sqrt(target * ar));
    const ch = pyRound(Math.sqrt(target / ar));
    if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
      const top = rng.int(h - ch + 1);
      const left = rng.int(w - cw + 1);
      return { top, left, height: ch, width: cw };
    }
  }
  const inRatio = w / h;
  let cw: number;
  let ch: number;
  if (inRatio < Math.min(ratio[0], ratio[1])) {
    cw = w;
    ch = pyRound(cw / Math.min(ratio[0], ratio[1]));
  } else if (inRatio > Math.max(ratio[0], ratio[1])) {
    ch = h;
    cw = pyRound(ch * Math.max(ratio[0], ratio[1]));
  } else {
    cw = w;
    ch = h;
  }
  return { top: Math.floor((h - ch) / 2), left: Math.floor((w - cw) / 2), height: ch, width: cw };
}

export interface RandomResizedCropOptions {
  size: number | [number, number];
  /** Area fraction range (default [0.08, 1]). */
  scale?: [number, number];
  /** Aspect ratio range (default [3/4, 4/3]). */
  ratio?: [number, number];
  interpolation?: Interpolation;
}

function hw(size: number | [number, number], what = 'size'): [number, number] {
  const [h, w] = typeof size === 'number' ? [size, size] : Array.isArray(size) && size.length === 2 ? size : [NaN, NaN];
  if (!(Number.isInteger(h) && Number.isInteger(w) && h > 0 && w > 0)) {
    throw new Error(`${what}: expected a positive integer or a [height, width] pair of them, got ${fmtValue(size)}`);
  }
  return [h, w];
}

/** Throw unless `p` is a probability. */
function checkP(what: string, p: unknown): void {
  checkNumber(what, p, { min: 0, max: 1 });
}

/** Throw unless `r` is a [lo, hi] range of finite numbers with lo ≤ hi (and lo ≥ `min`, or lo > `min` with `gt`). */
function checkRange(what: string, r: unknown, min: number, gt = false): void {
  const ok = Array.isArray(r) && r.length === 2 && r.every((v) => typeof v === 'number' && Number.isFinite(v)) && r[0] <= r[1] && (gt ? r[0] > min : r[0] >= min);
  if (!ok) throw new Error(`${what}: expected [lo, hi] with ${gt ? `${min} < lo` : `${min} ≤ lo`} ≤ hi, got ${fmtValue(r)}`);
}

/** RandomResizedCrop (bicubic by default); frames share the crop, masks use nearest. Any channel count. */
export function randomResizedCrop(opt: RandomResizedCropOptions): SampleTransform {
  checkKeys('RandomResizedCropOptions', opt, ['size', 'scale', 'ratio', 'interpolation']);
  const [oh, ow] = hw(opt.size, 'RandomResizedCropOptions.size');
  const scale = opt.scale ?? [0.08, 1];
  const ratio = opt.ratio ?? [3 / 4, 4 / 3];
  checkRange('RandomResizedCropOptions.scale', scale, 0, true);
  if (scale[1] > 1) throw new Error(`RandomResizedCropOptions.scale: the area fraction cannot exceed 1, got ${fmtValue(scale)}`);
  checkRange('RandomResizedCropOptions.ratio', ratio, 0, true);
  const interp = opt.interpolation ?? 'bicubic';
  return (s, rng) => {
    const box = rrcParams(s.image.height, s.image.width, scale, ratio, rng);
    return mapImages(
      s,
      (img) => resizedCrop(img, box, oh, ow, interp),
      (m) => resizedCrop(m, box, oh, ow, 'nearest'),
    );
  };
}

/** Horizontal flip with probability p (default 0.5). */
export function randomHFlip(p = 0.5): SampleTransform {
  checkP('randomHFlip: p', p);
  return (s, rng) => (rng.next() < p ? mapImages(s, flipH, flipH) : s);
}

/** Resize to exactly size (e.g. VTAB-1k: direct 224×224 bicubic, no crop). */
export function resizeTo(size: number | [number, number], interp: Interpolation = 'bicubic'): SampleTransform {
  const [oh, ow] = hw(size, 'resizeTo: size');
  return (s) => mapImages(s, (img) => resize(img, oh, ow, interp), (m) => resize(m, oh, ow, 'nearest'));
}

/** torchvision Resize(int) (shorter side) then CenterCrop (the usual eval transform). */
export function resizeCenterCrop(resizeShort: number, cropSize: number, interp: Interpolation = 'bicubic'): SampleTransform {
  checkNumber('resizeCenterCrop: resizeShort', resizeShort, { integer: true, min: 1 });
  checkNumber('resizeCenterCrop: cropSize', cropSize, { integer: true, min: 1 });
  return (s) =>
    mapImages(
      s,
      (img) => centerCrop(resizeShorter(img, resizeShort, interp), cropSize),
      (m) => centerCrop(resizeShorter(m, resizeShort, 'nearest'), cropSize),
    );
}

// ------------------------------------------------------------------------------------------------------------------
// photometric (RGB, values in [0, 1])

function requireRgb(img: Img, what: string): void {
  if (img.channels !== 3) {
    throw new Error(`${what}: needs a 3-channel RGB image, got ${shapeOf(img)}; use spectralJitter for multispectral data`);
  }
}

const clamp01 = (v: number): number => (v < 0 ? 0 : v > 1 ? 1 : v);

/** ITU-R 601 luma as torchvision's tensor `rgb_to_grayscale` (0.2989, 0.587, 0.114). */
function gray(r: number, g: number, b: number): number {
  return 0.2989 * r + 0.587 * g + 0.114 * b;
}

/** Brightness: clamp(f·x). */
export function adjustBrightness(img: Img, f: number): Img {
  const out = makeImg(img.height, img.width, img.channels);
  for (let i = 0; i < img.data.length; i++) out.data[i] = clamp01(f * img.data[i]);
  return out;
}

/** Contrast: blend with the mean grey level of the image. */
export function adjustContrast(img: Img, f: number): Img {
  requireRgb(img, 'adjustContrast');
  let m = 0;
  const d = img.data;
  for (let i = 0; i < d.length; i += 3) m += gray(d[i], d[i + 1], d[i + 2]);
  m /= d.length / 3;
  const out = makeImg(img.height, img.width, 3);
  for (let i = 0; i < d.length; i++) out.data[i] = clamp01(f * d[i] + (1 - f) * m);
  return out;
}

/** Saturation: blend with the per-pixel grey level. */
export function adjustSaturation(img: Img, f: number): Img {
  requireRgb(img, 'adjustSaturation');
  const d = img.data;
  const out = makeImg(img.height, img.width, 3);
  for (let i = 0; i < d.length; i += 3) {
    const gv = gray(d[i], d[i + 1], d[i + 2]);
    for (let c = 0; c < 3; c++) out.data[i + c] = clamp01(f * d[i + c] + (1 - f) * gv);
  }
  return out;
}

/** Hue: rotate H in HSV by `shift` ∈ [−0.5, 0.5] (fraction of the circle). */
export function adjustHue(img: Img, shift: number): Img {
  requireRgb(img, 'adjustHue');
  const d = img.data;
  const out = makeImg(img.height, img.width, 3);
  for (let i = 0; i < d.length; i += 3) {
    const r = d[i];
    const g = d[i + 1];
    const b = d[i + 2];
    const maxc = Math.max(r, g, b);
    const minc = Math.min(r, g, b);
    const v = maxc;
    const cr = maxc - minc;
    const s = maxc > 0 ? cr / maxc : 0;
    let h = 0;
    if (cr > 0) {
      if (maxc === r) h = (g - b) / cr;
      else if (maxc === g) h = 2 + (b - r) / cr;
      else h = 4 + (r - g) / cr;
      h = (h / 6) % 1;
      if (h < 0) h += 1;
    }
    h = (h + shift) % 1;
    if (h < 0) h += 1;
    const h6 = h * 6;
    const k = Math.floor(h6) % 6;
    const f = h6 - Math.floor(h6);
    const p = v * (1 - s);
    const q = v * (1 - s * f);
    const t = v * (1 - s * (1 - f));
    const rgb = [
      [v, t, p],
      [q, v, p],
      [p, v, t],
      [p, q, v],
      [t, p, v],
      [v, p, q],
    ][k];
    out.data[i] = clamp01(rgb[0]);
    out.data[i + 1] = clamp01(rgb[1]);
    out.data[i + 2] = clamp01(rgb[2]);
  }
  return out;
}

/** Grayscale replicated to 3 channels. */
export function toGrayscale(img: Img): Img {
  requireRgb(img, 'toGrayscale');
  const d = img.data;
  const out = makeImg(img.height, img.width, 3);
  for (let i = 0; i < d.length; i += 3) {
    const gv = gray(d[i], d[i + 1], d[i + 2]);
    out.data[i] = out.data[i + 1] = out.data[i + 2] = gv;
  }
  return out;
}

/** Solarize: x ≥ threshold → 1 − x (threshold 128/255 = torchvision's 128 on uint8). Any channel count in [0, 1]. */
export function solarizeImg(img: Img, threshold = 128 / 255): Img {
  const out = makeImg(img.height, img.width, img.channels);
  for (let i = 0; i < img.data.length; i++) out.data[i] = img.data[i] >= threshold ? 1 - img.data[i] : img.data[i];
  return out;
}

/** 1-D Gaussian kernel as torchvision: x = linspace(−(k−1)/2, (k−1)/2, k), exp(−x²/(2σ²)), normalised. */
export function gaussianKernel(k: number, sigma: number): Float64Array {
  checkNumber('gaussianKernel: size', k, { integer: true, min: 1 });
  checkNumber('gaussianKernel: sigma', sigma, { gt: 0 });
  const w = new Float64Array(k);
  let s = 0;
  for (let i = 0; i < k; i++) {
    const x = i - (k - 1) / 2;
    w[i] = Math.exp(-0.5 * (x / sigma) ** 2);
    s += w[i];
  }
  for (let i = 0; i < k; i++) w[i] /= s;
  return w;
}

function reflect(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  i = ((i % period) + period) % period;
  return i < n ? i : period - i;
}

/** Separable Gaussian blur with reflect padding (torch 'reflect': edge pixel not repeated). Any channel count. */
export function gaussianBlurImg(img: Img, sigma: number, kernelSize = 9): Img {
  if (kernelSize % 2 !== 1 || kernelSize < 1) throw new Error(`gaussianBlur: kernel size must be odd, got ${fmtValue(kernelSize)}`);
  const k = gaussianKernel(kernelSize, sigma);
  const r = (kernelSize - 1) / 2;
  const { height: H, width: W, channels: C } = img;
  const tmp = new Float64Array(img.data.length);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < C; c++) {
        let acc = 0;
        for (let t = -r; t <= r; t++) acc += k[t + r] * img.data[(y * W + reflect(x + t, W)) * C + c];
        tmp[(y * W + x) * C + c] = acc;
      }
    }
  }
  const out = makeImg(H, W, C);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < C; c++) {
        let acc = 0;
        for (let t = -r; t <= r; t++) acc += k[t + r] * tmp[(reflect(y + t, H) * W + x) * C + c];
        out.data[(y * W + x) * C + c] = acc;
      }
    }
  }
  return out;
}

export interface ColorJitterOptions {
  brightness?: number;
  contrast?: number;
  saturation?: number;
  hue?: number;
  /** Probability the jitter is applied at all (RandomApply; default 1). */
  p?: number;
}

/**
 * torchvision ColorJitter: factors b, c, s ∈ [max(0, 1 − v), 1 + v], hue ∈ [−h, h], applied in a random order.
 * RGB only (frames jittered with the same draw).
 */
export function colorJitter(opt: ColorJitterOptions): SampleTransform {
  checkKeys('ColorJitterOptions', opt, ['brightness', 'contrast', 'saturation', 'hue', 'p']);
  const { brightness = 0, contrast = 0, saturation = 0, hue = 0, p = 1 } = opt;
  for (const [k, v] of [['brightness', brightness], ['contrast', contrast], ['saturation', saturation]] as const) checkNumber(`colorJitter: ${k}`, v, { min: 0 });
  checkNumber('colorJitter: hue', hue, { min: 0, max: 0.5 });
  checkP('colorJitter: p', p);
  return (s, rng) => {
    if (rng.next() >= p) return s;
    const order = rng.permutation(4);
    const range = (v: number): number => rng.uniform(Math.max(0, 1 - v), 1 + v);
    const bf = brightness > 0 ? range(brightness) : null;
    const cf = contrast > 0 ? range(contrast) : null;
    const sf = saturation > 0 ? range(saturation) : null;
    const hf = hue > 0 ? rng.uniform(-hue, hue) : null;
    const f = (img: Img): Img => {
      requireRgb(img, 'colorJitter');
      let x = img;
      for (const op of order) {
        if (op === 0 && bf !== null) x = adjustBrightness(x, bf);
        else if (op === 1 && cf !== null) x = adjustContrast(x, cf);
        else if (op === 2 && sf !== null) x = adjustSaturation(x, sf);
        else if (op === 3 && hf !== null) x = adjustHue(x, hf);
      }
      return x;
    };
    return mapImages(s, f, (m) => m);
  };
}

/** RandomGrayscale(p). RGB only. */
export function randomGrayscale(p = 0.1): SampleTransform {
  checkP('randomGrayscale: p', p);
  return (s, rng) => (rng.next() < p ? mapImages(s, toGrayscale, (m) => m) : s);
}

/** Gaussian blur with σ ~ U(sigma) applied with probability p (kernel 9 as DINOv2). Any channel count. */
export function randomGaussianBlur(p: number, sigma: [number, number] = [0.1, 2.0], kernelSize = 9): SampleTransform {
  checkP('randomGaussianBlur: p', p);
  checkRange('randomGaussianBlur: sigma', sigma, 0, true);
  checkNumber('randomGaussianBlur: kernelSize', kernelSize, { integer: true, min: 1 });
  return (s, rng) => {
    if (rng.next() >= p) return s;
    const sg = rng.uniform(sigma[0], sigma[1]);
    return mapImages(s, (img) => gaussianBlurImg(img, sg, kernelSize), (m) => m);
  };
}

/** RandomSolarize(threshold, p) on [0, 1] data. */
export function randomSolarize(p: number, threshold = 128 / 255): SampleTransform {
  checkP('randomSolarize: p', p);
  checkNumber('randomSolarize: threshold', threshold);
  return (s, rng) => (rng.next() < p ? mapImages(s, (img) => solarizeImg(img, threshold), (m) => m) : s);
}

/**
 * Multispectral-safe photometric jitter: per image a gain ∈ [1 − brightness, 1 + brightness] and a contrast factor
 * around each band's own mean, the same for all bands (band ratios such as NDVI are preserved up to the contrast
 * blend). Works on any channel count and on raw or normalised values (no clamping).
 */
export function spectralJitter(opt: { brightness?: number; contrast?: number; p?: number }): SampleTransform {
  checkKeys('spectralJitter options', opt, ['brightness', 'contrast', 'p']);
  const { brightness = 0, contrast = 0, p = 1 } = opt;
  checkNumber('spectralJitter: brightness', brightness, { min: 0, max: 1 });
  checkNumber('spectralJitter: contrast', contrast, { min: 0 });
  checkP('spectralJitter: p', p);
  return (s, rng) => {
    if (rng.next() >= p) return s;
    const g = rng.uniform(1 - brightness, 1 + brightness);
    const cf = rng.uniform(Math.max(0, 1 - contrast), 1 + contrast);
    const f = (img: Img): Img => {
      const C = img.channels;
      const mean = new Float64Array(C);
      for (let i = 0; i < img.data.length; i++) mean[i % C] += img.data[i];
      for (let c = 0; c < C; c++) mean[c] /= img.height * img.width;
      const out = makeImg(img.height, img.width, C);
      for (let i = 0; i < img.data.length; i++) {
        const c = i % C;
        out.data[i] = g * (cf * img.data[i] + (1 - cf) * mean[c]);
      }
      return out;
    };
    return mapImages(s, f, (m) => m);
  };
}

/** Per-channel (x − mean)/std as a SampleTransform. */
export function normalizeWith(stats: NormStats = IMAGENET_STATS): SampleTransform {
  return (s) => mapImages(s, (img) => normalize(img, stats), (m) => m);
}

/** SatMAE SentinelNormalize as a SampleTransform (13-band statistics by default). */
export function sentinelNormalizeWith(stats: NormStats = SENTINEL2_STATS, quantize = true): SampleTransform {
  return (s) => mapImages(s, (img) => sentinelNormalize(img, stats, quantize), (m) => m);
}

// ------------------------------------------------------------------------------------------------------------------
// DINOv2 multi-crop

export interface MultiCropOptions {
  /** Global crop size (default 224). */
  globalSize?: number;
  /** Local crop size (default 96; 98 in the patch-14 configs). */
  localSize?: number;
  /** Number of local crops (default 8). */
  nLocal?: number;
  globalScale?: [number, number];
  localScale?: [number, number];
  /**
   * 'effective' (default): the blur probabilities the released DINOv2 code really applies (global 1: 0, global 2: 0.9,
   * local: 0.5) because its GaussianBlur helper inverts p; 'intended': 1.0 / 0.1 / 0.5 as written in the config.
   */
  blurMode?: 'effective' | 'intended';
  /** Normalisation at the end (default ImageNet; null: none). */
  normalize?: NormStats | null;
  /** false for multispectral data: colour jitter/grayscale/solarize are skipped, geometry and blur kept. */
  rgb?: boolean;
}

/** Blur probabilities [global1, global2, local] of a blur mode. */
export function multiCropBlurProbs(mode: 'effective' | 'intended'): [number, number, number] {
  return mode === 'effective' ? [0, 0.9, 0.5] : [1, 0.1, 0.5];
}

/**
 * DINOv2 `DataAugmentationDINO`: 2 global crops then `nLocal` local crops. Each: RandomResizedCrop (bicubic) + hflip
 * 0.5, colour jitter (0.4, 0.4, 0.2, 0.1) w.p. 0.8, grayscale 0.2, then blur (probabilities per `blurMode`), solarize
 * 0.2 on global crop 2 only, then normalisation. Views are returned in the order [g1, g2, l1 … ln].
 */
export function dinoMultiCrop(opt: MultiCropOptions = {}): ViewsTransform {
  checkKeys('MultiCropOptions', opt, [
    'globalSize',
    'localSize',
    'nLocal',
    'globalScale',
    'localScale',
    'blurMode',
    'normalize',
    'rgb',
  ]);
  const gs = opt.globalSize ?? 224;
  const ls = opt.localSize ?? 96;
  const nLocal = opt.nLocal ?? 8;
  checkNumber('MultiCropOptions.nLocal', nLocal, { integer: true, min: 0 });
  hw(gs, 'MultiCropOptions.globalSize');
  hw(ls, 'MultiCropOptions.localSize');
  if (opt.blurMode !== undefined) checkOneOf('MultiCropOptions.blurMode', opt.blurMode, ['effective', 'intended']);
  const rgb = opt.rgb ?? true;
  const [pg1, pg2, pl] = multiCropBlurProbs(opt.blurMode ?? 'effective');
  const norm = opt.normalize === undefined ? IMAGENET_STATS : opt.normalize;
  const geomG = compose(randomResizedCrop({ size: gs, scale: opt.globalScale ?? [0.32, 1] }), randomHFlip(0.5));
  const geomL = compose(randomResizedCrop({ size: ls, scale: opt.localScale ?? [0.05, 0.32] }), randomHFlip(0.5));
  const colour = rgb
    ? compose(colorJitter({ brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1, p: 0.8 }), randomGrayscale(0.2))
    : (s: Sample) => s;
  const tail: SampleTransform = norm ? normalizeWith(norm) : (s) => s;
  const g1 = compose(geomG, colour, randomGaussianBlur(pg1), tail);
  const g2 = compose(geomG, colour, randomGaussianBlur(pg2), rgb ? randomSolarize(0.2) : (s) => s, tail);
  const loc = compose(geomL, colour, randomGaussianBlur(pl), tail);
  return (s, rng) => {
    const views = [g1(s, rng.fork('global1')), g2(s, rng.fork('global2'))];
    for (let k = 0; k < nLocal; k++) views.push(loc(s, rng.fork(`local${k}`)));
    return views;
  };
}
