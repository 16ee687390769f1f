/**
 * Merge visualisation from source tracking (ToMe `tome/vis.py` `make_visualization`, `merge_source`): every patch is
 * painted with the mean colour of the group (final token) it was merged into, and each group's outline (its mask minus
 * the binary erosion of the mask, 4-neighbourhood, image border counts as outside) is drawn in a per-group colour.
 *
 * Output is a plain RGB pixel buffer (`RgbImage`), and `toPng` encodes it (sharp) so a tslab notebook can show it:
 *   tslab.display.png(await toPng(mergeVisualization(image, out.state.source, { patchSize: 16 })))
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys } from '../check';
import { Rng } from '../rng';
import { Vit } from '../vit/params';
import { vitForward, VitHooks } from '../vit/forward';
import { RSchedule } from './schedule';
import { Pyra } from './pyra';
import { tomeHooks, pyraHooks } from './hooks';

/** 8-bit RGB image, row-major, `data.length = width·height·3`. */
export interface RgbImage {
  width: number;
  height: number;
  channels: 3;
  data: Uint8Array;
}

export interface MergeVisOptions {
  patchSize: number;
  /** Image of the batch to draw (default 0). */
  index?: number;
  /** Value range of the input image mapped to [0, 1] (default [0, 1]); ignored when `denormalize` is given. */
  range?: [number, number];
  /** Undo a per-channel normalisation first: pixel = x·std + mean (e.g. ImageNet mean/std), then clip to [0, 1]. */
  denormalize?: { mean: readonly number[]; std: readonly number[] };
  /** Outline colour: 'random' (seeded colour per group, as ToMe), a fixed [r, g, b] in [0, 1], or 'none'. */
  outline?: 'random' | readonly [number, number, number] | 'none';
  /** Seed of the random outline colours (default 0). */
  seed?: number;
  /** The source map has a cls column first (default true). */
  classToken?: boolean;
}

const VIS_KEYS = ['patchSize', 'index', 'range', 'denormalize', 'outline', 'seed', 'classToken'];

/**
 * Group id (index of the final token) of every patch, row-major over the patch grid.
 * @param source [B, N, N0] or [N, N0] 0/1 source map (cls column first when classToken)
 */
export function mergeGroups(source: tf.Tensor, index = 0, classToken = true): Int32Array {
  if (source.rank !== 2 && source.rank !== 3) throw new Error(`mergeGroups: source must be [B, N, N0] or [N, N0], got shape [${source.shape}]`);
  const [B, N, N0] = (source.rank === 2 ? [1, ...source.shape] : source.shape) as [number, number, number];
  if (!Number.isInteger(index) || index < 0 || index >= B) throw new Error(`mergeGroups: index ${index} out of range for batch ${B}`);
  const vals = tf.tidy(() => source.reshape([B, N, N0]).slice([index, 0, 0], [1, N, N0]).dataSync()); // [1, N, N0]
  const skip = classToken ? 1 : 0;
  const groups = new Int32Array(N0 - skip);
  for (let p = skip; p < N0; p++) {
    let best = 0;
    let bestV = -Infinity;
    for (let t = 0; t < N; t++) {
      const v = vals[t * N0 + p];
      if (v > bestV) {
        bestV = v; // argmax: first maximum wins (torch/numpy convention)
        best = t;
      }
    }
    groups[p - skip] = best;
  }
  return groups;
}

/**
 * Paint the merge groups of one image.
 * @param image [H, W, 3] or [B, H, W, 3] (NHWC, the kit's image layout)
 * @param source [B, N, N0] or [N, N0] from a forward with `traceSource: true` (`out.state.source`)
 */
