/**
 * Decoding image files into `Img`s with well-kept libraries: `sharp` (libvips) for JPEG/PNG/WebP and 8-bit RGB TIFFs,
 * `geotiff` for multi-band GeoTIFFs (any band count, integer or float samples, georeferencing kept).
 *
 * Every failure (missing file, unknown format, corrupt or truncated data, wrong band count, an image over the decode
 * limits of limits.ts) throws an error that names the file; a bad sample never becomes zeros. sharp runs with
 * `failOn: 'warning'`, so a truncated JPEG is an error, not a grey bottom half. The header is read first and checked
 * against the limits before the pixels are decoded; the decode itself holds its share of the process-wide decode
 * memory budget.
 *
 * Fidelity: 16-bit PNG/TIFF samples keep their 16 bits (default scale 1/65535 → [0, 1]); Pillow would reduce 16-bit
 * RGB to 8 bits. `mode: 'keep'` keeps grey (1), grey + alpha (2), RGB (3), RGBA (4) and CMYK (4) as stored.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import * as GeoTIFF from 'geotiff';
import { Img, imgFromInts, makeImg } from './image';
import { DecodeLimitError, DecodePlan, checkDecodePlan, decodeBytes, decodeLimits, withDecodeMemory } from './limits';
import { checkKeys, checkNumber, checkOneOf, fmtValue } from '../lib/check';

/** Georeferencing of a GeoTIFF (north-up affine; `resolution[1]` is negative for north-up rasters). */
export interface GeoInfo {
  /** World coordinates of the top-left corner of pixel (0, 0): [x, y]. */
  origin: [number, number];
  /** Pixel size in world units: [dx, dy]. */
  resolution: [number, number];
  /** EPSG code of the CRS when the file declares one (4326 = lon/lat WGS84), else null. */
  epsg: number | null;
}

export interface DecodeOptions {
  /**
   * 'rgb' (default for JPEG/PNG): 3 channels, grey expanded and alpha dropped (PIL `.convert('RGB')`);
   * 'keep': channels as stored (grey 1, grey + alpha 2, RGB 3, RGBA 4, CMYK 4). GeoTIFFs always keep their bands.
   */
  mode?: 'rgb' | 'keep';
  /** Expected channel count; anything else is an error naming the file. */
  bands?: number;
  /**
   * Multiplier for integer samples: default 1/255 for 8-bit and 1/65535 for 16-bit files decoded by sharp (→ [0, 1]),
   * 1 (raw values) for GeoTIFFs.
   */
  scale?: number;
  /** Per-call override of the process-wide `maxPixels` limit (limits.ts). */
  maxPixels?: number;
  /** Per-call override of the process-wide `maxExpansion` limit (limits.ts). */
  maxExpansion?: number;
}

const TIFF_EXT = new Set(['.tif', '.tiff']);
/** File extensions the kit decodes, lower case. */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff'] as const;

/** Read a whole file; a missing or unreadable file is an error naming it. */
export async function readFileChecked(file: string, what = 'file'): Promise<Buffer> {
  try {
    return await fsp.readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`missing ${what}: ${file}`);
    throw new Error(`cannot read ${what} ${file}: ${(e as Error).message}`);
  }
}

const DECODE_KEYS = ['mode', 'bands', 'scale', 'maxPixels', 'maxExpansion'] as const;

/** Validate decode options (`source` names the file): unknown keys, strings where numbers belong, NaN limits. */
export function checkDecodeOptions(opt: DecodeOptions, source: string): void {
  const what = `${source}: DecodeOptions`;
  checkKeys(what, opt, DECODE_KEYS);
  if (opt.mode !== undefined) checkOneOf(`${what}.mode`, opt.mode, ['rgb', 'keep']);
  if (opt.bands !== undefined) checkNumber(`${what}.bands`, opt.bands, { integer: true, min: 1 });
  if (opt.scale !== undefined) checkNumber(`${what}.scale`, opt.scale, { gt: 0 });
  for (const k of ['maxPixels', 'maxExpansion'] as const) {
    const v = opt[k];
    if (v !== undefined && !(typeof v === 'number' && v > 0)) throw new Error(`${what}.${k}: expected a number > 0 (Infinity allowed), got ${fmtValue(v)}`);
  }
}

/** `readFileChecked` for an image: a file larger than the decode memory budget is refused before it is read. */
async function readImageFile(file: string, what: string): Promise<Buffer> {
  const budget = decodeLimits().memoryBudget;
  const st = await fsp.stat(file).catch(() => null); // a missing file is reported by readFileChecked
  if (st && st.size > budget) {
    throw new Error(`${file}: ${st.size.toLocaleString('en')}-byte ${what} is larger than the decode memory budget of ${budget.toLocaleString('en')} bytes (setDecodeLimits({memoryBudget}))`);
  }
  return readFileChecked(file, what);
}

