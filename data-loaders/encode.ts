/**
 * Writing images in the formats the loaders read (JPEG/PNG via sharp, multi-band GeoTIFF by a small baseline-TIFF
 * writer): used by the embedded dataset generator and by tests that build fixtures in the real on-disk layouts.
 * `write*` helpers are atomic (temp file + rename) so a reader never sees half a file.
 */
import sharp from 'sharp';
import { Img, checkImg, toUint8 } from './image';
import { writeFileAtomic } from '../lib/io/safetensors';

/** Encode an image with values in [0, 1] (1 or 3 channels) as JPEG/PNG bytes. */
export async function encodeImage(img: Img, format: 'jpeg' | 'png', quality = 95): Promise<Buffer> {
  checkImg(img, 'encodeImage');
  if (img.channels !== 1 && img.channels !== 3) {
    throw new Error(`encodeImage: ${format} needs 1 or 3 channels, got ${img.channels}`);
  }
  let p = sharp(Buffer.from(toUint8(img).buffer), {
    raw: { width: img.width, height: img.height, channels: img.channels as 1 | 3 },
  });
  if (img.channels === 1) p = p.toColourspace('b-w'); // else sharp writes grey as 3 identical channels
  return format === 'jpeg' ? p.jpeg({ quality, chromaSubsampling: '4:4:4' }).toBuffer() : p.png().toBuffer();
}

/** Write a JPEG (values in [0, 1]). */
export async function writeJpeg(file: string, img: Img, quality = 95): Promise<void> {
  writeFileAtomic(file, await encodeImage(img, 'jpeg', quality));
}

/** Write a PNG (values in [0, 1]). */
export async function writePng(file: string, img: Img): Promise<void> {
  writeFileAtomic(file, await encodeImage(img, 'png'));
}

export interface GeoTiffWriteOptions {
  /** Sample type on disk (default 'uint16', as EuroSAT / Sentinel-2 L1C tiles). Values are rounded and clamped. */
  dtype?: 'uint8' | 'uint16' | 'float32';
  /** Georeferencing: top-left corner [x, y] and pixel size [dx, dy > 0] (north-up); EPSG (default 4326). */
  origin?: [number, number];
  pixelSize?: [number, number];
  epsg?: number;
}

/**
 * Encode a multi-band image (raw values) as a little-endian baseline GeoTIFF: one strip, pixel-interleaved,
 * uncompressed, with ModelPixelScale/ModelTiepoint and a GeoKeyDirectory (PixelIsArea; EPSG 4326 geographic or a
 * projected EPSG code). Extra bands are declared as unspecified ExtraSamples. Decoding is left to geotiff.js, which the
 * round-trip tests use to read these files back. (geotiff.js' own writer allocates per sample and is ~30× slower.)
 */
export async function encodeGeoTiff(img: Img, opt: GeoTiffWriteOptions = {}): Promise<Buffer> {
  checkImg(img, 'encodeGeoTiff');
  const dtype = opt.dtype ?? 'uint16';
  const { height: H, width: W, channels: C } = img;
  const bps = dtype === 'uint8' ? 1 : dtype === 'uint16' ? 2 : 4;
  const origin = opt.origin ?? [0, 0];
  const px = opt.pixelSize ?? [1, 1];
  const epsg = opt.epsg ?? 4326;
  const geokeys =
    epsg === 4326
      ? [1, 1, 0, 3, 1024, 0, 1, 2, 1025, 0, 1, 1, 2048, 0, 1, 4326]
      : [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, epsg];
  // tags: [code, type (3 SHORT, 4 LONG, 12 DOUBLE), values]
  const dataBytes = H * W * C * bps;
  const tags: Array<[number, number, number[]]> = [
    [256, 4, [W]],
    [257, 4, [H]],
    [258, 3, new Array(C).fill(bps * 8)],
    [259, 3, [1]],
    [262, 3, [C === 3 && dtype === 'uint8' ? 2 : 1]],
    [273, 4, [0]], // StripOffsets, patched below
    [277, 3, [C]],
    [278, 4, [H]],
    [279, 4, [dataBytes]],
    [284, 3, [1]],
    ...(C > 1 && !(C === 3 && dtype === 'uint8') ? [[338, 3, new Array(C - 1).fill(0)] as [number, number, number[]]] : []),
    [339, 3, new Array(C).fill(dtype === 'float32' ? 3 : 1)],
    [33550, 12, [px[0], px[1], 0]],
    [33922, 12, [0, 0, 0, origin[0], origin[1], 0]],
    [34735, 3, geokeys],
  ];
  const size = (t: number): number => (t === 3 ? 2 : t === 4 ? 4 : 8);
  const ifdBytes = 2 + tags.length * 12 + 4;
  let extra = 0;
  for (const [, t, v] of tags) if (v.length * size(t) > 4) extra += v.length * size(t) + ((v.length * size(t)) % 2);
  const dataOffset = 8 + ifdBytes + extra;
  const buf = Buffer.alloc(dataOffset + dataBytes);
  buf.write('II', 0, 'ascii');
  buf.writeUInt16LE(42, 2);
  buf.writeUInt32LE(8, 4);
  buf.writeUInt16LE(tags.length, 8);
  let ext = 8 + ifdBytes;
  tags.forEach(([code, type, vals], k) => {
    if (code === 273) vals = [dataOffset];
    const e = 10 + k * 12;
    buf.writeUInt16LE(code, e);
    buf.writeUInt16LE(type, e + 2);
    buf.writeUInt32LE(vals.length, e + 4);
    const n = vals.length * size(type);
    let at = e + 8;
    if (n > 4) {
      buf.writeUInt32LE(ext, e + 8);
      at = ext;
      ext += n + (n % 2);
    }
    vals.forEach((v, i) => {
      if (type === 3) buf.writeUInt16LE(v, at + 2 * i);
      else if (type === 4) buf.writeUInt32LE(v, at + 4 * i);
      else buf.writeDoubleLE(v, at + 8 * i);
    });
  });
  buf.writeUInt32LE(0, 10 + tags.length * 12); // no next IFD
  const d = img.data;
  if (dtype === 'float32') for (let i = 0; i < d.length; i++) buf.writeFloatLE(d[i], dataOffset + 4 * i);
  else {
    const max = dtype === 'uint8' ? 255 : 65535;
    for (let i = 0; i < d.length; i++) {
      const v = Math.round(d[i]);
      const c = v < 0 ? 0 : v > max ? max : v;
      if (bps === 1) buf[dataOffset + i] = c;
      else buf.writeUInt16LE(c, dataOffset + 2 * i);
    }
  }
  return buf;
}

/** Write a GeoTIFF. */
export async function writeGeoTiff(file: string, img: Img, opt: GeoTiffWriteOptions = {}): Promise<void> {
  writeFileAtomic(file, await encodeGeoTiff(img, opt));
}
