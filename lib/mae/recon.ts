/**
 * Reconstruction views for notebooks (as in MAE's `demo/mae_visualize.ipynb`): the input, the masked input (removed
 * patches blanked), the reconstruction, and the reconstruction pasted into the visible patches — as NHWC tensors,
 * as 8-bit RGB pixel buffers, and as one PNG strip (sharp) that `tslab.display.png` shows.
 *
 * With norm-pix targets the network predicts normalised patches; `denormalizePatches` maps them back to pixels with
 * each patch's own mean and (unbiased) variance, which is how norm-pix models are visualised.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../rng';
import { Mae, maeForward, maeGrid } from './mae';
import { MaskPlan } from './masking';
import { patchify, unpatchify, patchValuesToPixels } from './patchify';
import { NORM_PIX_EPS } from './loss';
import { fmtValue } from '../check';

/** The four panels (plus the pixel mask) of a reconstruction, all [B, H, W, C] except `mask` [B, H, W, 1]. */
export type ReconViews = {
  input: tf.Tensor4D;
  /** input with removed patches set to `fill` */
  masked: tf.Tensor4D;
  /** the model's prediction for every patch */
  reconstruction: tf.Tensor4D;
  /** visible patches from the input, removed ones from the reconstruction */
  pasted: tf.Tensor4D;
  /** 1 = removed */
  mask: tf.Tensor4D;
};

/**
 * Assemble the views from an input, a reconstruction and a pixel mask (1 = removed). Returns new tensors.
 * @param maskPixels [B, H, W, 1] or [B, H, W, C]
 */
export function reconstructionViews(input: tf.Tensor4D, reconstruction: tf.Tensor4D, maskPixels: tf.Tensor4D, fill = 0): ReconViews {
  if (input.shape.join() !== reconstruction.shape.join()) {
    throw new Error(`reconstructionViews: input [${input.shape}] and reconstruction [${reconstruction.shape}] differ`);
  }
  const [B, H, W] = input.shape;
  if (maskPixels.shape[0] !== B || maskPixels.shape[1] !== H || maskPixels.shape[2] !== W) {
    throw new Error(`reconstructionViews: mask [${maskPixels.shape}] does not cover images [${input.shape}]`);
  }
  return tf.tidy(() => {
    const m = tf.broadcastTo(maskPixels, input.shape);
    const keep = tf.sub(1, m);
    return {
      input: input.clone(),
      masked: tf.add(tf.mul(input, keep), tf.mul(m, fill)) as tf.Tensor4D,
      reconstruction: reconstruction.clone(),
      pasted: tf.add(tf.mul(input, keep), tf.mul(reconstruction, m)) as tf.Tensor4D,
      mask: maskPixels.clone(),
    };
  });
}

/** Undo norm-pix: pred [B, L, V] (normalised) → pixels with the mean / unbiased std of the true patches [B, L, V]. */
export function denormalizePatches(pred: tf.Tensor3D, truePatches: tf.Tensor3D): tf.Tensor3D {
  return tf.tidy(() => {
    const V = truePatches.shape[2];
    const mean = tf.mean(truePatches, -1, true);
    const varU = tf.div(tf.sum(tf.square(tf.sub(truePatches, mean)), -1, true), V - 1);
    return tf.add(tf.mul(pred, tf.sqrt(tf.add(varU, NORM_PIX_EPS))), mean) as tf.Tensor3D;
  });
}

export interface ReconOptions {
  plan?: MaskPlan;
  rng?: Rng;
  maskRatio?: number;
  /** Value shown in removed patches of the masked view (default 0, i.e. the dataset mean after normalisation). */
  fill?: number;
}

/**
 * Run an MAE on images [B, H, W, C] and return the views (de-normalised when the model uses norm-pix).
 * @example const v = maeReconstruction(mae, x, {rng: new Rng(0)}); await reconPng(v, {mean, std});
 */
export function maeReconstruction(mae: Mae, images: tf.Tensor4D, opts: ReconOptions = {}): ReconViews {
  const grid = maeGrid(mae, images);
  const { patchSize: p, inChans: C } = mae.config.encoder;
  return tf.tidy(() => {
    const o = maeForward(mae, images, { plan: opts.plan, rng: opts.rng ?? (opts.plan ? undefined : new Rng(0)), maskRatio: opts.maskRatio });
    const pred = mae.config.normPixLoss ? denormalizePatches(o.pred, patchify(images, p)) : o.pred;
    const recon = unpatchify(pred, p, C, grid);
    const maskPx = patchValuesToPixels(o.mask, p, grid);
    return reconstructionViews(images, recon, maskPx, opts.fill ?? 0);
  });
}

