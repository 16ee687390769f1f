/**
 * The in-memory image of the data pipeline: a float32 HWC array with its shape.
 *
 * Decoding produces `Img`s, sample transforms map `Img` → `Img` in plain JavaScript (deterministic, identical on every
 * backend, and far cheaper than dispatching tfjs kernels per sample on a CPU), and the loader stacks them into NHWC
 * tensors. Values: RGB images decoded from 8-bit files are in [0, 1]; multispectral GeoTIFFs keep their raw digital
 * numbers (e.g. Sentinel-2 reflectance × 10⁴) until a normalisation maps them.
 */
import { fmtValue } from '../lib/check';

/** A float32 image, row-major H×W×C (channel fastest): value (y, x, c) is `data[(y * width + x) * channels + c]`. */
export interface Img {
  data: Float32Array;
  height: number;
  width: number;
  channels: number;
}

/** A new image of the given shape (zero-filled unless `data` is given; `data` must have h·w·c entries). */
export function makeImg(height: number, width: number, channels: number, data?: Float32Array): Img {
  for (const [k, v] of [['height', height], ['width', width], ['channels', channels]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new Error(`makeImg: ${k} must be a positive integer, got ${fmtValue(v)}`);
  }
  const n = height * width * channels;
  if (data && data.length !== n) {
    throw new Error(`makeImg: data has ${data.length} values, expected ${height}×${width}×${channels} = ${n}`);
  }
  return { data: data ?? new Float32Array(n), height, width, channels };
}

/** Shape as a string `H×W×C` for messages. */
export function shapeOf(img: Img): string {
  return `${img.height}×${img.width}×${img.channels}`;
}

/** Throw unless `img` is well formed (`what` names it in the message). */
export function checkImg(img: Img, what: string): void {
  if (!img || !(img.data instanceof Float32Array)) throw new Error(`${what}: not an Img (expected {data: Float32Array, ...})`);
  const n = img.height * img.width * img.channels;
  if (img.data.length !== n) {
    throw new Error(`${what}: data has ${img.data.length} values but shape ${shapeOf(img)} needs ${n}`);
  }
}

/** Image from 8- or 16-bit integer samples, scaled by `scale` (default 1/255 → [0, 1] for 8-bit data). */
export function imgFromInts(
  src: ArrayLike<number>,
  height: number,
  width: number,
  channels: number,
  scale = 1 / 255,
): Img {
  const img = makeImg(height, width, channels);
  if (src.length !== img.data.length) {
    throw new Error(`imgFromInts: got ${fmtValue(src.length)} samples, expected ${height}×${width}×${channels} = ${img.data.length}`);
  }
  for (let i = 0; i < src.length; i++) img.data[i] = src[i] * scale;
  return img;
}

/** 8-bit samples (round, clamp to [0, 255]) of an image whose values are in [0, 1]. */
export function toUint8(img: Img): Uint8Array {
  const out = new Uint8Array(img.data.length);
  for (let i = 0; i < out.length; i++) {
    const v = Math.round(img.data[i] * 255);
    out[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
  return out;
}
