/**
 * Decoding image files into `Img`s with well-kept libraries: `sharp` (libvips) for JPEG/PNG/WebP and 8-bit RGB TIFFs,
 * `geotiff` for multi-band GeoTIFFs (any band count, integer or float samples, georeferencing kept).
 *
 * Every failure (missing file, unknown format, corrupt or truncated data, wrong band count) throws an error that names
 * the file; a bad sample never becomes zeros. sharp runs with `failOn: 'warning'`, so a truncated JPEG is an error, not
 * a grey bottom half.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import * as GeoTIFF from 'geotiff';
import { Img, imgFromInts, makeImg } from './image';

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
   * 'keep': channels as stored.
   */
  mode?: 'rgb' | 'keep';
  /** Expected channel count; anything else is an error naming the file. */
  bands?: number;
  /** Multiplier for integer samples: default 1/255 for sharp-decoded 8-bit files, 1 (raw values) for GeoTIFFs. */
  scale?: number;
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

function checkBands(img: Img, source: string, bands: number | undefined): Img {
  if (bands !== undefined && img.channels !== bands) {
    throw new Error(`${source}: ${img.channels} band${img.channels === 1 ? '' : 's'}, expected ${bands}`);
  }
  return img;
}

/** Decode a JPEG/PNG/WebP/(8-bit RGB) TIFF buffer with sharp. `source` names it in errors. */
export async function decodeWithSharp(buf: Buffer, source: string, opt: DecodeOptions = {}): Promise<Img> {
  const mode = opt.mode ?? 'rgb';
  let out: { data: Buffer; info: { width: number; height: number; channels: number } };
  try {
    let p = sharp(buf, { failOn: 'warning' });
    if (mode === 'rgb') p = p.removeAlpha().toColourspace('srgb');
    out = await p.raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    throw new Error(`${source}: cannot decode image (${msg})`);
  }
  const { width, height, channels } = out.info;
  if (out.data.length !== width * height * channels) {
    throw new Error(`${source}: decoder returned ${out.data.length} bytes for ${height}×${width}×${channels}`);
  }
  const img = imgFromInts(out.data, height, width, channels, opt.scale ?? 1 / 255);
  return checkBands(img, source, opt.bands ?? (mode === 'rgb' ? 3 : undefined));
}

/** Decode a (Geo)TIFF buffer with geotiff.js: all bands, raw sample values × `scale` (default 1). */
export async function decodeGeoTiff(
  buf: Buffer,
  source: string,
  opt: DecodeOptions = {},
): Promise<{ img: Img; geo: GeoInfo | null }> {
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
    const rasters = (await image.readRasters({ interleave: true })) as unknown as ArrayLike<number>;
    if (rasters.length !== width * height * channels) {
      throw new Error(`decoded ${rasters.length} samples, expected ${height}×${width}×${channels}`);
    }
    img = makeImg(height, width, channels);
    const scale = opt.scale ?? 1;
    for (let i = 0; i < rasters.length; i++) img.data[i] = rasters[i] * scale;
    geo = geoInfo(image);
  } catch (e) {
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
  const buf = await readFileChecked(file, 'image');
  if (buf.length === 0) throw new Error(`${file}: empty file`);
  if (isTiff(file)) return (await decodeGeoTiff(buf, file, opt)).img;
  return decodeWithSharp(buf, file, opt);
}

/** Load a GeoTIFF with its georeferencing. */
export async function loadGeoTiff(file: string, opt: DecodeOptions = {}): Promise<{ img: Img; geo: GeoInfo | null }> {
  const buf = await readFileChecked(file, 'GeoTIFF');
  if (buf.length === 0) throw new Error(`${file}: empty file`);
  return decodeGeoTiff(buf, file, opt);
}
