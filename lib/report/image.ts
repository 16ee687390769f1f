/**
 * Images for notebooks: tensors or pixel buffers → PNG outputs (MAE reconstructions, ToMe merge maps, sample grids).
 *
 * The PNG encoder is synchronous and dependency-free (zlib from Node), so images can be shown from inside loops.
 * Pixels are 8-bit, row-major, interleaved: `data[(y·width + x)·channels + c]`.
 */
import * as tf from '@tensorflow/tfjs';
import { deflateSync } from 'zlib';
import { MimeBundle, displayBundle, escapeHtml } from './display';

/** An 8-bit image. channels: 1 grey, 3 RGB, 4 RGBA. */
export interface Image {
  width: number;
  height: number;
  channels: 1 | 3 | 4;
  data: Uint8Array;
}

function checkImage(img: Image, what = 'image'): void {
  const { width: w, height: h, channels: c } = img;
  if (!Number.isInteger(w) || !Number.isInteger(h) || w <= 0 || h <= 0) throw new Error(`${what}: bad size ${w}x${h}`);
  if (c !== 1 && c !== 3 && c !== 4) throw new Error(`${what}: channels must be 1, 3 or 4, got ${c}`);
  if (img.data.length !== w * h * c) throw new Error(`${what}: ${img.data.length} bytes for ${w}x${h}x${c} (${w * h * c})`);
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (PNG / zlib polynomial). */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, body: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.write(type, 4, 'ascii');
  Buffer.from(body.buffer, body.byteOffset, body.byteLength).copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + body.length)), 8 + body.length);
  return out;
}

/** Encode an image as PNG (8-bit grey / RGB / RGBA, filter 0, zlib level 6). */
export function encodePng(img: Image): Buffer {
  checkImage(img, 'encodePng');
  const { width: w, height: h, channels: c } = img;
  const colorType = c === 1 ? 0 : c === 3 ? 2 : 6;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = colorType;
  // compression 0, filter 0, interlace 0
  const stride = w * c;
  const raw = Buffer.alloc((stride + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (stride + 1)] = 0; // filter: none
    Buffer.from(img.data.buffer, img.data.byteOffset + y * stride, stride).copy(raw, y * (stride + 1) + 1);
  }
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([sig, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 6 })), chunk('IEND', new Uint8Array(0))]);
}

export interface ToImageOptions {
  /**
   * Value range mapped to 0..255: [lo, hi] (default [0, 1]) or 'auto' (the tensor's own min..max). Values outside
   * are clipped.
   */
  range?: readonly [number, number] | 'auto';
  /** Undo a per-channel normalisation first: x·std + mean (e.g. ImageNet statistics). */
  mean?: readonly number[];
  std?: readonly number[];
}

/**
 * A tensor → 8-bit image. Accepts [H, W] (grey), [H, W, C] or [1, H, W, C] with C ∈ {1, 3, 4} (NHWC, the kit's layout).
 */
export function tensorToImage(t: tf.Tensor, o: ToImageOptions = {}): Image {
  let shape = t.shape;
  if (shape.length === 4) {
    if (shape[0] !== 1) throw new Error(`tensorToImage: a 4-D tensor must have batch 1, got [${shape}] (use imageGrid for a batch)`);
    shape = shape.slice(1);
  }
  if (shape.length === 2) shape = [shape[0], shape[1], 1];
  if (shape.length !== 3) throw new Error(`tensorToImage: expected [H,W], [H,W,C] or [1,H,W,C], got [${t.shape}]`);
  const [h, w, c] = shape;
  if (c !== 1 && c !== 3 && c !== 4) throw new Error(`tensorToImage: channels must be 1, 3 or 4, got [${t.shape}]`);
  const values = t.dataSync();
  const mean = o.mean ?? null;
  const std = o.std ?? null;
  if ((mean && mean.length !== c) || (std && std.length !== c)) {
    throw new Error(`tensorToImage: mean/std need ${c} values (one per channel), got ${mean?.length ?? '-'} / ${std?.length ?? '-'}`);
  }
  const x = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const ch = i % c;
    x[i] = values[i] * (std ? std[ch] : 1) + (mean ? mean[ch] : 0);
  }
  let lo: number;
  let hi: number;
  if (o.range === 'auto') {
    lo = Infinity;
    hi = -Infinity;
    for (const v of x) {
      if (Number.isFinite(v)) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    }
    if (!Number.isFinite(lo)) [lo, hi] = [0, 1];
  } else {
    [lo, hi] = o.range ?? [0, 1];
  }
  const span = hi > lo ? hi - lo : 1;
  const data = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = Number.isFinite(x[i]) ? (x[i] - lo) / span : 0;
    data[i] = Math.round(Math.min(1, Math.max(0, v)) * 255);
  }
  return { width: w, height: h, channels: c as 1 | 3 | 4, data };
}