/** Dispose the tensors of a set of views. */
export function disposeViews(v: ReconViews): void {
  tf.dispose([v.input, v.masked, v.reconstruction, v.pasted, v.mask]);
}

export interface PixelOptions {
  /** Per-channel mean / std used to normalise the inputs (undone here), e.g. fMoW RGB statistics. */
  mean?: readonly number[];
  std?: readonly number[];
  /** Channels shown as R, G, B (default [0, 1, 2]; a single channel is shown as grey). Sentinel-2 true colour after dropping B1: [2, 1, 0]. */
  bands?: readonly number[];
  /** Value range mapped to 0..255 after de-normalisation (default [0, 1]). */
  range?: readonly [number, number];
}

/** One image [H, W, C] (or sample `index` of [B, H, W, C]) → 8-bit RGB pixels, row-major, length H·W·3. */
export function toRgbPixels(img: tf.Tensor, opts: PixelOptions = {}, index = 0): { width: number; height: number; data: Uint8Array } {
  if (img.rank !== 3 && img.rank !== 4) throw new Error(`toRgbPixels: expected [H, W, C] or [B, H, W, C], got [${img.shape}]`);
  const [B, H, W, C] = img.rank === 4 ? img.shape : [1, ...img.shape];
  if (index < 0 || index >= B) throw new Error(`toRgbPixels: sample ${index} out of range (batch ${B})`);
  const bands = opts.bands ?? (C >= 3 ? [0, 1, 2] : [0]);
  for (const b of bands) if (b < 0 || b >= C) throw new Error(`toRgbPixels: band ${b} out of range (image has ${C} channels)`);
  const vals = tf.tidy(() => img.reshape([B, H, W, C]).slice([index, 0, 0, 0], [1, H, W, C]).dataSync()); // [H,W,C] | [B,H,W,C] → sample [1,H,W,C]
  const [lo, hi] = opts.range ?? [0, 1];
  const out = new Uint8Array(H * W * 3);
  for (let i = 0; i < H * W; i++) {
    for (let k = 0; k < 3; k++) {
      const ch = bands[Math.min(k, bands.length - 1)];
      let v = vals[i * C + ch];
      if (opts.std) v *= opts.std[ch];
      if (opts.mean) v += opts.mean[ch];
      const u = Math.round(((v - lo) / (hi - lo)) * 255);
      out[i * 3 + k] = u < 0 ? 0 : u > 255 ? 255 : u;
    }
  }
  return { width: W, height: H, data: out };
}

export interface StripOptions extends PixelOptions {
  /** Sample of the batch (default 0). */
  index?: number;
  /** Integer upscale factor (nearest neighbour), default 1. */
  scale?: number;
  /** Gap between panels in pixels (default 4, white). */
  gap?: number;
}

/** The four panels input | masked | reconstruction | pasted side by side as RGB pixels. */
export function viewsStrip(v: ReconViews, opts: StripOptions = {}): { width: number; height: number; data: Uint8Array } {
  const panels = [v.input, v.masked, v.reconstruction, v.pasted].map((t) => toRgbPixels(t, opts, opts.index ?? 0));
  const s = opts.scale ?? 1;
  const gap = opts.gap ?? 4;
  if (!Number.isInteger(s) || s < 1) throw new Error(`viewsStrip: scale must be a positive integer, got ${fmtValue(s)}`);
  const h = panels[0].height * s;
  const w = panels[0].width * s;
  const width = 4 * w + 3 * gap;
  const data = new Uint8Array(width * h * 3).fill(255);
  panels.forEach((pn, k) => {
    const x0 = k * (w + gap);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const src = (Math.floor(y / s) * pn.width + Math.floor(x / s)) * 3;
        const dst = (y * width + x0 + x) * 3;
        data[dst] = pn.data[src];
        data[dst + 1] = pn.data[src + 1];
        data[dst + 2] = pn.data[src + 2];
      }
  });
  return { width, height: h, data };
}

/** PNG bytes of the four-panel strip (sharp). In a notebook: `tslab.display.png(await reconPng(views, {...}))`. */
export async function reconPng(v: ReconViews, opts: StripOptions = {}): Promise<Uint8Array> {
  const strip = viewsStrip(v, opts);
  // Loaded lazily: only this function needs the native image library.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const sharp = require('sharp') as typeof import('sharp').default;
  const buf = await sharp(Buffer.from(strip.data), { raw: { width: strip.width, height: strip.height, channels: 3 } }).png().toBuffer();
  return new Uint8Array(buf);
}