export function mergeVisualization(image: tf.Tensor, source: tf.Tensor, opts: MergeVisOptions): RgbImage {
  checkKeys('mergeVisualization options', opts, VIS_KEYS);
  const index = opts.index ?? 0;
  const classToken = opts.classToken ?? true;
  if (image.rank !== 3 && image.rank !== 4) throw new Error(`mergeVisualization: image must be [H, W, 3] or [B, H, W, 3], got [${image.shape}]`);
  const [H, W, C] = image.shape.slice(-3);
  if (C !== 3) throw new Error(`mergeVisualization: expected 3 colour channels (NHWC), got ${C} in shape [${image.shape}]`);
  const p = opts.patchSize;
  if (!Number.isInteger(p) || p <= 0 || H % p || W % p) throw new Error(`mergeVisualization: image ${H}x${W} is not a whole number of ${p}-pixel patches`);
  const gh = H / p;
  const gw = W / p;
  const groups = mergeGroups(source, image.rank === 3 ? (source.rank === 3 ? index : 0) : index, classToken);
  if (groups.length !== gh * gw) {
    throw new Error(`mergeVisualization: the source map covers ${groups.length} patches but the image has ${gh}×${gw} = ${gh * gw}`);
  }
  // pixels in [0,1], [H, W, 3]
  const raw = tf.tidy(() => (image.rank === 4 ? image.slice([index, 0, 0, 0], [1, H, W, 3]) : image).dataSync());
  const px = new Float32Array(H * W * 3);
  const [lo, hi] = opts.range ?? [0, 1];
  for (let i = 0; i < H * W; i++) {
    for (let c = 0; c < 3; c++) {
      const v = raw[i * 3 + c];
      const u = opts.denormalize ? v * opts.denormalize.std[c] + opts.denormalize.mean[c] : (v - lo) / (hi - lo);
      px[i * 3 + c] = Math.min(1, Math.max(0, u));
    }
  }
  const groupAt = (y: number, x: number): number => groups[Math.floor(y / p) * gw + Math.floor(x / p)];
  // mean colour per group over all its pixels
  const numGroups = groups.reduce((m, g) => Math.max(m, g), 0) + 1;
  const sum = new Float64Array(numGroups * 3);
  const cnt = new Float64Array(numGroups);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const g = groupAt(y, x);
      cnt[g] += 1;
      for (let c = 0; c < 3; c++) sum[g * 3 + c] += px[(y * W + x) * 3 + c];
    }
  }
  const outline = opts.outline ?? 'random';
  const rng = new Rng(opts.seed ?? 0);
  const edgeColour = Array.from({ length: numGroups }, () =>
    outline === 'random' ? [rng.next(), rng.next(), rng.next()] : outline === 'none' ? null : [...outline],
  );
  const data = new Uint8Array(H * W * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const g = groupAt(y, x);
      const interior =
        y > 0 && y < H - 1 && x > 0 && x < W - 1 && groupAt(y - 1, x) === g && groupAt(y + 1, x) === g && groupAt(y, x - 1) === g && groupAt(y, x + 1) === g;
      const ec = edgeColour[g];
      for (let c = 0; c < 3; c++) {
        const v = interior || !ec ? sum[g * 3 + c] / cnt[g] : ec[c];
        data[(y * W + x) * 3 + c] = Math.min(255, Math.floor(v * 255));
      }
    }
  }
  return { width: W, height: H, channels: 3, data };
}

/** Encode an `RgbImage` as PNG bytes (sharp). */
export async function toPng(img: RgbImage): Promise<Uint8Array> {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const sharp = require('sharp') as (input: Buffer, o: { raw: { width: number; height: number; channels: 3 } }) => { png(): { toBuffer(): Promise<Buffer> } };
  const buf = await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
    raw: { width: img.width, height: img.height, channels: 3 },
  })
    .png()
    .toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/**
 * Run `vit` on `images` with source tracking (ToMe schedule or PYRA) and paint every image's merge groups.
 * @param images [B, H, W, 3] as the model expects them (pass `denormalize` to undo ImageNet normalisation)
 */
export function visualizeMerges(
  vit: Vit,
  images: tf.Tensor4D,
  method: { schedule: RSchedule } | { pyra: Pyra },
  opts: Omit<MergeVisOptions, 'patchSize' | 'index'> & { base?: VitHooks } = {},
): RgbImage[] {
  const { base, ...visOpts } = opts;
  const hooks =
    'pyra' in method
      ? pyraHooks(vit.config, method.pyra, { traceSource: true }, base)
      : tomeHooks(vit.config, { schedule: method.schedule, traceSource: true }, base);
  const source = tf.tidy(() => {
    const out = vitForward(vit, images, { hooks, training: false });
    if (!out.state.source) throw new Error('visualizeMerges: the schedule merged nothing (no source map to draw)');
    return out.state.source;
  });
  try {
    return Array.from({ length: images.shape[0] }, (_, i) =>
      mergeVisualization(images, source, { ...visOpts, patchSize: vit.config.patchSize, index: i }),
    );
  } finally {
    source.dispose();
  }
}