/** Convert to RGB (grey replicated, alpha composited over white). */
export function toRgb(img: Image): Image {
  checkImage(img);
  if (img.channels === 3) return img;
  const n = img.width * img.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < 3; ch++) {
      if (img.channels === 1) out[i * 3 + ch] = img.data[i];
      else {
        const a = img.data[i * 4 + 3] / 255;
        out[i * 3 + ch] = Math.round(img.data[i * 4 + ch] * a + 255 * (1 - a));
      }
    }
  }
  return { width: img.width, height: img.height, channels: 3, data: out };
}

/** Nearest-neighbour upscaling by an integer factor (keeps patches crisp). */
export function upscale(img: Image, factor: number): Image {
  checkImage(img);
  if (!Number.isInteger(factor) || factor < 1) throw new Error(`upscale: factor must be an integer ≥ 1, got ${factor}`);
  if (factor === 1) return img;
  const { width: w, height: h, channels: c } = img;
  const W = w * factor;
  const out = new Uint8Array(W * h * factor * c);
  for (let y = 0; y < h * factor; y++) {
    const sy = Math.floor(y / factor);
    for (let x = 0; x < W; x++) {
      const s = (sy * w + Math.floor(x / factor)) * c;
      const d = (y * W + x) * c;
      for (let ch = 0; ch < c; ch++) out[d + ch] = img.data[s + ch];
    }
  }
  return { width: W, height: h * factor, channels: c, data: out };
}

export interface GridOptions {
  /** Images per row (default: ceil(sqrt(n))). */
  cols?: number;
  /** Gap between images in px (default 2). */
  pad?: number;
  /** Gap colour, RGB (default white). */
  background?: readonly [number, number, number];
}

/** Tile images (any sizes; cells take the largest size) into one RGB image, row-major. */
export function imageGrid(images: Image[], o: GridOptions = {}): Image {
  if (images.length === 0) throw new Error('imageGrid: no images');
  const rgb = images.map((im, i) => {
    checkImage(im, `imageGrid[${i}]`);
    return toRgb(im);
  });
  const cols = o.cols ?? Math.ceil(Math.sqrt(rgb.length));
  if (!Number.isInteger(cols) || cols < 1) throw new Error(`imageGrid: cols must be an integer ≥ 1, got ${cols}`);
  const rows = Math.ceil(rgb.length / cols);
  const pad = o.pad ?? 2;
  const bg = o.background ?? [255, 255, 255];
  const cw = Math.max(...rgb.map((im) => im.width));
  const ch = Math.max(...rgb.map((im) => im.height));
  const W = cols * cw + (cols + 1) * pad;
  const H = rows * ch + (rows + 1) * pad;
  const out = new Uint8Array(W * H * 3);
  for (let i = 0; i < W * H; i++) out.set(bg, i * 3);
  rgb.forEach((im, k) => {
    const ox = pad + (k % cols) * (cw + pad);
    const oy = pad + Math.floor(k / cols) * (ch + pad);
    for (let y = 0; y < im.height; y++) {
      out.set(im.data.subarray(y * im.width * 3, (y + 1) * im.width * 3), ((oy + y) * W + ox) * 3);
    }
  });
  return { width: W, height: H, channels: 3, data: out };
}

/** Split a batch tensor [N, H, W, C] (or [N, H, W]) into images. */
export function batchToImages(batch: tf.Tensor, o: ToImageOptions = {}): Image[] {
  if (batch.rank !== 3 && batch.rank !== 4) throw new Error(`batchToImages: expected [N,H,W] or [N,H,W,C], got [${batch.shape}]`);
  const n = batch.shape[0];
  const range = o.range === 'auto' ? (tf.tidy(() => [batch.min().dataSync()[0], batch.max().dataSync()[0]]) as [number, number]) : o.range;
  const out: Image[] = [];
  for (let i = 0; i < n; i++) {
    const one = tf.tidy(() => batch.slice(i, 1).squeeze([0])); // [H, W(, C)]
    out.push(tensorToImage(one, { ...o, range }));
    one.dispose();
  }
  return out;
}

/**
 * Paint a patch-level segmentation over an image (ToMe merge maps): every cell of the `gridH × gridW` patch grid gets
 * the mean colour of all patches sharing its label, and borders are drawn where neighbouring labels differ.
 * @param labels [gridH·gridW] group id of each patch (row-major).
 */