function checkBands(img: Img, source: string, bands: number | undefined): Img {
  if (bands !== undefined && img.channels !== bands) {
    throw new Error(`${source}: ${img.channels} band${img.channels === 1 ? '' : 's'}, expected ${bands}`);
  }
  return img;
}

/**
 * Decode a JPEG/PNG/WebP buffer with sharp: header first (checked against the decode limits), then the pixels, 8- or
 * 16-bit as stored. `source` names it in errors.
 */
export async function decodeWithSharp(buf: Buffer, source: string, opt: DecodeOptions = {}): Promise<Img> {
  checkDecodeOptions(opt, source);
  const mode = opt.mode ?? 'rgb';
  const maxPixels = opt.maxPixels ?? decodeLimits().maxPixels;
  // the header is read without sharp's own pixel limit so that our check (with its clearer message) decides
  const open = (limit: boolean): ReturnType<typeof sharp> =>
    sharp(buf, { failOn: 'warning', limitInputPixels: limit && Number.isFinite(maxPixels) ? maxPixels : false });
  let meta: Awaited<ReturnType<ReturnType<typeof sharp>['metadata']>>;
  try {
    meta = await open(false).metadata();
  } catch (e) {
    throw new Error(`${source}: cannot decode image (${(e as Error).message.split('\n')[0]})`);
  }
  const deep = meta.depth === 'ushort';
  const stored = meta.channels ?? 0;
  const cmyk = meta.space === 'cmyk';
  // what sharp outputs: sRGB(A) / rgb16, except grey kept as grey and CMYK kept as CMYK in 'keep' mode; grey + alpha
  // is decoded as RGBA (R = G = B = grey, exactly) and reduced to its grey and alpha channels below
  const outChannels = mode === 'rgb' ? 3 : cmyk ? 4 : stored === 2 ? 4 : stored;
  const plan: DecodePlan = { height: meta.height ?? 0, width: meta.width ?? 0, channels: outChannels, bytesPerSample: deep ? 2 : 1, fileBytes: buf.length };
  checkDecodePlan(plan, source, opt);
  return withDecodeMemory(decodeBytes(plan), async () => {
    let out: { data: Buffer; info: { width: number; height: number; channels: number } };
    try {
      let p = open(true);
      if (mode === 'rgb') p = p.removeAlpha().toColourspace(deep ? 'rgb16' : 'srgb');
      else if (cmyk) p = p.toColourspace('cmyk');
      else if (stored === 1) p = p.toColourspace(deep ? 'grey16' : 'b-w');
      else p = p.toColourspace(deep ? 'rgb16' : 'srgb');
      out = await p.raw({ depth: deep ? 'ushort' : 'uchar' }).toBuffer({ resolveWithObject: true });
    } catch (e) {
      const msg = (e as Error).message.split('\n')[0];
      throw new Error(`${source}: cannot decode image (${msg})`);
    }
    const { width, height, channels } = out.info;
    const bps = deep ? 2 : 1;
    if (channels !== outChannels || out.data.length !== width * height * channels * bps) {
      throw new Error(`${source}: decoder returned ${out.data.length} bytes for ${height}×${width}×${channels} (expected ${outChannels} channels of ${bps} byte(s))`);
    }
    let samples: ArrayLike<number> = deep ? new Uint16Array(out.data.buffer, out.data.byteOffset, out.data.length / 2) : out.data;
    let c: number = channels;
    if (mode === 'keep' && !cmyk && stored === 2) {
      const ga = deep ? new Uint16Array(width * height * 2) : new Uint8Array(width * height * 2);
      for (let i = 0, j = 0; j < ga.length; i += 4, j += 2) {
        ga[j] = samples[i];
        ga[j + 1] = samples[i + 3];
      }
      samples = ga;
      c = 2;
    }
    const img = imgFromInts(samples, height, width, c, opt.scale ?? (deep ? 1 / 65535 : 1 / 255));
    return checkBands(img, source, opt.bands ?? (mode === 'rgb' ? 3 : undefined));
  });
}

