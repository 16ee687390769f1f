/**
 * Writing images in the formats the loaders read (JPEG/PNG via sharp, multi-band GeoTIFF via geotiff.js): used by the
 * embedded dataset generator and by tests that build fixtures in the real on-disk layouts. Writes are atomic (temp file
 * + rename) so a reader never sees half a file.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import * as GeoTIFF from 'geotiff';
import { Img, checkImg, toUint8 } from './image';

/** Write `data` to `file` atomically (parent folders created). */
export async function writeFileAtomic(file: string, data: Buffer | Uint8Array | string): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await fsp.writeFile(tmp, data);
  await fsp.rename(tmp, file);
}

/** Encode an image with values in [0, 1] (1 or 3 channels) as JPEG/PNG bytes. */
export async function encodeImage(img: Img, format: 'jpeg' | 'png', quality = 95): Promise<Buffer> {
  checkImg(img, 'encodeImage');
  if (img.channels !== 1 && img.channels !== 3) {
    throw new Error(`encodeImage: ${format} needs 1 or 3 channels, got ${img.channels}`);
  }
  const p = sharp(Buffer.from(toUint8(img).buffer), {
    raw: { width: img.width, height: img.height, channels: img.channels as 1 | 3 },
  });
  return format === 'jpeg' ? p.jpeg({ quality, chromaSubsampling: '4:4:4' }).toBuffer() : p.png().toBuffer();
}

/** Write a JPEG (values in [0, 1]). */
export async function writeJpeg(file: string, img: Img, quality = 95): Promise<void> {
  await writeFileAtomic(file, await encodeImage(img, 'jpeg', quality));
}

/** Write a PNG (values in [0, 1]). */
export async function writePng(file: string, img: Img): Promise<void> {
  await writeFileAtomic(file, await encodeImage(img, 'png'));
}

export interface GeoTiffWriteOptions {
  /** Sample type on disk (default 'uint16', as EuroSAT / Sentinel-2 L1C tiles). Values are rounded and clamped. */
  dtype?: 'uint8' | 'uint16' | 'float32';
  /** Georeferencing: top-left corner [x, y] and pixel size [dx, dy > 0] (north-up); EPSG (default 4326). */
  origin?: [number, number];
  pixelSize?: [number, number];
  epsg?: number;
}

/** Encode a multi-band image (raw values) as a GeoTIFF (pixel-interleaved, uncompressed). */
export async function encodeGeoTiff(img: Img, opt: GeoTiffWriteOptions = {}): Promise<Buffer> {
  checkImg(img, 'encodeGeoTiff');
  const dtype = opt.dtype ?? 'uint16';
  let values: Uint8Array | Uint16Array | Float32Array;
  if (dtype === 'float32') values = img.data.slice();
  else {
    const max = dtype === 'uint8' ? 255 : 65535;
    values = dtype === 'uint8' ? new Uint8Array(img.data.length) : new Uint16Array(img.data.length);
    for (let i = 0; i < img.data.length; i++) {
      const v = Math.round(img.data[i]);
      values[i] = v < 0 ? 0 : v > max ? max : v;
    }
  }
  const origin = opt.origin ?? [0, 0];
  const px = opt.pixelSize ?? [1, 1];
  const epsg = opt.epsg ?? 4326;
  const meta: Record<string, unknown> = {
    height: img.height,
    width: img.width,
    ModelPixelScale: [px[0], px[1], 0],
    ModelTiepoint: [0, 0, 0, origin[0], origin[1], 0],
  };
  if (epsg === 4326) meta.GeographicTypeGeoKey = 4326;
  else {
    meta.ProjectedCSTypeGeoKey = epsg;
    meta.GTModelTypeGeoKey = 1;
  }
  const ab = await GeoTIFF.writeArrayBuffer(values, meta as never);
  return Buffer.from(ab);
}

/** Write a GeoTIFF. */
export async function writeGeoTiff(file: string, img: Img, opt: GeoTiffWriteOptions = {}): Promise<void> {
  await writeFileAtomic(file, await encodeGeoTiff(img, opt));
}