export function segmentOverlay(
  img: Image,
  labels: ArrayLike<number>,
  gridH: number,
  gridW: number,
  o: { border?: readonly [number, number, number]; fill?: 'mean' | 'none' } = {},
): Image {
  const rgb = toRgb(img);
  if (labels.length !== gridH * gridW) throw new Error(`segmentOverlay: ${labels.length} labels for a ${gridH}x${gridW} grid`);
  if (rgb.height % gridH || rgb.width % gridW) {
    throw new Error(`segmentOverlay: image ${rgb.width}x${rgb.height} is not divisible into a ${gridH}x${gridW} patch grid`);
  }
  const ph = rgb.height / gridH;
  const pw = rgb.width / gridW;
  const W = rgb.width;
  const out = Uint8Array.from(rgb.data);
  const cell = (y: number, x: number): number => Math.floor(y / ph) * gridW + Math.floor(x / pw);
  if ((o.fill ?? 'mean') === 'mean') {
    const sums = new Map<number, [number, number, number, number]>();
    for (let y = 0; y < rgb.height; y++) {
      for (let x = 0; x < W; x++) {
        const l = labels[cell(y, x)];
        const s = sums.get(l) ?? [0, 0, 0, 0];
        const i = (y * W + x) * 3;
        s[0] += rgb.data[i];
        s[1] += rgb.data[i + 1];
        s[2] += rgb.data[i + 2];
        s[3] += 1;
        sums.set(l, s);
      }
    }
    for (let y = 0; y < rgb.height; y++) {
      for (let x = 0; x < W; x++) {
        const s = sums.get(labels[cell(y, x)])!;
        const i = (y * W + x) * 3;
        for (let ch = 0; ch < 3; ch++) out[i + ch] = Math.round(s[ch] / s[3]);
      }
    }
  }
  const border = o.border ?? [255, 255, 255];
  for (let y = 0; y < rgb.height; y++) {
    for (let x = 0; x < W; x++) {
      const l = labels[cell(y, x)];
      const edge = (x + 1 < W && labels[cell(y, x + 1)] !== l) || (y + 1 < rgb.height && labels[cell(y + 1, x)] !== l);
      if (edge) out.set(border, (y * W + x) * 3);
    }
  }
  return { width: W, height: rgb.height, channels: 3, data: out };
}

/** Integer upscale factor that makes the longer side at least `target` px (capped at 16). */
export function autoScale(img: Pick<Image, 'width' | 'height'>, target = 256): number {
  return Math.max(1, Math.min(16, Math.floor(target / Math.max(img.width, img.height))));
}

export interface ShowImageOptions {
  /** Integer upscale factor (default: `autoScale`, so small images are readable). */
  scale?: number;
  /** Caption under the image. */
  caption?: string;
}

/** The image as a MIME bundle (image/png base64 + text/plain). */
export function pngBundle(img: Image | tf.Tensor, o: ShowImageOptions = {}): MimeBundle {
  const im = img instanceof tf.Tensor ? tensorToImage(img) : img;
  checkImage(im);
  const big = upscale(im, o.scale ?? autoScale(im));
  const b64 = encodePng(big).toString('base64');
  const text = `<image ${im.width}x${im.height}x${im.channels}${o.caption ? `: ${o.caption}` : ''}>`;
  if (!o.caption) return { 'image/png': b64, 'text/plain': text };
  return {
    'text/html': `<figure style="margin:0"><img src="data:image/png;base64,${b64}"/><figcaption>${escapeHtml(o.caption)}</figcaption></figure>`,
    'image/png': b64,
    'text/plain': text,
  };
}

/** Show one image (a tensor [H,W(,C)] with values in [0,1], or an `Image`). */
export function showImage(img: Image | tf.Tensor, o: ShowImageOptions = {}): void {
  displayBundle(pngBundle(img, o));
}

/** One cell of an image table. */
export interface ImageCell {
  image: Image;
  caption?: string;
}

/**
 * Show rows of captioned images as an HTML table (e.g. MAE: original | masked | reconstruction per sample). Each
 * image is upscaled by `scale` (default: auto from the first image).
 */
export function showImageTable(rows: ImageCell[][], o: { scale?: number; header?: string[] } = {}): void {
  if (rows.length === 0 || rows.every((r) => r.length === 0)) throw new Error('showImageTable: no images');
  const first = rows.find((r) => r.length)![0].image;
  const scale = o.scale ?? autoScale(first, 128);
  const head = o.header ? `<tr>${o.header.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr>` : '';
  const body = rows
    .map(
      (r) =>
        `<tr>${r
          .map((c) => {
            const b64 = encodePng(upscale(c.image, scale)).toString('base64');
            const cap = c.caption ? `<br/><small>${escapeHtml(c.caption)}</small>` : '';
            return `<td style="text-align:center"><img src="data:image/png;base64,${b64}"/>${cap}</td>`;
          })
          .join('')}</tr>`,
    )
    .join('');
  const grid = imageGrid(rows.flatMap((r) => r.map((c) => c.image)), { cols: Math.max(...rows.map((r) => r.length)) });
  displayBundle({
    'text/html': `<table class="vitpeft-images">${head}${body}</table>`,
    'image/png': encodePng(upscale(grid, scale)).toString('base64'),
    'text/plain': `<image table ${rows.length}x${Math.max(...rows.map((r) => r.length))}${o.header ? `: ${o.header.join(' | ')}` : ''}>`,
  });
}

/**
 * Show a batch as one grid image: a tensor [N, H, W(, C)] (values in `range`, default [0, 1]) or a list of images.
 * @example showImageGrid(batch.x, {cols: 8, range: 'auto'})
 */
export function showImageGrid(images: tf.Tensor | Image[], o: GridOptions & ToImageOptions & ShowImageOptions = {}): void {
  const list = images instanceof tf.Tensor ? batchToImages(images, o) : images;
  showImage(imageGrid(list, o), { scale: o.scale, caption: o.caption });
}