/** Decode a (Geo)TIFF buffer with geotiff.js: all bands, raw sample values × `scale` (default 1). */
export async function decodeGeoTiff(
  buf: Buffer,
  source: string,
  opt: DecodeOptions = {},
): Promise<{ img: Img; geo: GeoInfo | null }> {
  checkDecodeOptions(opt, source);
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
  let img: Img;
  let geo: GeoInfo | null = null;
  try {
    const tiff = await GeoTIFF.fromArrayBuffer(ab);
    const image = await tiff.getImage();
    const width = image.getWidth();
    const height = image.getHeight();
    const channels = image.getSamplesPerPixel();
    checkStrips(image, ab.byteLength, source);
    const bytesPerSample = Math.max(1, ...Array.from({ length: channels }, (_, i) => image.getSampleByteSize(i)));
    const plan: DecodePlan = { height, width, channels, bytesPerSample, fileBytes: buf.length };
    checkDecodePlan(plan, source, opt);
    img = await withDecodeMemory(decodeBytes(plan), async () => {
      const rasters = (await image.readRasters({ interleave: true })) as unknown as ArrayLike<number>;
      if (rasters.length !== width * height * channels) {
        throw new Error(`decoded ${rasters.length} samples, expected ${height}×${width}×${channels}`);
      }
      const out = makeImg(height, width, channels);
      const scale = opt.scale ?? 1;
      for (let i = 0; i < rasters.length; i++) out.data[i] = rasters[i] * scale;
      return out;
    });
    geo = geoInfo(image);
  } catch (e) {
    if (e instanceof DecodeLimitError) throw e;
    const msg = (e as Error).message.split('\n')[0];
    throw new Error(`${source}: cannot decode GeoTIFF (${msg})`);
  }
  for (let i = 0; i < img.data.length; i++) {
    if (!Number.isFinite(img.data[i])) {
      const px = Math.floor(i / img.channels);
      throw new Error(
        `${source}: non-finite value ${img.data[i]} at pixel (y=${Math.floor(px / img.width)}, x=${px % img.width}), band ${i % img.channels}`,
      );
    }
  }
  return { img: checkBands(img, source, opt.bands), geo };
}

/** Strip/tile data must lie inside the file (a truncated TIFF is an error, never silently short). */
function checkStrips(image: GeoTIFF.GeoTIFFImage, fileBytes: number, source: string): void {
  const fd = (image as unknown as { fileDirectory: { getValue?(k: string): unknown } }).fileDirectory;
  if (!fd || typeof fd.getValue !== 'function') return;
  for (const [offKey, cntKey] of [
    ['StripOffsets', 'StripByteCounts'],
    ['TileOffsets', 'TileByteCounts'],
  ]) {
    let offs: ArrayLike<number> | undefined;
    let cnts: ArrayLike<number> | undefined;
    try {
      offs = fd.getValue(offKey) as ArrayLike<number> | undefined;
      cnts = fd.getValue(cntKey) as ArrayLike<number> | undefined;
    } catch {
      continue;
    }
    if (!offs || !cnts) continue;
    for (let k = 0; k < offs.length; k++) {
      if (offs[k] + cnts[k] > fileBytes) {
        throw new Error(
          `${source}: truncated TIFF (${offKey}[${k}] ends at byte ${offs[k] + cnts[k]}, file has ${fileBytes} bytes)`,
        );
      }
    }
  }
}

function geoInfo(image: GeoTIFF.GeoTIFFImage): GeoInfo | null {
  try {
    const o = image.getOrigin();
    const r = image.getResolution();
    const keys = (image.getGeoKeys() ?? {}) as Record<string, number | undefined>;
    const epsg = keys.ProjectedCSTypeGeoKey ?? keys.GeographicTypeGeoKey ?? null;
    return { origin: [o[0], o[1]], resolution: [r[0], r[1]], epsg: epsg ?? null };
  } catch {
    return null; // a plain TIFF without georeferencing
  }
}

/** True for `.tif` / `.tiff` paths. */
export function isTiff(file: string): boolean {
  return TIFF_EXT.has(path.extname(file).toLowerCase());
}

/**
 * Load an image file: GeoTIFFs through geotiff.js (raw values unless `scale`), everything else through sharp ([0, 1]).
 * Missing files, corrupt data and band-count mismatches are errors naming the file.
 */
export async function loadImage(file: string, opt: DecodeOptions = {}): Promise<Img> {
  const buf = await readImageFile(file, 'image');
  if (buf.length === 0) throw new Error(`${file}: empty file`);
  if (isTiff(file)) return (await decodeGeoTiff(buf, file, opt)).img;
  return decodeWithSharp(buf, file, opt);
}

/** Load a GeoTIFF with its georeferencing. */
export async function loadGeoTiff(file: string, opt: DecodeOptions = {}): Promise<{ img: Img; geo: GeoInfo | null }> {
  const buf = await readImageFile(file, 'GeoTIFF');
  if (buf.length === 0) throw new Error(`${file}: empty file`);
  return decodeGeoTiff(buf, file, opt);
}
